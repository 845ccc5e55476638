import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { estimatePlan } from '../src/cost/estimatePlan.js';
import { getDevice } from '../src/cost/presets.js';
import type { HardwareProfile } from '../src/cost/profile.js';
import { ENGINES, whyNot, type Engine } from '../src/engine/index.js';
import { compileLayout, layoutProblem, splittableDims, tensorDimSets, type Layout } from '../src/layout/layout.js';
import { planFromJson, RECOMPUTE, type Plan, type ZeroStage } from '../src/lower/plan.js';
import { sequenceParallelProblem } from '../src/lower/lower.js';
import { parseMesh, type Mesh } from '../src/mesh/mesh.js';
import { buildGraph, DIM_NAMES, type DimName } from '../src/model/graph.js';
import { getPreset } from '../src/model/presets.js';
import { parseModelSpec, type ModelSpec } from '../src/model/spec.js';
import { engineProfile, pricingProfile, search } from '../src/search/index.js';
import { tinyMesh, tinyProfile, tinySpec } from './search.helpers.js';

/**
 * The brute force the `--engine` search is held to: every layout (each dimension on every set of
 * axes, in mesh order, valid by the layout module's check), every strategy of the search's space
 * with and without sequence parallelism,
 * each priced by estimatePlan and kept when the engine's rules (whyNot) accept it.
 */
function bruteForce(engine: Engine, spec: ModelSpec, mesh: Mesh, profile: HardwareProfile): number | null {
  const graph = buildGraph(spec);
  const A = mesh.axes.length;
  let best: number | null = null;
  const masks = new Array<number>(DIM_NAMES.length).fill(0);
  // Two dimensions of one tensor never share an axis (the layout module's tensors): skip those early.
  const shares = DIM_NAMES.map((d) => DIM_NAMES.map((e) => d !== e && tensorDimSets(graph).some((t) => t.dims.includes(d) && t.dims.includes(e))));
  const visit = () => {
    const layout = new Map<DimName, string[]>();
    DIM_NAMES.forEach((d, k) => { if (masks[k]) layout.set(d, mesh.axes.filter((_, a) => masks[k] & (1 << a)).map((x) => x.name)); });
    if (layoutProblem(graph, mesh, compileLayout(layout as Layout, mesh)) !== null) return;
    const split = (layout.get('batch') ?? []).reduce((p, a) => p * mesh.axes.find((x) => x.name === a)!.size, 1);
    const perReplica = spec.batch / split;
    // Sequence parallelism where the lowering takes it for the layout (the engine's rules refuse it where the engine lacks it).
    for (const sequenceParallel of sequenceParallelProblem(graph, mesh, layout as Layout) === null ? [false, true] : [false])
    for (const zero of (layout.has('batch') ? [0, 1, 2, 3] : [0]) as ZeroStage[]) {
      for (const recompute of RECOMPUTE) {
        for (let microbatches = 1; perReplica % microbatches === 0; microbatches *= 2) {
          const plan: Plan = { layout, zero, recompute, microbatches, sequenceParallel, virtualStages: 1 };
          if (whyNot(engine, plan, mesh, spec, profile).length > 0) continue;
          // Priced as the engine runs it: its full recompute, and the gradient sync it does not hide.
          const e = estimatePlan(graph, mesh, plan, pricingProfile({ engine }, plan, engineProfile({ engine }, profile)));
          if (e.feasible && (best === null || e.time.step < best)) best = e.time.step;
        }
      }
    }
  };
  // Only the dimensions the model has and a layout may name: the others split nothing.
  const present = splittableDims(graph);
  const rec = (k: number) => {
    if (k === DIM_NAMES.length) return visit();
    for (let m = 0; m < (present.has(DIM_NAMES[k]) ? 1 << A : 1); m++) {
      if (masks.some((o, j) => j < k && shares[k][j] && (o & m))) continue;
      masks[k] = m;
      rec(k + 1);
    }
    masks[k] = 0;
  };
  rec(0);
  return best;
}

async function searched(engine: Engine, spec: ModelSpec, mesh: Mesh, profile: HardwareProfile): Promise<{ step: number | null; plan: Plan | null }> {
  try {
    const r = await search({ spec, mesh, profile, workers: 0, top: 1, filter: { engine } });
    return { step: r.best?.time.step ?? null, plan: null };
  } catch (e) {
    if ((e as Error).name === 'InputError') return { step: null, plan: null };
    throw e;
  }
}

