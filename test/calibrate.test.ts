import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { benchRowsFromCsv, benchRowsFromJson, calibrate, fitProfile, kendallTau, mape, resolveRows, traceToRow } from '../src/calibrate/index.js';
import { main } from '../src/cli/main.js';
import { loadDevice } from '../src/inputs/index.js';
import { getDevice } from '../src/cost/presets.js';
import { price } from '../src/cost/price.js';
import { validateProfile, type HardwareProfile } from '../src/cost/profile.js';
import { InputError } from '../src/errors.js';
import { synthRows, truthProfile } from './calibrate.helpers.js';

const base = getDevice('tpu-v2');

/** The truth's value of each fitted parameter, in the profile's units. */
function truthValue(truth: HardwareProfile, name: string): number {
  const [group, key] = name.split('.');
  if (group === 'efficiency') return truth.efficiency[key as 'matmul'];
  if (group === 'efficiencyHalfWork') return truth.efficiencyHalfWork![key as 'matmul']!;
  if (group === 'bandwidth') return truth.axisLinks![key].bandwidth;
  if (group === 'latency') return truth.axisLinks![key].latency;
  return truth.overlap;
}

function expectRecovered(truth: HardwareProfile, params: readonly { name: string; fitted: number; fixed: boolean }[]) {
  expect(params.length).toBe(13);
  for (const p of params) {
    expect(p.fixed, p.name).toBe(false);
    const t = truthValue(truth, p.name);
    expect(Math.abs(p.fitted / t - 1), `${p.name}: fitted ${p.fitted}, truth ${t}`).toBeLessThan(0.05);
  }
}

async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((s) => ((stdout += String(s)), true));
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((s) => ((stderr += String(s)), true));
  const saved = process.exitCode;
  try {
    const code = await main(args);
    return { code, stdout, stderr };
  } finally {
    o.mockRestore();
    e.mockRestore();
    process.exitCode = saved;
  }
}

describe('calibration fit', () => {
  it('recovers every parameter that generated synthetic step times within 5%, from step times alone', () => {
    const truth = truthProfile();
    const { rows, rejected } = resolveRows(synthRows(truth), base);
    expect(rejected).toEqual([]);
    const { summary } = fitProfile(rows, base);
    expectRecovered(truth, summary.parameters);
  });

  it('recovers them within 5% from step times alone with a gross outlier row, which it reports', () => {
    const truth = truthProfile();
    const raw = synthRows(truth);
    raw[4] = { ...raw[4], stepTime: (raw[4].stepTime as number) * 3 };
    const { summary } = fitProfile(resolveRows(raw, base).rows, base);
    expectRecovered(truth, summary.parameters);
    expect(summary.outliers.map((o) => o.line)).toEqual([raw[4].source.line]);
  });

  it('recovers them within 5% with per-class and per-axis times and a gross outlier row, which it reports', () => {
    const truth = truthProfile();
    const raw = synthRows(truth, 'mtf-lm-s0', { components: true });
    raw[4] = { ...raw[4], stepTime: (raw[4].stepTime as number) * 3 };
    const { rows } = resolveRows(raw, base);
    const { summary, profile } = fitProfile(rows, base);
    expectRecovered(truth, summary.parameters);
    expect(summary.outliers.map((o) => o.line)).toEqual([raw[4].source.line]);
    // A plain least-squares fit would be pulled by the outlier; the robust one prices the rest exactly.
    for (const m of rows.filter((_, i) => i !== 4)) expect(price(m.program, profile).time.step / m.stepTime).toBeCloseTo(1, 6);
  });

  it('keeps held parameters at the base value and fits the rest', () => {
    const { rows } = resolveRows(synthRows(truthProfile()), base);
    const { summary, profile } = fitProfile(rows, base, { hold: ['overlap', 'latency.rows'] });
    const held = summary.parameters.filter((p) => p.fixed).map((p) => p.name);
    expect(held).toEqual(['latency.rows', 'overlap']);
    expect(profile.overlap).toBe(base.overlap);
    expect(profile.efficiency.matmul).not.toBe(base.efficiency.matmul);
  });

  it('lowers the leave-one-plan-out error well below the uncalibrated preset', () => {
    const { rows, rejected } = resolveRows(synthRows(truthProfile()), base);
    const r = calibrate({ rows, rejected, devices: [] }, base);
    expect(r.before.mape).toBeGreaterThan(0.2);
    expect(r.after.mape).toBeLessThan(0.01);
    expect(r.after.kendallTau).toBe(1);
    expect(r.rows).toEqual({ used: 16, rejected: 0 });
    expect(() => validateProfile(JSON.parse(JSON.stringify(r.profile)))).not.toThrow();
    expect((r.profile.fittedFrom as { base: string }).base).toBe('tpu-v2');
  });

  it('refuses too few rows for the parameters instead of overfitting', () => {
    const { rows, rejected } = resolveRows(synthRows(truthProfile()).slice(0, 6), base);
    expect(() => calibrate({ rows, rejected, devices: [] }, base)).toThrow(InputError);
    expect(() => calibrate({ rows, rejected, devices: [] }, base)).toThrow(/too few measurements to calibrate: 6 rows give 6 observations .*, 5 once a plan is left out, for \d+ parameters .* needs at least/);
    const two = resolveRows(synthRows(truthProfile()).slice(0, 2), base);
    expect(() => calibrate({ ...two, devices: [] }, base)).toThrow(/too few plans to calibrate: 2 usable rows cover 2 distinct plans/);
  });
});

