import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { benchRowsFromCsv, resolveRows, traceToRow } from '../src/calibrate/index.js';
import { devicePresets, getDevice } from '../src/cost/presets.js';
import { validateProfile } from '../src/cost/profile.js';
import { InputError } from '../src/errors.js';
import { decimal } from '../src/inputs/index.js';
import { formatLayout, parseLayout } from '../src/layout/layout.js';
import { lower } from '../src/lower/lower.js';
import { makePlan, planFromJson } from '../src/lower/plan.js';
import { parseMesh } from '../src/mesh/mesh.js';
import { buildGraph, DIM_NAMES, NEVER_SPLIT } from '../src/model/graph.js';
import { getPreset } from '../src/model/presets.js';
import { parseModelSpec } from '../src/model/spec.js';
import { loadCheckpoint, saveCheckpoint } from '../src/runtime/checkpoint.js';
import { Executor } from '../src/runtime/executor.js';
import { kendallTau } from '../src/calibrate/metrics.js';

/**
 * Fuzz tests that can fail: inputs bad by construction (one part of a good input replaced by a
 * value outside its definition) must be refused with an InputError whose message names that
 * part; good ones, drawn from the definition, must be accepted and read back as written.
 */
function refusal(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(InputError);
    expect((e as Error).message).not.toMatch(/\n/);
    return (e as Error).message;
  }
  throw new Error('accepted an input that is bad by construction');
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const seed = 12;

describe('meshes', () => {
  const name = fc.constantFrom('rows', 'cols', 'x', 'y', 'z', 'data', 'model', 'a_1');
  const axes = fc.uniqueArray(fc.record({ name, size: fc.integer({ min: 1, max: 64 }) }), { minLength: 1, maxLength: 4, selector: (a) => a.name });
  const badSize = fc.constantFrom('0', '-2', '1.5', '0x4', '', 'a', '1e3', '+2', '2 2', '99999999999');

  it('accepts every well-formed mesh, both forms, and reads back its sizes', () => {
    fc.assert(fc.property(axes, (as) => {
      expect(parseMesh(as.map((a) => `${a.name}:${a.size}`).join(';')).axes).toEqual(as);
      expect(parseMesh(as.map((a) => a.size).join('x')).axes.map((a) => a.size)).toEqual(as.map((a) => a.size));
    }), { seed, numRuns: 300 });
  });

  it('refuses a bad size, naming the axis and the size', () => {
    fc.assert(fc.property(axes, fc.nat(), badSize, (as, k, bad) => {
      const i = k % as.length;
      const text = as.map((a, j) => `${a.name}:${j === i ? bad : a.size}`).join(';');
      const m = refusal(() => parseMesh(text));
      expect(m).toMatch(new RegExp(`${esc(as[i].name)}|${esc(JSON.stringify(bad))}|larger than mesh-search handles`));
      refusal(() => parseMesh(as.map((a, j) => (j === i ? bad : String(a.size))).join('x')));
    }), { seed, numRuns: 300 });
  });

  it('refuses a bad or repeated axis name, naming it', () => {
    fc.assert(fc.property(axes, fc.constantFrom('1a', 'a-b', 'é', 'r w'), (as, bad) => {
      expect(refusal(() => parseMesh([...as.map((a) => `${a.name}:${a.size}`), `${bad}:2`].join(';')))).toContain(bad.trim().split(' ')[0]);
      expect(refusal(() => parseMesh([...as, as[0]].map((a) => `${a.name}:${a.size}`).join(';')))).toContain(`"${as[0].name}" is named twice`);
    }), { seed, numRuns: 100 });
  });
});