describe('search --engine is exact within the engine\'s space', () => {
  it('finds the best plan a brute force over that space finds, for every engine (random small models and meshes)', async () => {
    await fc.assert(fc.asyncProperty(tinySpec(), tinyMesh(2), tinyProfile(), fc.constantFrom(...ENGINES), async (spec, mesh, profile, engine) => {
      const ref = bruteForce(engine, spec, mesh, profile);
      const got = await searched(engine, spec, mesh, profile);
      if (ref === null) expect(got.step).toBeNull();
      else expect(got.step).toBeCloseTo(ref, 12);
    }), { numRuns: 40, seed: 11 });
  });

  it('the best plan it returns is one the engine can run', async () => {
    const spec = getPreset('mtf-lm-s0');
    const mesh = parseMesh('4x8');
    for (const engine of ENGINES) {
      const r = await search({ spec, mesh, profile: getDevice('tpu-v2'), workers: 0, filter: { engine } });
      for (const e of r.top) {
        const plan = { layout: new Map(e.plan.layout.split(';').filter(Boolean).map((x) => [x.split(':')[0], x.split(':')[1].split('+')])), zero: e.plan.zero, recompute: e.plan.recompute, microbatches: e.plan.microbatches, sequenceParallel: false, virtualStages: 1 } as Plan;
        expect(whyNot(engine, plan, mesh, spec, getDevice('tpu-v2'))).toEqual([]);
      }
    }
  });

  it('searches mirror images too: Megatron-LM wants pipeline outside data, which the canonical order of equal axes puts inside', async () => {
    // A counterexample fast-check found with symmetry left on (seed 5): three interchangeable axes of 2.
    const spec = parseModelSpec({ name: 'random', layers: 2, dModel: 4, heads: 1, dKv: 2, dFf: 4, vocab: 6, seqLen: 4, batch: 2, dropout: false, activation: 'gelu' });
    const base = getDevice('tpu-v2');
    const profile = { ...base, memoryBytes: 4096, levels: [{ ...base.levels[0], devices: 2 }, base.levels[1]] };
    const mesh = parseMesh('a0:2;a1:2;a2:2');
    const ref = bruteForce('megatron', spec, mesh, profile);
    expect(ref).not.toBeNull();
    expect((await searched('megatron', spec, mesh, profile)).step).toBeCloseTo(ref!, 12);
  });

  it('torchtitan: a llama3-8b on a 2x2 mesh, against the brute force', async () => {
    const llama3 = { ...getPreset('llama3-8b'), batch: 16 };
    const mesh = parseMesh('2x2');
    const profile = getDevice('h100-sxm');
    const ref = bruteForce('torchtitan', llama3, mesh, profile);
    expect(ref).not.toBeNull();
    expect((await searched('torchtitan', llama3, mesh, profile)).step).toBeCloseTo(ref!, 12);
  });
});

describe('search --engine prices full recompute as the engine runs it', () => {
  it('MaxText (XLA) leaves the rerun\'s dead code out, Megatron-LM reruns the whole layer, on a GPU profile that assumes the latter', async () => {
    const spec = parseModelSpec({ name: 'rc', layers: 4, dModel: 64, heads: 4, dKv: 16, dFf: 256, vocab: 128, seqLen: 32, batch: 8, dropout: false, activation: 'gelu' });
    const mesh = parseMesh('d:2');
    const graph = buildGraph(spec);
    const base = getDevice('a100-80g');
    expect(base.fullRecompute ?? 'layer').toBe('layer');
    for (const [engine, dropsDeadCode] of [['maxtext', true], ['megatron', false]] as const) {
      const r = await search({ spec, mesh, profile: base, workers: 0, top: 1000, filter: { engine } });
      const full = r.top.filter((e) => e.plan.recompute === 'full');
      expect(full.length).toBeGreaterThan(0);
      for (const e of full) {
        const plan = planFromJson(e.plan);
        const layer = estimatePlan(graph, mesh, plan, pricingProfile({ engine }, plan, base)).time.step;
        const needed = estimatePlan(graph, mesh, plan, pricingProfile({ engine }, plan, { ...base, fullRecompute: 'needed' })).time.step;
        expect(needed).toBeLessThan(layer);
        expect(e.time.step).toBeCloseTo(dropsDeadCode ? needed : layer, 15);
      }
    }
  });
});