describe('calibration inputs', () => {
  const header = 'model,mesh,layout,zero,recompute,microbatches,device,step_time,comm_time:rows';
  const csv = [
    header,
    'tiny,2x2,batch:rows;d_ff:cols,,,,tpu-v2,0.010,',
    '# a comment line is not a row',
    'tiny,2x2,batch:rows;d_ff:cols,,,,tpu-v2,-0.5,',
    'tiny,2x2,batch:rows+cols,,,,,,',
    'no-such-model,2x2,batch:rows,,,,,0.01,',
    'tiny,2x2,heads:rows;d_kv:rows,,,,,0.01,',
    'tiny,2x2,batch:rows,,,3,,0.01,',
    'tiny,2x2,batch:rows,,,,a100-40g,0.01,',
    'tiny,2x2,batch:rows,,,,tpu-v2,0.01,0.002',
    'tiny,2x2,batch:rows,1,full,2,,0.01',
  ].join('\n');

  it('rejects bad rows with their line numbers and counts them: nothing is dropped silently', () => {
    const raw = benchRowsFromCsv(csv, 'b.csv');
    const { rows, rejected } = resolveRows(raw, base);
    expect(rows.length + rejected.length).toBe(raw.length);
    expect(rows.map((r) => r.source.line)).toEqual([2, 10]);
    const why = Object.fromEntries(rejected.map((r) => [r.source.line, r.reason]));
    expect(Object.keys(why).map(Number)).toEqual([4, 5, 6, 7, 8, 9, 11]);
    expect(why[4]).toMatch(/step time must be from 0.000001 to 86400 seconds, got "-0.5"/);
    expect(why[5]).toMatch(/step time is missing/);
    expect(why[6]).toMatch(/unknown model preset "no-such-model"/);
    expect(why[7]).toMatch(/invalid on mesh rows:2;cols:2/);
    expect(why[8]).toMatch(/3 microbatches do not divide/);
    expect(why[9]).toMatch(/measured on device a100-40g, but the profile being fitted is tpu-v2/);
    expect(why[11]).toMatch(/8 fields, but the header has 9 columns/);
  });

  it('refuses a header with an unknown column (a typo would otherwise be ignored)', () => {
    expect(() => benchRowsFromCsv('model,mesh,layout,step_tme\n', 'b.csv')).toThrow(/b.csv:1: unknown column "step_tme"/);
  });

  it('gives JSON rows the line they start on', () => {
    const text = '[\n  {"model": "tiny", "mesh": "2x2", "layout": "batch:rows", "step_time": 0.01},\n\n  {"model": "tiny",\n   "mesh": "2x2", "layout": "batch:rows", "step_time": 0}\n]\n';
    const raw = benchRowsFromJson(text, 'b.json');
    expect(raw.map((r) => r.source.line)).toEqual([2, 4]);
    const { rejected } = resolveRows(raw, base);
    expect(rejected).toEqual([{ source: { file: 'b.json', line: 4 }, reason: 'step time must be from 0.000001 to 86400 seconds, got 0' }]);
    const jsonl = benchRowsFromJson('{"model":"tiny","mesh":"2x2","layout":"","stepTime":0.01}\n{oops\n', 'b.jsonl');
    expect(resolveRows(jsonl, base).rejected.map((r) => [r.source.line, r.reason.slice(0, 14)])).toEqual([[2, 'not valid JSON']]);
  });

  it('reads a runtime trace as a row: the least (or median) simulated step after the first, and per device per step times by class and axes', () => {
    const ev = (tid: number, step: number, cat: string, klass: string, ts: number, dur: number, axes: string[] = []) => ({
      name: 'op', cat, ph: 'X', ts, dur, pid: 0, tid,
      args: { op: 'op', phase: 'forward', kind: 'einsum', klass, flops: 1, bytes: 1, axes, collective: cat === 'collective' ? 'allreduce' : null, step },
    });
    const events = [];
    // Each device's own clock, which only its events advance: device d starts 10·d µs late (drift
    // that one span over all devices would count), and device 0 waits 100 µs for its peers in step 2.
    const clock = [0, 10, 20, 30];
    for (const step of [0, 1, 2]) {
      for (const tid of [0, 1, 2, 3]) {
        const mm = step === 0 ? 9000 : 1000;
        const wait = step === 2 && tid === 0 ? 100 : 0;
        events.push(ev(tid, step, 'compute', 'matmul', clock[tid], mm));
        events.push(ev(tid, step, 'compute', 'softmax', clock[tid] + mm, 200));
        events.push(ev(tid, step, 'collective', 'elementwise', clock[tid] + mm + 200 + wait, 300, ['cols']));
        clock[tid] += mm + 200 + wait + 300;
      }
    }
    const trace = {
      traceEvents: events,
      otherData: { mesh: 'rows:2;cols:2', model: 'tiny', plan: { layout: 'batch:rows;d_ff:cols', zero: 0, recompute: 'none', microbatches: 1 }, backend: 'cpu', steps: [{ loss: 5, seconds: 0.5 }, { loss: 4, seconds: 0.003 }, { loss: 3, seconds: 0.002 }] },
    };
    const row = traceToRow(trace, 't.json', 'median');
    // Not the simulator's wall time (0.003, 0.002): the slowest device's clock, 1500 and 1600 µs.
    expect(row.stepTime).toBeCloseTo(1.55e-3, 12);
    expect(traceToRow(trace, 't.json').stepTime).toBeCloseTo(1.5e-3, 12);
    expect(Object.keys(row.compute)).toEqual(['matmul', 'softmax']);
    expect(row.compute.matmul).toBeCloseTo(1e-3, 15);
    expect(row.compute.softmax).toBeCloseTo(2e-4, 15);
    expect(Object.keys(row.comm)).toEqual(['cols']);
    // Device 0's wait counts in its collective: (4·300 + 100) / 4 µs in step 2, 300 in step 1.
    expect(row.comm.cols).toBeCloseTo(3.125e-4, 15);
    expect(traceToRow(trace, 't.json').comm.cols).toBeCloseTo(3e-4, 15);
    const { rows } = resolveRows([row], base);
    expect(rows[0].plan.layout.get('d_ff')).toEqual(['cols']);
    expect(resolveRows([traceToRow({ traceEvents: [] }, 'x.json')], base).rejected[0].reason).toMatch(/not a mesh-search trace/);
  });
});

