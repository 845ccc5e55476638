import { describe, expect, it } from 'vitest';
import { readBenchFile } from '../src/calibrate/bench.js';
import { fitPhysics } from '../src/calibrate/physics.js';
import { compareRow, groupRowsByDevice, summarizeErrors } from '../src/calibrate/validate.js';
import { estimatePlan } from '../src/cost/estimatePlan.js';
import { price } from '../src/cost/price.js';
import { devicePresets, getDevice } from '../src/cost/presets.js';
import { asRunBy, ROW_ENGINES, runSemantics } from '../src/engine/index.js';
import { makePlan } from '../src/lower/plan.js';
import { parseMesh } from '../src/mesh/mesh.js';
import { buildGraph } from '../src/model/graph.js';
import { getPreset } from '../src/model/presets.js';

// Eager PyTorch engines (torchtitan, DeepSpeed, llm-foundry) run their kernels at the profile's
// eagerCompute of the fused kernels' speed (src/cost/presets.ts EAGER, fitted on llm-foundry's A100 rows).
const HOLD_CHIP = ['efficiency', 'gemmHalfSize', 'launchOverhead', 'overlap', 'tensorParallelOverlap', 'levels'];
const a100 = getDevice('a100-80g');

describe('eager engines', () => {
  it('scale every kernel efficiency by eagerCompute, once; fused engines and profiles without it are left alone', () => {
    expect(a100.eagerCompute).toBeGreaterThan(0.5);
    expect(a100.eagerCompute).toBeLessThan(1);
    for (const e of ROW_ENGINES) {
      const p = asRunBy(e, a100);
      const f = runSemantics(e).kernels === 'eager' ? a100.eagerCompute! : 1;
      for (const k of Object.keys(a100.efficiency) as (keyof typeof a100.efficiency)[]) expect(p.efficiency[k], `${e} ${k}`).toBeCloseTo(a100.efficiency[k] * f, 12);
      // As run twice (search's engine profile, then a row's): not slowed again.
      expect(asRunBy(e, p).efficiency).toEqual(p.efficiency);
    }
    expect(['torchtitan', 'deepspeed', 'llm-foundry'].every((e) => runSemantics(e as never).kernels === 'eager')).toBe(true);
    expect(['megatron', 'maxtext', 't5x', 'mesh-tf'].every((e) => runSemantics(e as never).kernels === 'fused')).toBe(true);
    // TPUs run no eager engine: no constant, nothing changes.
    const v4 = getDevice('tpu-v4');
    expect(v4.eagerCompute).toBeUndefined();
    expect(asRunBy('torchtitan', v4).efficiency).toEqual(v4.efficiency);
    for (const p of devicePresets()) if (p.eagerCompute !== undefined) expect(p.eagerCompute, p.name).toBe(a100.eagerCompute);
  });

  it('price a compute-bound plan 1/eagerCompute slower, up to the per-kernel launch cost it does not scale', () => {
    const graph = buildGraph(getPreset('llama2-7b'));
    const mesh = parseMesh('dp:8');
    const plan = makePlan('batch:dp', { zero: 3, recompute: 'full', microbatches: 1 });
    const fused = estimatePlan(graph, mesh, plan, asRunBy('megatron', a100));
    const eager = estimatePlan(graph, mesh, plan, asRunBy('torchtitan', a100));
    const ratio = eager.time.compute / fused.time.compute;
    expect(ratio).toBeGreaterThan(1 / a100.eagerCompute! - 0.02);
    expect(ratio).toBeLessThanOrEqual(1 / a100.eagerCompute! + 1e-9);
  });

  it('is what calibrate fits on data/published/llm-foundry-a100.csv with the chip held (the preset carries its value)', () => {
    const { groups, rejected } = groupRowsByDevice(readBenchFile('data/published/llm-foundry-a100.csv'));
    expect(rejected).toEqual([]);
    expect(groups.map((g) => g.profile.name)).toEqual(['a100-80g']);
    const rows = groups[0].rows;
    expect(rows.every((m) => m.engine === 'llm-foundry')).toBe(true);
    const { eagerCompute: _, ...base } = a100;
    const fit = fitPhysics(rows, base, HOLD_CHIP);
    expect(fit.summary.parameters.map((p) => p.name)).toEqual(['eagerCompute']);
    expect(Math.abs(fit.profile.eagerCompute! - a100.eagerCompute!)).toBeLessThan(0.005);
    // Under the preset the rows are unbiased and within 10% on average (recorded numbers, not timings).
    const s = summarizeErrors(rows.map((m) => compareRow(m, a100).error));
    expect(s.meanAbsError).toBeLessThan(0.1);
    expect(Math.abs(s.signedMeanError)).toBeLessThan(0.03);
  });

  it('recovers an eagerCompute the rows were priced with (synthetic rows, chip held)', () => {
    const { groups } = groupRowsByDevice(readBenchFile('data/published/llm-foundry-a100.csv'));
    const { eagerCompute: _, ...base } = a100;
    const truth = { ...base, eagerCompute: 0.7 };
    const rows = groups[0].rows.map((m) => ({ ...m, stepTime: price(m.program, asRunBy('llm-foundry', truth)).time.step }));
    const fit = fitPhysics(rows, base, HOLD_CHIP);
    // The prior pulls toward the base (1) by what a 20% change costs: within 1% of the truth.
    expect(Math.abs(fit.profile.eagerCompute! / 0.7 - 1)).toBeLessThan(0.01);
  });
});