describe('layouts', () => {
  const axisNames = ['rows', 'cols', 'x'];
  const rules = fc.uniqueArray(fc.record({ dim: fc.constantFrom(...DIM_NAMES.filter((d) => !NEVER_SPLIT.has(d))), axes: fc.uniqueArray(fc.constantFrom(...axisNames), { minLength: 1, maxLength: 3 }) }), { maxLength: 5, selector: (r) => r.dim });
  const text = (rs: { dim: string; axes: string[] }[]) => rs.map((r) => `${r.dim}:${r.axes.join('+')}`).join(';');

  it('accepts every well-formed layout and writes it back canonically', () => {
    fc.assert(fc.property(rules, (rs) => {
      const l = parseLayout(text(rs));
      expect([...l.entries()].sort()).toEqual(rs.map((r) => [r.dim, r.axes]).sort());
      expect(parseLayout(formatLayout(l))).toEqual(l);
    }), { seed, numRuns: 300 });
  });

  it('refuses an unknown dimension, a bad axis token, a repeated rule or axis, a rule without a colon, naming it', () => {
    fc.assert(fc.property(rules, fc.constantFrom('dff', 'Batch', 'heads2'), fc.constantFrom('ro ws', 'rows+', '+cols', '1x', 'a-b'), (rs, dim, axis) => {
      expect(refusal(() => parseLayout(text([...rs, { dim, axes: ['rows'] }])))).toContain(`unknown dimension "${dim}"`);
      expect(refusal(() => parseLayout(`${text(rs)};batch:${axis}`.replace(/^;/, '')))).toMatch(/is not an axis name|two rules/);
      if (rs.length) expect(refusal(() => parseLayout(text([...rs, rs[0]])))).toContain(`dimension "${rs[0].dim}" has two rules`);
      expect(refusal(() => parseLayout('d_ff:cols+cols'))).toContain('names axis "cols" twice');
      expect(refusal(() => parseLayout(`${text(rs)};vocab`.replace(/^;/, '')))).toContain('rule "vocab" is not dimension:axis');
    }), { seed, numRuns: 100 });
  });
});

describe('model specs', () => {
  const good = fc.record({
    layers: fc.integer({ min: 1, max: 48 }), dModel: fc.integer({ min: 1, max: 8192 }), heads: fc.integer({ min: 1, max: 64 }),
    dKv: fc.integer({ min: 1, max: 256 }).map((x) => 2 * x), dFf: fc.integer({ min: 1, max: 32768 }), vocab: fc.integer({ min: 2, max: 65536 }),
    seqLen: fc.integer({ min: 1, max: 4096 }), batch: fc.integer({ min: 1, max: 4096 }),
    kind: fc.constantFrom('decoder', 'encoder-decoder'), dtype: fc.constantFrom('bfloat16', 'float16', 'float32'),
    activation: fc.constantFrom('relu', 'gelu', 'swiglu'), dropout: fc.boolean(), tiedEmbeddings: fc.boolean(), positions: fc.constantFrom('learned', 'rotary'),
  });
  const ints = ['layers', 'dModel', 'heads', 'dKv', 'dFf', 'vocab', 'seqLen', 'batch'] as const;
  const enums = ['kind', 'dtype', 'activation', 'positions'] as const;

  it('accepts every spec drawn from the definition', () => {
    fc.assert(fc.property(good, (g) => {
      const s = parseModelSpec({ name: 'm', ...g });
      expect([s.dModel, s.heads, s.batch, s.decoderLayers]).toEqual([g.dModel, g.heads, g.batch, g.layers]);
    }), { seed, numRuns: 300 });
  });

  it('refuses a size that is not a positive integer, a wrong enum or flag, an unknown field, naming the field', () => {
    fc.assert(fc.property(good, fc.constantFrom(...ints), fc.constantFrom(0, -1, 1.5, '8', null, 2 ** 31, true, 1e999),
      fc.constantFrom(...enums), fc.constantFrom('Decoder', 'bf17', 'ReLU', '', 3), (g, k, v, e, w) => {
        expect(refusal(() => parseModelSpec({ ...g, [k]: v }))).toMatch(new RegExp(`"${k}"|size above 2\\^30|too many layers`));
        expect(refusal(() => parseModelSpec({ ...g, [e]: w }))).toContain(`"${e}"`);
        expect(refusal(() => parseModelSpec({ ...g, dropout: 'yes' }))).toContain('"dropout"');
        expect(refusal(() => parseModelSpec({ ...g, dmodel: 8 }))).toContain('unknown field "dmodel"');
      }), { seed, numRuns: 200 });
  });
});