describe('metrics', () => {
  it('Kendall tau is 1 for the same order, -1 reversed, and counts only comparable pairs', () => {
    expect(kendallTau([1, 2, 3, 4], [10, 20, 30, 40])).toBe(1);
    expect(kendallTau([4, 3, 2, 1], [10, 20, 30, 40])).toBe(-1);
    expect(kendallTau([1, 3, 2, 4], [10, 20, 30, 40])).toBeCloseTo(4 / 6, 12);
    expect(kendallTau([1, 2], [2, 1], { problem: ['a', 'b'], plan: ['x', 'y'] })).toBeNull();
    expect(kendallTau([1, 2], [2, 1], { problem: ['a', 'a'], plan: ['x', 'x'] })).toBeNull();
    expect(mape([1.1, 0.9], [1, 1])).toBeCloseTo(0.1, 12);
  });
});

describe('mesh-search calibrate', () => {
  it('fits the example benchmark file, writes a profile that estimate accepts, and prints the DESIGN.md JSON', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ms-cal-'));
    const out = join(dir, 'profile.json');
    const r = await run(['calibrate', '--bench', 'data/bench-example.csv', '--out', out, '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(Object.keys(j)).toEqual(expect.arrayContaining(['profile', 'rows', 'before', 'after']));
    expect(j.rows).toEqual({ used: 16, rejected: 0 });
    expect(j.after.mape).toBeLessThan(j.before.mape / 5);
    expect(j.after.kendallTau).toBeGreaterThanOrEqual(j.before.kendallTau);
    const p = loadDevice(out);
    expect(p.name).toBe('tpu-v2-calibrated');
    expect(JSON.parse(readFileSync(out, 'utf8')).fittedFrom.files).toEqual(['data/bench-example.csv']);
    const e = await run(['estimate', '--mesh', '4x4', '--model', 'mtf-lm-s0', '--layout', 'batch:rows+cols', '--device', out, '--json']);
    expect(e.code).toBe(0);
    expect(JSON.parse(e.stdout).time.step).toBeGreaterThan(0);
  });

  it('exits 2 with one line when the rows are too few', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ms-cal-'));
    const file = join(dir, 'few.csv');
    writeFileSync(file, readFileSync('data/bench-example.csv', 'utf8').split('\n').slice(0, 4).join('\n'));
    const r = await run(['calibrate', '--bench', file, '--json']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^mesh-search: too few measurements to calibrate/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('refuses a calibrate without --out or --json, and a tune with too few runs, in one line each', async () => {
    const a = await run(['calibrate', '--bench', 'data/bench-example.csv']);
    expect(a.code).toBe(2);
    expect(a.stderr).toBe('mesh-search: calibrate needs --out profile.json (or --json to print the profile)\n');
    const h = await run(['calibrate', '--bench', 'data/bench-example.csv', '--json', '--hold', 'bogus']);
    expect(h.code).toBe(2);
    expect(h.stderr).toMatch(/^mesh-search: --hold bogus: not a parameter/);
    const b = await run(['tune', '--mesh', '2x2', '--model', 'tiny', '--runs', '2']);
    expect(b.code).toBe(2);
    expect(b.stderr).toBe('mesh-search: --runs must be an integer from 3 to 1000 (leave-one-plan-out needs 3 plans), got "2"\n');
  });
});
