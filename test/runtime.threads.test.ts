import { describe, expect, it } from 'vitest';
import { getDevice } from '../src/cost/presets.js';
import { makePlan } from '../src/lower/plan.js';
import { parseMesh } from '../src/mesh/mesh.js';
import { getPreset } from '../src/model/presets.js';
import { runPlan } from '../src/runtime/index.js';

const tiny = getPreset('tiny');
const tpu = getDevice('tpu-v2');

describe('devices on worker threads, collectives through shared memory', () => {
  it.each([
    ['2x2', 'batch:rows;heads:cols;d_ff:cols', {}, 2],
    ['2x2x2', 'layers:x;batch:y;heads:z', { microbatches: 2 }, 2],
    ['2x4', 'batch:cols;d_model:rows', { zero: 2, microbatches: 2 }, 3],
    ['2x2', 'length:rows;batch:cols', { zero: 3, recompute: 'full' }, 4],
    ['2x2', 'd_ff:rows+cols;vocab:cols;memory_length:rows', {}, 2],
  ] as const)('%s %s %j on %i threads: losses and every weight bit for bit those of the lockstep run', async (m, l, o, threads) => {
    const mesh = parseMesh(m), plan = makePlan(l, o);
    const a = await runPlan({ spec: tiny, mesh, plan, steps: 2, device: tpu, threads: 0, check: true, backend: 'wasm' });
    const b = await runPlan({ spec: tiny, mesh, plan, steps: 2, device: tpu, threads, check: true, backend: 'wasm' });
    expect(b.steps.map((s) => s.loss)).toEqual(a.steps.map((s) => s.loss));
    expect([b.check!.params, b.check!.worst]).toEqual([a.check!.params, a.check!.worst]);
    expect(b.check!.maxRelativeError).toBeLessThan(1e-4);
  });

  it('the trace has one track per device, each a sequence of events that never overlap, on the shared clock', async () => {
    const r = await runPlan({ spec: tiny, mesh: parseMesh('2x2'), plan: makePlan('batch:rows;heads:cols'), steps: 2, device: tpu, threads: 2, trace: true, backend: 'wasm' });
    const byDevice = new Map<number, { ts: number; dur: number }[]>();
    for (const e of r.trace.traceEvents) (byDevice.get(e.tid) ?? byDevice.set(e.tid, []).get(e.tid)!).push(e);
    expect([...byDevice.keys()].sort()).toEqual([0, 1, 2, 3]);
    for (const evs of byDevice.values()) {
      expect(evs.length).toBeGreaterThan(100);
      const sorted = [...evs].sort((x, y) => x.ts - y.ts);
      for (let i = 1; i < sorted.length; i++) expect(sorted[i].ts).toBeGreaterThanOrEqual(sorted[i - 1].ts + sorted[i - 1].dur - 1e-3);
    }
  });

  it('the weights gathered from the threads are those the devices hold', async () => {
    const mesh = parseMesh('2x2'), plan = makePlan('batch:rows;d_ff:cols', { zero: 3 });
    const r = await runPlan({ spec: tiny, mesh, plan, steps: 1, device: tpu, threads: 2, check: true, backend: 'wasm' });
    expect(r.check!.params).toBeLessThan(1e-4);
    expect(r.check!.params).toBeGreaterThan(0); // the comparison saw trained weights, not nothing
  });
});