describe('plan files', () => {
  const good = fc.record({ zero: fc.constantFrom(0, 1, 2, 3), recompute: fc.constantFrom('none', 'selective', 'full'), microbatches: fc.integer({ min: 1, max: 1024 }) });

  it('accepts every plan drawn from the definition', () => {
    fc.assert(fc.property(good, (g) => {
      expect(planFromJson({ layout: 'batch:rows', ...g })).toMatchObject(g);
    }), { seed, numRuns: 100 });
  });

  it('refuses a field outside its definition, naming it', () => {
    fc.assert(fc.property(good, fc.constantFrom(
      ['zero', 4], ['zero', -1], ['zero', '1'], ['zero', 1.5], ['recompute', 'some'], ['recompute', 'None'], ['recompute', 0],
      ['microbatches', 0], ['microbatches', 1.5], ['microbatches', '2'], ['microbatches', 1e999], ['layout', 3], ['layout', null],
    ), (g, [k, v]) => {
      expect(refusal(() => planFromJson({ layout: 'batch:rows', ...g, [k as string]: v }))).toContain(k as string);
    }), { seed, numRuns: 200 });
  });
});

describe('device profiles', () => {
  // Every number a profile holds, where it is, and its range by the definition (validateProfile's bounds).
  const fields: [string, (p: any) => any, (p: any, v: unknown) => void, number, number][] = [
    ['peakFlops.bfloat16', (p) => p.peakFlops.bfloat16, (p, v) => { p.peakFlops.bfloat16 = v; }, 1e6, 1e18],
    ['peakFlops.float32', (p) => p.peakFlops.float32, (p, v) => { p.peakFlops.float32 = v; }, 1e6, 1e18],
    ['memoryBytes', (p) => p.memoryBytes, (p, v) => { p.memoryBytes = v; }, 2 ** 20, 2 ** 50],
    ['memoryBandwidth', (p) => p.memoryBandwidth, (p, v) => { p.memoryBandwidth = v; }, 1e6, 1e16],
    ['levels[0].link.bandwidth', (p) => p.levels[0].link.bandwidth, (p, v) => { p.levels[0].link.bandwidth = v; }, 1e3, 1e18],
    ['levels[1].link.latency', (p) => p.levels[1].link.latency, (p, v) => { p.levels[1].link.latency = v; }, 0, 1],
    ['efficiency.softmax', (p) => p.efficiency.softmax, (p, v) => { p.efficiency.softmax = v; }, 0, 1],
    ['overlap', (p) => p.overlap, (p, v) => { p.overlap = v; }, 0, 1],
    ['axisLinks.rows.bandwidth', (p) => p.axisLinks.rows.bandwidth, (p, v) => { p.axisLinks.rows.bandwidth = v; }, 1e3, 1e18],
    ['axisLinks.rows.latency', (p) => p.axisLinks.rows.latency, (p, v) => { p.axisLinks.rows.latency = v; }, 0, 1],
    ['efficiencyHalfWork.matmul', (p) => p.efficiencyHalfWork.matmul, (p, v) => { p.efficiencyHalfWork.matmul = v; }, 0, 1e18],
  ];
  const base = () => ({ ...JSON.parse(JSON.stringify(getDevice('a100-80g'))), axisLinks: { rows: { bandwidth: 1e10, latency: 1e-5 } }, efficiencyHalfWork: { matmul: 1e8 } });
  const field = fc.integer({ min: 0, max: fields.length - 1 });

  it('accepts every preset, and any number inside each field\'s range', () => {
    for (const p of devicePresets()) expect(validateProfile(JSON.parse(JSON.stringify(p))).name).toBe(p.name);
    fc.assert(fc.property(field, fc.double({ min: 1e-6, max: 1, noNaN: true }), (i, u) => {
      const [, , set, lo, hi] = fields[i];
      const p = base();
      // Log-uniform between the bounds where both are positive, else uniform.
      set(p, lo > 0 ? Math.min(hi, lo * (hi / lo) ** u) : lo + u * (hi - lo));
      expect(() => validateProfile(p)).not.toThrow();
    }), { seed, numRuns: 300 });
  });

  it('refuses a value outside its range, not finite or not a number, naming the field', () => {
    fc.assert(fc.property(field, fc.constantFrom('below', 'above', 'inf', '-inf', 'nan', 'string', 'null'), (i, how) => {
      const [name, , set, lo, hi] = fields[i];
      const v = { below: lo > 0 ? lo / 10 : -1e-12, above: hi * 10, inf: Infinity, '-inf': -Infinity, nan: NaN, string: '1', null: null }[how];
      const p = base();
      set(p, v);
      const m = refusal(() => validateProfile(p, 'profile p.json'));
      expect(m).toContain(name.replace(/^levels\[1\]\.link\.latency$/, 'levels[1].link.latency'));
      expect(m).toMatch(/^profile p\.json: /);
    }), { seed, numRuns: 300 });
  });
});

