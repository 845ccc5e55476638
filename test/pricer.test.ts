import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { getDevice } from '../src/cost/presets.js';
import { estimatePlan, type LoweringCache } from '../src/cost/estimatePlan.js';
import { price } from '../src/cost/price.js';
import { makePricer } from '../src/cost/pricer.js';
import { lower } from '../src/lower/lower.js';
import { makePlan, type Plan } from '../src/lower/plan.js';
import { parseMesh } from '../src/mesh/mesh.js';
import { buildGraph } from '../src/model/graph.js';
import { getPreset } from '../src/model/presets.js';
import { anyLayout, smallSpec, validLayout } from './support/arbitraries.js';

const close = (a: number, b: number) => Math.abs(a - b) <= 1e-9 * Math.max(Math.abs(b), 1e-300);

describe('the fast pricer', () => {
  it('gives the numbers price(lower(...)) gives, for random models, meshes, layouts and strategies', () => {
    const meshes = ['2x2', '2x2x2', '4x2', '8'].map(parseMesh);
    // And devices that share 2 cores (the host profile's simulated mesh: price.ts coreShare, threadStages), 1F1B or one microbatch at a time.
    const onTwo = { ...getDevice('tpu-v2'), name: 'tpu-v2 on 2 cores', concurrentDevices: 2 };
    const devices = [...['tpu-v2', 'a100-80g', 'h100-sxm'].map(getDevice), onTwo, { ...onTwo, pipelineSchedule: 'sequential' as const }];
    const arb = fc.tuple(smallSpec(), fc.constantFrom(...meshes), fc.constantFrom(...devices)).chain(([spec, mesh, dev]) => {
      const g = buildGraph(spec);
      return fc.tuple(fc.constant(g), fc.constant(mesh), fc.constant(dev), validLayout(g, mesh),
        fc.constantFrom(0, 1, 2, 3), fc.constantFrom('none', 'selective', 'full'), fc.constantFrom(1, 2, 4));
    });
    fc.assert(fc.property(arb, ([g, mesh, dev, layout, zero, recompute, microbatches]) => {
      const plan = makePlan(layout, { zero, recompute, microbatches });
      const pricer = makePricer(g, mesh, dev);
      // Memory alone (what the search asks first) before the full price, as the search asks them.
      const memoryFirst = pricer.memory(plan);
      const fast = pricer(plan);
      const perReplica = g.spec.batch / (layout.get('batch') ?? []).reduce((p, a) => p * mesh.axes.find((x) => x.name === a)!.size, 1);
      if (perReplica % microbatches !== 0) {
        expect(fast.valid).toBe(false);
        expect(memoryFirst).toBeNaN();
        return;
      }
      const e = price(lower(g, mesh, plan), dev);
      expect(close(memoryFirst, e.memory.total)).toBe(true);
      expect(fast.valid).toBe(true);
      expect(close(fast.step, e.time.step)).toBe(true);
      expect(close(fast.compute, e.time.compute)).toBe(true);
      expect(close(fast.exposed, e.time.exposedCommunication)).toBe(true);
      expect(close(fast.bubble, e.time.bubble)).toBe(true);
      expect(close(fast.memory, e.memory.total)).toBe(true);
      expect(close(fast.bytesPerDevice, e.communication.bytesPerDevice)).toBe(true);
      expect(close(fast.mfu, e.mfu)).toBe(true);
      expect(fast.feasible).toBe(e.feasible);
    }), { numRuns: 150 });
  });

  it('agrees with the lowering on which layouts are invalid', () => {
    const g = buildGraph(getPreset('tiny'));
    const mesh = parseMesh('2x4');
    const pr = makePricer(g, mesh, getDevice('tpu-v2'));
    fc.assert(fc.property(anyLayout(mesh), (layout) => {
      const plan = makePlan(layout);
      let threw = false;
      try {
        lower(g, mesh, plan);
      } catch {
        threw = true;
      }
      expect(pr(plan).valid).toBe(!threw);
    }), { numRuns: 300 });
  });

  it('gives the same answer for the same plan asked again (its caches hold no stale state)', () => {
    const g = buildGraph(getPreset('transformer-5b'));
    const mesh = parseMesh('16x32');
    const pr = makePricer(g, mesh, getDevice('tpu-v2'));
    const plans = [0, 1, 2, 3].flatMap((zero) => (['none', 'full'] as const).map((recompute) => makePlan('batch:rows;d_ff:cols;heads:cols;vocab:cols', { zero, recompute })));
    const first = plans.map((p) => pr(p));
    const again = [...plans].reverse().map((p) => pr(p)).reverse();
    expect(again).toEqual(first);
  });

  it('estimatePlan with a lowering cache shared across plans gives what it gives without one', () => {
    // The search and the exhaustive scan estimate their top and Pareto plans through one cache:
    // plans of one layout share its lowering, whatever their strategies.
    const mesh = parseMesh('2x4');
    const dev = getDevice('a100-80g');
    const arb = smallSpec().chain((spec) => {
      const g = buildGraph(spec);
      const plan = fc.tuple(validLayout(g, mesh), fc.constantFrom(0, 1, 2, 3), fc.constantFrom('none', 'selective', 'full'), fc.constantFrom(1, 2))
        .map(([layout, zero, recompute, microbatches]) => makePlan(layout, { zero, recompute, microbatches }));
      return fc.tuple(fc.constant(g), fc.array(plan, { minLength: 2, maxLength: 8 }));
    });
    fc.assert(fc.property(arb, ([g, plans]) => {
      const cache: LoweringCache = new Map();
      // Each plan twice over (its layout's lowering cached by then), and each against a fresh estimate.
      for (const plan of [...plans, ...plans]) expect(estimatePlan(g, mesh, plan, dev, cache)).toEqual(estimatePlan(g, mesh, plan, dev));
    }), { numRuns: 60, seed: 41 });
    // Sequence parallelism lowers differently: a cached plain lowering must not serve it.
    const g = buildGraph(getPreset('transformer-5b'));
    const m = parseMesh('16x32');
    const cache: LoweringCache = new Map();
    const layout = 'batch:cols;heads:rows;d_ff:rows;vocab:rows';
    for (const sequenceParallel of [false, true, false]) {
      const plan = makePlan(layout, { zero: 2, sequenceParallel });
      expect(estimatePlan(g, m, plan, getDevice('tpu-v2'), cache)).toEqual(estimatePlan(g, m, plan, getDevice('tpu-v2')));
    }
  });
  it('estimatePlan through one cache prices every strategy of a layout, valid or not, in any order, as a fresh estimate does, to the bit', () => {
    // The cache's memo (price.ts PriceMemo) hands a later plan the walks and strategy terms an
    // earlier one made, and replays their collectives' notes: every figure must come out as the
    // plan's own estimate, afresh, says, table order included (JSON text, not numbers within a tolerance).
    const g = buildGraph(getPreset('small'));
    // a spans 16 devices, past an 8-GPU node; b and c lie within one.
    const mesh = parseMesh('a:2;b:2;c:4');
    const dev = getDevice('a100-80g');
    // Batch over two network levels (hybrid ZeRO over b), and a pipeline (sends) with heads and d_ff on one axis (sequence parallelism).
    const cases = [
      { layout: 'batch:a+b;heads:c', hybrid: ['b'], virtual: [1] },
      { layout: 'layers:a;batch:b;heads:c;d_ff:c', hybrid: null, virtual: [1, 2] },
    ];
    const plans: Plan[] = [];
    for (const { layout, hybrid, virtual } of cases) {
      for (const zero of [0, 1, 2, 3] as const) {
        for (const zeroAxes of zero > 0 && hybrid ? [undefined, hybrid] : [undefined]) {
          for (const recompute of ['none', 'selective', 'minimal', 'full'] as const) {
            // 8 and 16 microbatches do not divide every per-replica batch, nor 1 the interleaved pipeline's stages: invalid plans of cached layouts.
            for (const microbatches of [1, 2, 4, 8, 16]) {
              for (const sequenceParallel of [false, true]) {
                for (const virtualStages of virtual) {
                  plans.push(makePlan(layout, { zero, zeroAxes, recompute, microbatches, sequenceParallel, virtualStages }));
                }
              }
            }
          }
        }
      }
    }
    const fresh = plans.map((plan) => JSON.stringify(estimatePlan(g, mesh, plan, dev)));
    // Valid plans, which the cache serves, and invalid ones of the same layouts, which it must not.
    const valid = fresh.filter((e) => JSON.parse(e).valid).length;
    expect(valid).toBeGreaterThan(0);
    expect(valid).toBeLessThan(fresh.length);
    fc.assert(fc.property(fc.shuffledSubarray(plans.map((_, i) => i), { minLength: 1 }), (order) => {
      const cache: LoweringCache = new Map();
      for (const i of order) expect(JSON.stringify(estimatePlan(g, mesh, plans[i], dev, cache))).toBe(fresh[i]);
    }), { numRuns: 20, seed: 7 });
  });
});
