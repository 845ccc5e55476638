import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { getDevice } from '../src/cost/presets.js';
import { parseLayout } from '../src/layout/layout.js';
import { makePlan } from '../src/lower/plan.js';
import { parseMesh } from '../src/mesh/mesh.js';
import { buildGraph, type Graph } from '../src/model/graph.js';
import { findPreset } from '../src/model/presets.js';
import { DEFAULT_ADAM } from '../src/runtime/adam.js';
import { initBackend } from '../src/runtime/backend.js';
import { runPlan } from '../src/runtime/index.js';
import { slotsOf } from '../src/runtime/reference.js';
import { MOE_DIMS, validLayout } from './support/arbitraries.js';

beforeAll(async () => {
  await initBackend('wasm');
});

describe('MoE routing', () => {
  it('top-2 with capacity 3: first choices in token order, then second choices, ties to the lower expert, the rest dropped (by hand)', () => {
    const graph = { dimSizes: { expert_unsplit: 2, expert_capacity: 3 }, spec: { topK: 2 } } as unknown as Graph;
    // One sequence of 4 tokens over 2 experts.
    const probs = tf.tensor([0.7, 0.3, 0.6, 0.4, 0.2, 0.8, 0.5, 0.5], [1, 4, 2]);
    const slots = slotsOf(probs, graph);
    const ones: string[] = [];
    slots.forEach((v, i) => {
      if (v !== 0) ones.push(`t${Math.floor(i / 6)} e${Math.floor(i / 3) % 2} s${i % 3}`);
    });
    // First choices: t0→e0 slot 0, t1→e0 slot 1, t2→e1 slot 0, t3 (a tie)→e0 slot 2.
    // Second choices: t0→e1 slot 1, t1→e1 slot 2; t2→e0 and t3→e1 find their experts full.
    expect(ones.sort()).toEqual(['t0 e0 s0', 't0 e1 s1', 't1 e0 s1', 't1 e1 s2', 't2 e1 s0', 't3 e0 s2']);
  });
});

describe('tiny-moe, sharded, equals the unsplit model', () => {
  it('over random valid layouts of 2x2 with ZeRO, recompute and microbatches (fixed seed), experts split in most', async () => {
    const spec = findPreset('tiny-moe')!;
    const mesh = parseMesh('2x2');
    const graph = buildGraph(spec);
    let expertsSplit = 0, runs = 0;
    // Most draws split experts (expert parallelism is what this runs for), the rest any valid layout.
    const layouts = validLayout(graph, mesh, MOE_DIMS);
    const arb = fc.tuple(fc.oneof({ arbitrary: layouts.filter((l) => l.has('experts')), weight: 3 }, { arbitrary: layouts, weight: 1 }), fc.constantFrom(0, 1, 2, 3), fc.constantFrom('none', 'selective', 'minimal', 'full'), fc.constantFrom(1, 2));
    await fc.assert(fc.asyncProperty(arb, async ([layout, zero, recompute, microbatches]) => {
      const replicas = (layout.get('batch') ?? []).reduce((p, a) => p * mesh.axes.find((x) => x.name === a)!.size, 1);
      fc.pre((spec.batch / replicas) % microbatches === 0);
      if (layout.has('experts')) expertsSplit++;
      runs++;
      // Adam's eps at 1e-6: at 1e-8 a gradient element that is float-rounding noise (~1e-9) moves its
      // weight by a sizeable fraction of the learning rate, in either implementation.
      const r = await runPlan({ spec, mesh, plan: makePlan(layout, { zero, recompute, microbatches }), steps: 2, device: getDevice('tpu-v2'), check: true, backend: 'wasm', adam: { ...DEFAULT_ADAM, eps: 1e-6 } });
      // Relative to each tensor's largest entry; the norms' biases start at zero, so theirs is the loosest.
      expect(r.check!.maxRelativeError).toBeLessThan(1e-3);
      expect(r.check!.loss).toBeLessThan(1e-5);
    }), { numRuns: 16, seed: 20261203 });
    expect(expertsSplit).toBeGreaterThanOrEqual(runs / 2);
  });

  // The draws above give each axis to one dimension; these put experts on the batch axes, which
  // turns the regroup into an all-to-all (and, with experts on more axes than batch, an allgather).
  it.each([
    ['batch:rows;experts:rows', 0, 'none'],
    ['batch:rows+cols;experts:cols', 1, 'selective'],
    ['batch:rows+cols;experts:cols+rows', 3, 'full'],
    ['batch:cols;experts:rows+cols', 2, 'none'],
    ['batch:rows;experts:rows;length:cols', 3, 'selective'],
    ['layers:rows;batch:cols;experts:cols', 1, 'none'],
  ] as const)('%s, ZeRO %d, recompute %s', async (text, zero, recompute) => {
    const r = await runPlan({ spec: findPreset('tiny-moe')!, mesh: parseMesh('2x2'), plan: makePlan(parseLayout(text), { zero, recompute }), steps: 2, device: getDevice('tpu-v2'), check: true, backend: 'wasm', adam: { ...DEFAULT_ADAM, eps: 1e-6 } });
    expect(r.check!.maxRelativeError).toBeLessThan(1e-3);
  });
});