describe('benchmark CSV cells', () => {
  const example = readFileSync('data/bench-example.csv', 'utf8').trimEnd().split('\n');
  const header = example[0].split(',');
  const numeric = ['step_time', 'matmul_time', 'elementwise_time', 'softmax_time', 'reduction_time', 'comm_time:rows', 'comm_time:cols'];
  const what: Record<string, string> = {
    step_time: 'step time', matmul_time: 'matmul time', elementwise_time: 'elementwise time', softmax_time: 'softmax time',
    reduction_time: 'reduction time', 'comm_time:rows': 'communication time over rows', 'comm_time:cols': 'communication time over cols',
  };
  const base = getDevice('tpu-v2');
  // Rows 2 and 4 (lines 2 and 4) measure every column.
  const fullRows = [1, 3].filter((r) => numeric.every((c) => example[r].split(',')[header.indexOf(c)] !== ''));
  const bad = fc.constantFrom('0x10', '1_0', 'Infinity', '-1', '0', '1e-300', 'abc', '1e999', '12abc', '0b1', '1,5', '.', '--1');
  const good = fc.oneof(fc.double({ min: 1e-6, max: 8e4, noNaN: true }).map((x) => String(x)), fc.constantFrom('1e-3', ' 0.25 ', '+0.5', '2.', '.5'));

  const csvWith = (row: number, col: string, value: string) => {
    const lines = example.slice();
    const cells = lines[row].split(',');
    cells[header.indexOf(col)] = value.includes(',') ? `"${value}"` : value;
    lines[row] = cells.join(',');
    return lines.join('\n');
  };

  it('refuses a cell that is not a plain decimal in range, on its line, naming the column', () => {
    expect(fullRows.length).toBeGreaterThan(0);
    fc.assert(fc.property(fc.constantFrom(...fullRows), fc.constantFrom(...numeric), bad, (row, col, v) => {
      const { rows, rejected } = resolveRows(benchRowsFromCsv(csvWith(row, col, v), 'b.csv'), base);
      expect(rows).toHaveLength(example.length - 2);
      expect(rejected).toEqual([{ source: { file: 'b.csv', line: row + 1 }, reason: expect.stringContaining(what[col]) }]);
    }), { seed, numRuns: 150 });
  });

  it('accepts a decimal in range in any numeric column and reads it exactly', () => {
    fc.assert(fc.property(fc.constantFrom(...fullRows), fc.constantFrom(...numeric), good, (row, col, v) => {
      const { rows, rejected } = resolveRows(benchRowsFromCsv(csvWith(row, col, v), 'b.csv'), base);
      expect(rejected).toEqual([]);
      const m = rows.find((r) => r.source.line === row + 1)!;
      const got = col === 'step_time' ? m.stepTime : col.startsWith('comm_time:') ? m.components.comm[col.slice(10)] : m.components.compute[col.replace('_time', '') as 'matmul'];
      expect(got).toBe(Number(v.trim()));
    }), { seed, numRuns: 150 });
  });

  it('refuses a header with a repeated or unknown column, naming it', () => {
    fc.assert(fc.property(fc.constantFrom(...header), fc.constantFrom('step', 'Step_time', 'comm_time:', 'comm_time:rows+'), (dup, unknown) => {
      expect(refusal(() => benchRowsFromCsv([[...header, dup].join(','), ...example.slice(1)].join('\n'), 'b.csv'))).toBe(`b.csv:1: column "${dup}" is named twice`);
      expect(refusal(() => benchRowsFromCsv([[...header, unknown].join(','), ...example.slice(1)].join('\n'), 'b.csv'))).toContain(`unknown column "${unknown}"`);
    }), { seed, numRuns: 60 });
  });

  it('decimal() takes exactly the plain decimal notation', () => {
    fc.assert(fc.property(fc.double({ noNaN: true, noDefaultInfinity: true }), (x) => {
      expect(decimal(String(x))).toBe(x === 0 ? 0 : x);
      expect(decimal(`0x${Math.abs(Math.trunc(x)).toString(16)}`)).toBeUndefined();
      expect(decimal(`${x}_0`)).toBeUndefined();
    }), { seed, numRuns: 300 });
  });
});

