import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, writeFileSync, ftruncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getDevice } from '../src/cost/presets.js';
import { getPreset } from '../src/model/presets.js';
import { search, SearchFailed } from '../src/search/index.js';
import { cli } from './support/cli.js';
import { answer } from './search.helpers.js';

/**
 * The families of bad input, through the built CLI as a user meets them: each case exits 2
 * (or gives the correct result) with exactly one line on stderr and no stack trace.
 */
const dir = mkdtempSync(join(tmpdir(), 'ms-robust-'));

function refused(r: { code: number; stdout: string; stderr: string }, names: RegExp): void {
  expect(r.stderr).not.toMatch(/\n\s+at |Error: |internal error/);
  expect(r.stderr).toMatch(/^mesh-search: [^\n]+\n$/);
  expect(r.stderr).toMatch(names);
  expect(r.code).toBe(2);
}

const tinyPlan = ['--mesh', '1x2', '--model', 'tiny', '--layout', 'batch:cols'];

describe('corrupt or hand-edited checkpoints on --resume', () => {
  const good = join(dir, 'good.ckpt');
  let ckpt: Record<string, unknown>;
  beforeAll(() => {
    const r = cli(['train', ...tinyPlan, '--steps', '2', '--save', good]);
    expect(r.code).toBe(0);
    ckpt = JSON.parse(readFileSync(good, 'utf8'));
  });
  const resume = (name: string, content: string) => {
    const f = join(dir, name);
    writeFileSync(f, content);
    return cli(['train', ...tinyPlan, '--steps', '3', '--resume', f]);
  };
  const edited = (edit: (c: Record<string, any>) => void) => {
    const c = JSON.parse(JSON.stringify(ckpt));
    edit(c);
    return JSON.stringify(c);
  };
  const f32 = (xs: number[]) => Buffer.from(new Float32Array(xs).buffer).toString('base64');

  it('resumes from a good one', () => {
    const r = cli(['train', ...tinyPlan, '--steps', '3', '--resume', good, '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ startStep: 2, steps: 3 });
  });

  // A few cases of each kind through the CLI; inputs.fuzz.test.ts draws many more in-process.
  it('refuses null, text and a foreign JSON object', () => {
    refused(resume('null.ckpt', 'null'), /is not a mesh-search checkpoint/);
    refused(resume('text.ckpt', 'PK\u0003\u0004 not json'), /is not valid JSON/);
    refused(resume('other.ckpt', '{"format": "something-else/1"}'), /is not a mesh-search checkpoint/);
  });

  it('refuses shards of the wrong shape, bad base64, missing or extra tensors, non-finite values', () => {
    const name = Object.keys((ckpt.devices as any[])[0].params)[0];
    refused(resume('short.ckpt', edited((c) => { c.devices[0].params[name] = f32([1, 2, 3]); })), new RegExp(`devices\\[0\\]\\.params\\.${name.replace(/\./g, '\\.')} holds 3 values`));
    refused(resume('b64.ckpt', edited((c) => { c.devices[1].m[name] = '!!!!not base64'; })), /devices\[1\]\.m\..* is not base64 text/);
    refused(resume('extra.ckpt', edited((c) => { c.devices[0].params.bogus = f32([1]); })), /has a tensor "bogus" this plan does not have/);
    const n = Buffer.from((ckpt.devices as any[])[0].params[name], 'base64').byteLength / 4;
    refused(resume('inf.ckpt', edited((c) => { c.devices[0].params[name] = f32([Infinity, ...new Array(n - 1).fill(0)]); })), /not finite/);
  });

  it('refuses a NaN loss, a step count out of range and losses that do not match the steps', () => {
    refused(resume('nan.ckpt', edited((c) => { c.losses[1] = null; })), /losses\[1\] must be a finite number/);
    refused(resume('huge.ckpt', edited((c) => { c.step = 1e20; })), /"step" must be an integer from 0/);
    refused(resume('count.ckpt', edited((c) => { c.step = 1; })), /"losses" must list one loss per step done \(1\), got 2/);
    refused(resume('plan.ckpt', edited((c) => { c.plan = null; })), /was written for plan null/);
  });
});

describe('output paths: a directory, a missing folder', () => {
  const clean = (d: string) => readdirSync(d).filter((f) => f.includes('.tmp'));

  it('train --save refuses before training and leaves no temporary file', () => {
    const out = mkdtempSync(join(dir, 'save-'));
    const r = cli(['train', ...tinyPlan, '--steps', '50', '--save', out]);
    refused(r, /cannot write the checkpoint to .*: it is a directory/);
    expect(r.stdout).toBe('');
    refused(cli(['train', ...tinyPlan, '--steps', '50', '--save', join(out, 'no', 'such', 'ck')]), /the folder .* does not exist/);
    refused(cli(['train', ...tinyPlan, '--steps', '50', '--save', `${out}/`]), /names a directory/);
    expect(clean(out)).toEqual([]);
    expect(clean(dir)).toEqual([]);
  });

  it('search --out, --report, run --trace, export --out and calibrate --out refuse before any work', () => {
    const out = mkdtempSync(join(dir, 'out-'));
    refused(cli(['--mesh', '2x2', '--model', 'tiny', '--out', out]), /cannot write the plan to .*: it is a directory/);
    refused(cli(['--mesh', '2x2', '--model', 'tiny', '--report', join(out, 'missing', 'r.html')]), /the folder .* does not exist/);
    refused(cli(['run', ...tinyPlan, '--trace', out]), /cannot write the trace/);
    refused(cli(['export', '--mesh', '2x2', '--model', 'tiny', '--layout', 'batch:rows', '--format', 'megatron', '--out', out]), /cannot write the configuration/);
    refused(cli(['calibrate', '--bench', 'data/bench-example.csv', '--out', join(out, 'x', 'p.json')]), /cannot write the profile/);
    expect(readdirSync(out)).toEqual([]);
  });
});

describe('device profiles with numbers that are not finite or absurd', () => {
  const base = JSON.parse(JSON.stringify(getDevice('tpu-v2')));
  const cases: [string, (p: any) => void, RegExp][] = [
    ['inf-bandwidth', (p) => { p.levels[0].link.bandwidth = '1e999'; }, /levels\[0\]\.link\.bandwidth/],
    ['tiny-peak', (p) => { p.peakFlops.bfloat16 = 1e-300; }, /peakFlops\.bfloat16 must be a number from/],
    ['zero-hbm', (p) => { p.memoryBandwidth = 0; }, /memoryBandwidth/],
    ['neg-latency', (p) => { p.levels[1].link.latency = -1; }, /levels\[1\]\.link\.latency/],
    ['huge-latency', (p) => { p.levels[1].link.latency = '1e999'; }, /levels\[1\]\.link\.latency/],
    ['tiny-memory', (p) => { p.memoryBytes = 10; }, /memoryBytes/],
    ['efficiency', (p) => { p.efficiency.matmul = 0; }, /efficiency\.matmul/],
    ['overlap', (p) => { p.overlap = 2; }, /overlap/],
    ['devices', (p) => { p.levels[0].devices = 1.5; }, /levels\[0\]\.devices/],
    ['axis-link', (p) => { p.axisLinks = { rows: { bandwidth: 1e-9, latency: 0 } }; }, /axisLinks\.rows\.bandwidth/],
  ];
  it.each(cases)('refuses %s in estimate and search', (name, edit, names) => {
    const p = JSON.parse(JSON.stringify(base));
    edit(p);
    const file = join(dir, `${name}.json`);
    // '1e999' is written unquoted: JSON.parse reads it as Infinity.
    writeFileSync(file, JSON.stringify(p).replace(/"1e999"/g, '1e999'));
    refused(cli(['estimate', '--mesh', '2x2', '--model', 'tiny', '--layout', 'batch:rows', '--device', file]), names);
    // The search reads profiles the same way: a few of the cases through it too.
    if (/inf|tiny-peak|huge/.test(name)) refused(cli(['--mesh', '2x2', '--model', 'tiny', '--device', file]), names);
  });
});

describe('benchmark rows: bad cells, duplicated columns, near-zero times', () => {
  const example = readFileSync('data/bench-example.csv', 'utf8').trimEnd().split('\n');
  const [header, ...rows] = example;
  const col = header.split(',').indexOf('step_time');
  // The example rows, then one copy of the first row per value, its step time set to that value.
  const withCells = (values: readonly string[]) => {
    const extra = values.map((value) => {
      const cells = rows[0].split(',');
      cells[col] = value;
      return cells.join(',');
    });
    return [header, ...rows, ...extra].join('\n') + '\n';
  };

  it('rejects step times of "0x10", "1_000", "Infinity", "1e-12" and "1e999", each with its file and line, and still fits the good rows', () => {
    // One file with all five (one calibration, not five: each fit cross-validates 16 plans).
    const bad = ['0x10', '1_000', 'Infinity', '1e-12', '1e999'];
    const file = join(dir, 'cells.csv');
    writeFileSync(file, withCells(bad));
    const r = cli(['calibrate', '--bench', file, '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.rows).toEqual({ used: 16, rejected: bad.length });
    expect(j.rejections).toEqual(bad.map((_, i) => ({ file, line: 18 + i, reason: expect.stringMatching(/^step time must be (a decimal number of seconds|from 0\.000001 to 86400 seconds)/) })));
    expect(Number.isFinite(j.after.mape)).toBe(true);
  });

  it('refuses a header that names a column twice, and a zero-x cell in an integer column', () => {
    const dup = join(dir, 'dup.csv');
    writeFileSync(dup, [header.replace('note', 'step_time'), ...rows].join('\n'));
    refused(cli(['calibrate', '--bench', dup, '--json']), /dup\.csv:1: column "step_time" is named twice/);
    const hex = join(dir, 'hexzero.csv');
    writeFileSync(hex, ['model,mesh,layout,zero,step_time', 'tiny,2x2,batch:rows,0x1,0.01', 'tiny,2x2,batch:cols,1,0x10', 'tiny,2x2,,,1e-300'].join('\n'));
    refused(cli(['calibrate', '--bench', hex, '--json']),
      /3 rows were rejected: .*zero must be an integer, got "0x1" \(first at .*hexzero\.csv:2\).*step time must be a decimal number of seconds, got "0x10" \(first at .*hexzero\.csv:3\).*from 0\.000001 to 86400 seconds, got "1e-300" \(first at .*hexzero\.csv:4\)/);
  });

  it('lists why every row was rejected, grouped and counted, when none is usable', () => {
    const file = join(dir, 'none.csv');
    writeFileSync(file, [header, ...rows.map((r) => r.replace(/^mtf-lm-s0/, 'no-such-model')), withCells(['0']).trimEnd().split('\n').pop()].join('\n'));
    refused(cli(['calibrate', '--bench', file, '--json']), /0 usable rows .* 17 rows were rejected: 16× unknown model preset "no-such-model".*\(first at .*none\.csv:2\); 1× step time must be from .* \(first at .*none\.csv:18\)/);
  });
});

describe('oversized inputs', () => {
  it('a bench file of 200,000 rows is read without overflowing the stack', () => {
    const file = join(dir, 'big.csv');
    writeFileSync(file, 'model,mesh,layout,step_time\n' + 'tiny,2x2,batch:rows,0\n'.repeat(200_000));
    refused(cli(['calibrate', '--bench', file, '--json']), /200000 rows were rejected: 200000× step time must be from/);
  });

  it('traces of 200,000 steps are read without overflowing the stack', () => {
    const files = ['batch:rows', 'batch:cols', 'd_ff:rows'].map((layout, i) => {
      const f = join(dir, `long-${i}.json`);
      const steps = Array.from({ length: 200_000 }, (_, k) => ({ loss: 1, seconds: 0.01 + (k % 7) * 1e-4 }));
      writeFileSync(f, JSON.stringify({ traceEvents: [], otherData: { mesh: 'rows:2;cols:2', model: 'tiny', plan: { layout, zero: 0, recompute: 'none', microbatches: 1 }, steps } }));
      return f;
    });
    refused(cli(['calibrate', '--trace', ...files, '--json']), /too few measurements to calibrate: 3 rows give 3 observations/);
  });

  it('a file larger than mesh-search reads is refused before it is read', () => {
    const file = join(dir, 'sparse.csv');
    const fd = openSync(file, 'w');
    ftruncateSync(fd, 300 * 2 ** 20);
    closeSync(fd);
    refused(cli(['calibrate', '--bench', file, '--json']), /is 300 MiB, more than the 256 MiB mesh-search reads/);
    refused(cli(['estimate', '--mesh', '2x2', '--model', file, '--layout', '']), /model file .* is 300 MiB, more than the 256 MiB/);
  });

  it('a trace whose fields have the wrong types is a rejection naming the event', () => {
    const files = [0, 1, 2].map((i) => {
      const f = join(dir, `typed-${i}.json`);
      const ev = { ph: 'X', ts: 0, dur: 5, tid: 0, cat: 'collective', args: { step: 1, axes: ['rows'] } };
      const bad = [{ ...ev, ts: '0' }, { ...ev, tid: -1 }, { ...ev, args: { ...ev.args, axes: 'rows' } }][i];
      writeFileSync(f, JSON.stringify({ traceEvents: [ev, bad], otherData: { mesh: '2x2', model: 'tiny', plan: { layout: 'batch:rows' }, steps: [{ seconds: 1 }, { seconds: 1 }] } }));
      return f;
    });
    refused(cli(['calibrate', '--trace', ...files, '--json']), /3 rows were rejected: .*traceEvents\[1\]: "ts" and "dur" must be finite.*traceEvents\[1\]: "tid" must be a device number.*traceEvents\[1\]: args\.axes must be a list of axis names/);
  });
});

describe('flags: exact numbers and enums, given once', () => {
  it.each([
    [['estimate', '--mesh', '2x2', '--model', 'tiny', '--layout', 'batch:rows', '--zero', ''], /--zero must be an integer from 0 to 3, got ""/],
    [['estimate', '--mesh', '2x2', '--model', 'tiny', '--layout', 'batch:rows', '--zero', '0x1'], /--zero .* got "0x1"/],
    [['estimate', '--mesh', '2x2', '--model', 'tiny', '--layout', 'batch:rows', '--microbatches', '2.5'], /--microbatches must be an integer >= 1, got "2.5"/],
    [['estimate', '--mesh', '2x2', '--model', 'tiny', '--layout', 'batch:rows', '--recompute', 'Full'], /--recompute must be one of none, selective, minimal, full, got "Full"/],
    [['estimate', '--mesh', '2x2', '--model', 'tiny', '--layout', 'batch:rows', '--zero', '1', '--zero', '2'], /--zero .* got 2 values \(give it once\)/],
    [['--mesh', '2x2', '--model', 'tiny', '--workers', ''], /--workers must be an integer >= 0, got ""/],
    [['--mesh', '2x2', '--model', 'tiny', '--top', '1.5'], /--top must be an integer from 1 to/],
    [['--mesh', '2x2', '--model', 'tiny', '--top', '-1'], /--top must be an integer from 1 to 10000, got "-1"/],
    [['--mesh', '-2x4', '--model', 'tiny'], /mesh "-2x4": "-2" is not a positive integer/],
    [['--mesh', '2x2', '--model', 'tiny', '--mesh', '4x4'], /--mesh is given 2 times/],
    [['estimate', '--mesh', '2x2', '--model', 'tiny', '--layout', 'batch:rows\ncols'], /layout "batch:rows\\ncols"/],
    [['run', ...tinyPlan, '--steps', '0x3'], /--steps must be an integer from 1/],
    [['run', ...tinyPlan, '--backend', 'gpu'], /backend/],
    [['train', ...tinyPlan, '--steps', '1', '--data', '/dev/zero'], /training text file \/dev\/zero: it is not a regular file/],
    [['estimate', '--plan', 'data/bench-example.csv'], /plan file data\/bench-example\.csv is not valid JSON/],
    [['estimate', '--mesh', 'rows:2;cols:2', '--model', 'tiny', '--layout', 'batch:rows+cols', '--zero', '3', '--zero-axes', ''], /--zero-axes needs the batch axes/],
    [['estimate', '--mesh', 'rows:2;cols:2', '--model', 'tiny', '--layout', 'batch:rows+cols', '--zero', '3', '--zero-axes', 'rows', '--zero-axes', 'cols'], /--zero-axes is given 2 times/],
    [['estimate', '--mesh', 'rows:2;cols:2', '--model', 'tiny', '--layout', 'batch:rows', '--zero', '3', '--zero-axes', 'cols'], /does not split batch on cols/],
    [['estimate', '--mesh', 'rows:2;cols:2', '--model', 'tiny', '--layout', 'batch:rows', '--zero-axes', 'rows'], /--zero-axes rows needs a ZeRO stage/],
  ])('refuses %j', (args, names) => refused(cli(args as string[]), names as RegExp));

  it('an invalid plan puts its reasons on stderr, and exits 2', () => {
    const r = cli(['estimate', '--mesh', '2x2', '--model', 'tiny', '--layout', 'batch:rows', '--microbatches', '3', '--json']);
    refused(r, /the plan is invalid: .*3 microbatches do not divide the per-replica batch of 4/);
    expect(JSON.parse(r.stdout).valid).toBe(false);
  });

  it('caps --workers at the machine\'s cores and says so', () => {
    const r = cli(['--mesh', '2x2', '--model', 'tiny', '--workers', '100000', '--top', '1', '--json']);
    expect(r.code).toBe(0);
    // One line says so; a loaded machine may stretch the search past 2 s, when progress lines (and only they) follow.
    const [first, ...rest] = r.stderr.split('\n').filter((l) => l !== '');
    expect(first).toMatch(/^mesh-search: --workers 100000 is more than this machine's \d+ cores: using \d+$/);
    for (const l of rest) expect(l).toMatch(/^mesh-search: \[[# ]{20}\] +\d+%  /);
    expect(JSON.parse(r.stdout).best).not.toBeNull();
  });

  it('tune checks every flag before it runs anything', () => {
    for (const [args, names] of [
      [['--backend', 'gpu'], /backend/], [['--workers', ''], /--workers/], [['--runs', '2'], /--runs must be an integer from 3/],
      [['--steps', '1'], /--steps must be an integer from 2/], [['--out', join(dir, 'nope', 'p.json')], /cannot write the profile/],
      [['--mesh', '16x16'], /at most 64 devices; 16x16 has 256/],
    ] as [string[], RegExp][]) {
      const r = cli(['tune', '--model', 'tiny', ...(args.includes('--mesh') ? [] : ['--mesh', '2x2']), ...args]);
      refused(r, names);
      expect(r.stderr).not.toMatch(/tune: /);
    }
  });
});

describe('estimate --plan prices on the device the plan was searched for', () => {
  it('refuses a plan file whose fields have the wrong types', () => {
    const plan = join(dir, 'typed.plan.json');
    writeFileSync(plan, JSON.stringify({ plan: { layout: 'batch:rows' }, mesh: '2x2', model: 'tiny', device: 5 }));
    refused(cli(['estimate', '--plan', plan]), /"device" must be a string, got 5/);
    writeFileSync(plan, JSON.stringify({ plan: { layout: 'batch:rows' }, mesh: ['2x2'], model: 'tiny' }));
    refused(cli(['estimate', '--plan', plan]), /"mesh" must be a string/);
  });

  it('unless --device says otherwise', () => {
    const plan = join(dir, 'a100.plan.json');
    expect(cli(['--mesh', '2x2', '--model', 'tiny', '--device', 'a100-80g', '--top', '1', '--out', plan]).code).toBe(0);
    expect(JSON.parse(cli(['estimate', '--plan', plan, '--json']).stdout).device).toBe('a100-80g');
    expect(JSON.parse(cli(['estimate', '--plan', plan, '--device', 'tpu-v2', '--json']).stdout).device).toBe('tpu-v2');
  });
});

describe('an exception thrown inside a search worker', () => {
  const s = { spec: getPreset('tiny'), mesh: '2x4', profile: getDevice('tpu-v2') };

  it('is retried once, inline and on the pool, and the answer is whole', async () => {
    const clean = answer(await search({ ...s, workers: 0 }));
    for (const share of [0, 70]) {
      expect(answer(await search({ ...s, workers: 0, faults: { share, times: 1, kind: 'throw' } }))).toEqual(clean);
      expect(answer(await search({ ...s, workers: 2, faults: { share, times: 1, kind: 'throw' } }))).toEqual(clean);
    }
  });

  it('fails the search in one line, without a stack, when it throws again', async () => {
    for (const workers of [0, 2]) {
      const e = await search({ ...s, workers, faults: { share: 3, times: 2, kind: 'throw' } }).then(() => null, (x) => x);
      expect(e).toBeInstanceOf(SearchFailed);
      expect(e.message).toMatch(/^the search failed: a worker threw twice on the same share \(layouts .*\): .*injected exception in the share; then .*injected exception in the share$/);
      expect(e.message).not.toMatch(/\n/);
    }
  });
});

describe('SIGINT during train', () => {
  const bin = fileURLToPath(new URL('../bin/mesh-search.js', import.meta.url));

  it('saves the last complete step atomically, exits 130, and the checkpoint resumes', async () => {
    const out = mkdtempSync(join(dir, 'sigint-'));
    const ck = join(out, 'ck');
    const child = spawn(process.execPath, [bin, 'train', ...tinyPlan, '--steps', '100000', '--save', ck], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stderr.on('data', (d) => { stderr += d; });
    const code = await new Promise<number | null>((resolve) => {
      child.stdout.on('data', (d) => {
        stdout += d;
        if (/step 20 loss/.test(stdout) && !child.killed) child.kill('SIGINT');
      });
      child.on('exit', (c) => resolve(c));
    });
    expect(code).toBe(130);
    expect(stderr).toMatch(/^mesh-search: interrupted after step (\d+); checkpoint of the last complete step written to .*\n$/);
    const step = Number(/after step (\d+)/.exec(stderr)![1]);
    expect(step).toBeGreaterThanOrEqual(20);
    expect(readdirSync(out)).toEqual(['ck']);
    const c = JSON.parse(readFileSync(ck, 'utf8'));
    expect(c.step).toBe(step);
    expect(c.losses).toHaveLength(step);
    const r = cli(['train', ...tinyPlan, '--steps', String(step + 1), '--resume', ck, '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ startStep: step, steps: step + 1 });
  });
});

afterAll(() => {
  // Nothing under the scratch folder is a half-written temporary file.
  const walk = (d: string): string[] => readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : [e.name]));
  if (existsSync(dir)) expect(walk(dir).filter((f) => /\.tmp/.test(f))).toEqual([]);
});
