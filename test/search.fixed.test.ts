import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { estimatePlan } from '../src/cost/estimatePlan.js';
import { getDevice } from '../src/cost/presets.js';
import { planFromJson } from '../src/lower/plan.js';
import { parseMesh } from '../src/mesh/mesh.js';
import { activeParamCount, buildGraph } from '../src/model/graph.js';
import { getPreset } from '../src/model/presets.js';
import type { Estimate } from '../src/cost/estimate.js';
import { exhaustive, search } from '../src/search/index.js';
import { floorsPay } from '../src/search/task.js';
import { conflicts, makeSpace } from '../src/search/space.js';
import { popcount, splittableDims } from '../src/layout/layout.js';
import { matmulBound } from '../src/search/bounds.js';
import { shapeFactor } from '../src/cost/price.js';
import { einsumPasses } from '../src/lower/lower.js';
import { DIM_NAMES } from '../src/model/graph.js';
import { answer, tinyMesh, tinyMoeSpec, tinyProfile, tinySpec } from './search.helpers.js';

/** Each estimate a search returns, against the plan's estimate worked out afresh (its own lowering, no cache). */
function expectFresh(spec: Parameters<typeof buildGraph>[0], mesh: string, profile: Parameters<typeof estimatePlan>[3], es: readonly Estimate[]): void {
  const graph = buildGraph(spec);
  for (const e of es) {
    expect(JSON.stringify(estimatePlan(graph, parseMesh(mesh), planFromJson(e.plan), profile))).toBe(JSON.stringify(e));
    // paramCount is kept per graph: against the count worked out afresh (a dense model's active parameters are all of them).
    expect(e.model.params).toBe(activeParamCount(graph));
  }
}

/**
 * The search's fixed costs (what it spends besides pricing plans) are cut where that cannot change
 * its answer; these hold the shortcuts to it.
 */
describe('the search without work its answer does not need', () => {
  it('asks state floors only on meshes where two sets of axes have one product (a floor then serves several layouts)', () => {
    expect(floorsPay([16, 32])).toBe(false);
    expect(floorsPay([2, 4])).toBe(false);
    expect(floorsPay([2, 3])).toBe(false);
    expect(floorsPay([8])).toBe(false);
    expect(floorsPay([4, 4])).toBe(true);
    expect(floorsPay([2, 4, 8])).toBe(true);
    expect(floorsPay([1, 2])).toBe(true);
    expect(floorsPay([4, 4, 4, 8])).toBe(true);
    expect(floorsPay([2, 2, 2, 2, 2, 2, 2])).toBe(true);
  });

  it('offers as axis choices exactly the sets of present dimensions no two of which share a tensor, in the order it did', () => {
    fc.assert(fc.property(fc.oneof(tinySpec(), tinyMoeSpec()), tinyMesh(), tinyProfile(), (spec, mesh, profile) => {
      const graph = buildGraph(spec);
      const conf = conflicts(graph), present = splittableDims(graph);
      // Every subset of DIM_NAMES, filtered, as space.ts once enumerated them.
      const want: number[] = [];
      for (let s = 0; s < 1 << DIM_NAMES.length; s++) {
        let ok = DIM_NAMES.every((d, k) => !(s & (1 << k)) || present.has(d));
        for (let k = 0; k < DIM_NAMES.length && ok; k++) if (s & (1 << k) && s & conf[k]) ok = false;
        if (ok) want.push(s);
      }
      want.sort((a, b) => popcount(a) - popcount(b) || a - b);
      expect(makeSpace(graph, mesh, profile).choices).toEqual(want);
    }), { numRuns: 40, seed: 9 });
  });

  it('works out the matmul bound with each distinct pass once, to the bit what pass by pass gives', () => {
    const B = DIM_NAMES.indexOf('batch'), G = DIM_NAMES.indexOf('group'), L = DIM_NAMES.indexOf('layers');
    for (const name of ['transformer-5b', 'gpt3-175b', 'llama2-7b', 't5-11b', 'mixtral-8x7b', 'switch-base-128', 'deepseek-moe-16b', 'tiny-moe']) {
      const graph = buildGraph(getPreset(name));
      for (const device of ['tpu-v2', 'a100-80g']) {
        const profile = getDevice(device);
        const bound = matmulBound(graph, profile);
        const rate = profile.peakFlops[graph.spec.dtype] * profile.efficiency.matmul, h = profile.gemmHalfSize ?? 0;
        const passes = einsumPasses(graph);
        fc.assert(fc.property(fc.array(fc.constantFrom(1, 2, 3, 4, 8, 16), { minLength: DIM_NAMES.length, maxLength: DIM_NAMES.length }), (split) => {
          // Pass by pass, as bounds.ts did before it merged alike passes.
          const local = DIM_NAMES.map((d, i) => graph.dimSizes[d] / split[i]);
          local[G] = local[B];
          const product = (ds: readonly string[]) => ds.reduce((x, d) => x * local[DIM_NAMES.indexOf(d as (typeof DIM_NAMES)[number])], 1);
          const part = (p: (typeof passes)[number], q: string) => p.parts.filter(([, x]) => x === q).map(([d]) => d);
          let t = 0;
          for (const p of passes) {
            let f = 2 * p.block.repeat * p.share * product(p.dims);
            if (p.block.layered) f /= split[L];
            if (h > 0) f /= shapeFactor(h, product(part(p, 'm')), product(part(p, 'n')), product(part(p, 'k')));
            t += f;
          }
          expect(bound(split)).toBe(t / rate);
        }), { numRuns: 50, seed: 5 });
      }
    }
  });

  it('finds the headline case\'s answer as the plain scan does: best, top, Pareto front, every figure', async () => {
    const s = { spec: getPreset('transformer-5b'), mesh: '16x32', profile: getDevice('tpu-v2') };
    const got = await search({ ...s, workers: 0 });
    const ref = exhaustive({ ...s, symmetry: false });
    expect(answer(got)).toEqual(answer(ref));
    expect(got.best!.time.step).toBe(ref.best!.time.step);
    expect(JSON.stringify([got.best, got.top, got.pareto])).toBe(JSON.stringify([ref.best, ref.top, ref.pareto]));
    expectFresh(s.spec, s.mesh, s.profile, [...got.top, ...got.pareto]);
  }, 60_000);

  it('prices its answers from the lowerings its pricer made (inline) exactly as from fresh ones', async () => {
    await fc.assert(fc.asyncProperty(tinySpec(), tinyMesh(), tinyProfile(), fc.constantFrom(0, 0.25, 1), async (spec, mesh, profile, paretoSlack) => {
      let r;
      try {
        r = await search({ spec, mesh, profile, workers: 0, top: 6, paretoSlack });
      } catch {
        fc.pre(false);
        return;
      }
      const text = mesh.axes.map((a) => `${a.name}:${a.size}`).join(';');
      expectFresh(spec, text, profile, [...r.top, ...r.pareto, ...(r.closest ? [r.closest] : [])]);
    }), { numRuns: 40, seed: 21 });
  }, 120_000);
});