describe('traces', () => {
  const ev = (tid: number, step: number, cat: string, klass: string, ts: number, dur: number, axes: string[] = []) => ({
    name: 'op', cat, ph: 'X', ts, dur, pid: 0, tid, args: { op: 'op', phase: 'forward', kind: 'einsum', klass, flops: 1, bytes: 1, axes, collective: cat === 'collective' ? 'allreduce' : null, step },
  });
  const trace = () => {
    const events: ReturnType<typeof ev>[] = [];
    for (const step of [0, 1, 2]) for (const tid of [0, 1, 2, 3]) {
      events.push(ev(tid, step, 'compute', 'matmul', step * 2000, 1000));
      events.push(ev(tid, step, 'collective', 'elementwise', step * 2000 + 1000, 300, ['cols']));
    }
    return { traceEvents: events, otherData: { mesh: 'rows:2;cols:2', model: 'tiny', plan: { layout: 'batch:rows;d_ff:cols', zero: 0, recompute: 'none', microbatches: 1 }, steps: [{ seconds: 1 }, { seconds: 1 }, { seconds: 1 }] } };
  };
  const corrupt = fc.constantFrom(
    ['ts', '0'], ['ts', null], ['ts', Infinity], ['dur', -5], ['dur', NaN], ['tid', -1], ['tid', 1.5], ['tid', '0'],
    ['args', 7], ['args.step', -1], ['args.step', '1'], ['args.axes', 'cols'], ['args.axes', [1]], ['args.klass', 3],
  );

  it('reads a well-formed trace as one usable row', () => {
    const { rows, rejected } = resolveRows([traceToRow(trace(), 't.json')], getDevice('tpu-v2'));
    expect(rejected).toEqual([]);
    expect(rows).toHaveLength(1);
  });

  it('rejects an event of the wrong type, naming the event', () => {
    fc.assert(fc.property(fc.nat({ max: 23 }), corrupt, (i, [path, v]) => {
      const t = trace() as any;
      const [a, b] = (path as string).split('.');
      if (b) t.traceEvents[i][a][b] = v;
      else t.traceEvents[i][a] = v;
      const row = traceToRow(t, 't.json');
      expect(row.problem).toMatch(new RegExp(`^traceEvents\\[${i}\\]`));
      expect(resolveRows([row], getDevice('tpu-v2')).rejected[0].reason).toBe(row.problem);
    }), { seed, numRuns: 150 });
  });
});

describe('checkpoints', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ms-ckpt-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const program = lower(buildGraph(getPreset('tiny')), parseMesh('1x2'), makePlan('batch:cols'));
  const fresh = () => new Executor(program, { seed: 1, trace: false } as never);
  const ex = fresh();
  ex.stepIndex = 2;
  const good = join(dir, 'good');
  saveCheckpoint(good, ex, 7, [5, 4]);
  const text = readFileSync(good, 'utf8');
  const names = [...ex.devices[0].params.keys()];
  const f32 = (xs: number[]) => Buffer.from(new Float32Array(xs).buffer).toString('base64');

  it('loads what it saved, every shard exactly', () => {
    const back = fresh();
    expect(loadCheckpoint(good, back)).toEqual({ seed: 7, losses: [5, 4] });
    expect(back.stepIndex).toBe(2);
    for (const n of names) expect(back.devices[1].params.get(n)).toEqual(ex.devices[1].params.get(n));
  });

  it('refuses a part outside its definition, naming it, and leaves the executor untouched', () => {
    fc.assert(fc.property(fc.nat({ max: 1 }), fc.constantFrom('params', 'm', 'v'), fc.nat({ max: names.length - 1 }), fc.constantFrom(
      ['shard', 'short'], ['shard', 'long'], ['shard', 'base64'], ['shard', 'number'], ['shard', 'nan'], ['shard', 'missing'],
      ['step', -1], ['step', 1.5], ['step', 3], ['step', '2'], ['seed', null], ['losses', 'nan'], ['losses', 'negative'], ['devices', 'one'],
    ), (d, kind, k, [part, how]) => {
      const c = JSON.parse(text);
      const n = names[k];
      const len = ex.devices[d].params.get(n)!.length;
      let named: string;
      if (part === 'shard') {
        named = how === 'missing' ? `devices[${d}].${kind} lacks tensor "${n}"` : `devices[${d}].${kind}.${n}`;
        if (how === 'missing') delete c.devices[d][kind][n];
        else c.devices[d][kind][n] = { short: f32(new Array(Math.max(0, len - 1)).fill(1)), long: f32(new Array(len + 1).fill(1)), base64: '@@@@', number: 3, nan: f32([NaN, ...new Array(len - 1).fill(0)]) }[how as string];
      } else if (part === 'losses') {
        c.losses[1] = how === 'nan' ? null : -1;
        named = 'losses[1]';
      } else if (part === 'devices') {
        c.devices.pop();
        named = '"devices"';
      } else {
        c[part as string] = how;
        named = part === 'step' && how === 3 ? '"losses"' : `"${part}"`;
      }
      const f = join(dir, 'bad');
      writeFileSync(f, JSON.stringify(c));
      const target = fresh();
      const before = target.devices[0].params.get(names[0])!.slice();
      expect(refusal(() => loadCheckpoint(f, target))).toContain(named);
      expect(target.stepIndex).toBe(0);
      expect(target.devices[0].params.get(names[0])).toEqual(before);
    }), { seed, numRuns: 40 });
  });
});

describe('Kendall tau-b, O(n log n)', () => {
  /** The definition, pair by pair. */
  function tauByPairs(x: number[], y: number[], problem: string[], plan: string[]): number | null {
    let c = 0, d = 0, pairs = 0, tx = 0, ty = 0;
    for (let i = 0; i < x.length; i++) {
      for (let j = i + 1; j < x.length; j++) {
        if (problem[i] !== problem[j] || plan[i] === plan[j]) continue;
        pairs++;
        const a = Math.sign(x[i] - x[j]);
        const b = Math.sign(y[i] - y[j]);
        if (a === 0) tx++;
        if (b === 0) ty++;
        if (a * b > 0) c++;
        else if (a * b < 0) d++;
      }
    }
    const den = Math.sqrt((pairs - tx) * (pairs - ty));
    return den > 0 ? (c - d) / den : null;
  }

  it('equals the pair-by-pair definition, ties and groups included', () => {
    const row = fc.record({ x: fc.integer({ min: 0, max: 5 }), y: fc.integer({ min: 0, max: 5 }), problem: fc.constantFrom('a', 'b'), plan: fc.constantFrom('p', 'q', 'r', 's') });
    fc.assert(fc.property(fc.array(row, { maxLength: 40 }), (rs) => {
      const x = rs.map((r) => r.x), y = rs.map((r) => r.y), problem = rs.map((r) => r.problem), plan = rs.map((r) => r.plan);
      const want = tauByPairs(x, y, problem, plan);
      const got = kendallTau(x, y, { problem, plan });
      if (want === null) expect(got).toBeNull();
      else expect(got).toBeCloseTo(want, 12);
    }), { seed, numRuns: 500 });
  });
});
