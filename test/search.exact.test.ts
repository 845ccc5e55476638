import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Estimate } from '../src/cost/estimate.js';
import { estimatePlan } from '../src/cost/estimatePlan.js';
import type { HardwareProfile } from '../src/cost/profile.js';
import { makePlan, type Recompute } from '../src/lower/plan.js';
import { parseMesh, type Mesh } from '../src/mesh/mesh.js';
import { buildGraph, DIM_NAMES, type Graph } from '../src/model/graph.js';
import type { ModelSpec } from '../src/model/spec.js';
import { search, type Objective } from '../src/search/index.js';
import { tinyMoeSpec, tinyProfile, tinySpec } from './search.helpers.js';

/**
 * The search against a brute force written here from DESIGN.md's definitions, sharing nothing with
 * src/search but the public search() and estimatePlan: every layout (each mesh axis takes a set of
 * dimensions), kept when valid by the definition (no tensor with two dimensions on one axis, every
 * split size divisible), times ZeRO 0-3 (0 only when batch is not split), every recompute and
 * every power-of-two microbatch count estimatePlan accepts, and at ZeRO 1-3 the hybrid variant where
 * the batch axes run on two network levels; each plan priced by estimatePlan, then
 * its own sort and its own Pareto filter. Meshes have axes of different sizes, so no two plans
 * are mirror images and the brute force needs no symmetry reduction.
 */
interface Priced {
  readonly layout: string;
  readonly sequenceParallel: boolean;
  readonly hybrid: boolean;
  readonly step: number;
  readonly memory: number;
  readonly feasible: boolean;
}

/** Every layout valid by the definition, as Mesh-TF rule text. */
function validLayouts(graph: Graph, mesh: Mesh): string[] {
  // `layers` is in every tensor: a pipeline axis splits nothing else (DESIGN.md, pipeline).
  const tensors = [...graph.tensors.values()].map((t) => new Set([...t.dims, 'layers']));
  // MoE: the expert side's group is batch less the axes of experts (DESIGN.md's MoE rules), so its
  // other dimensions must keep off batch's axes: the tensor counts as one with batch, without experts.
  for (const t of graph.tensors.values()) {
    if (t.dims.includes('group')) tensors.push(new Set([...t.dims.filter((d) => d !== 'experts' && d !== 'group'), 'batch', 'layers']));
  }
  // Only the dimensions the model has: a layout naming one it lacks (q_group without grouped-query
  // attention) splits nothing, and the search does not offer it; nor the MoE ones no layout names.
  const never = new Set(['expert_capacity', 'expert_unsplit', 'group']);
  const dims = DIM_NAMES.filter((d) => !never.has(d) && tensors.some((t) => t.has(d)));
  const out: string[] = [];
  const axesOf = new Map<string, string[]>(dims.map((d) => [d, []]));
  const rec = (a: number) => {
    if (a === mesh.axes.length) {
      for (const [d, axes] of axesOf) {
        const f = axes.reduce((p, x) => p * mesh.axes.find((m) => m.name === x)!.size, 1);
        if (graph.dimSizes[d as keyof Graph['dimSizes']] % f !== 0) return;
      }
      out.push(dims.filter((d) => axesOf.get(d)!.length).map((d) => `${d}:${axesOf.get(d)!.join('+')}`).join(';'));
      return;
    }
    // Axis a takes any set of dimensions no tensor holds two of.
    for (let s = 0; s < 1 << dims.length; s++) {
      const taken = dims.filter((_, k) => s & (1 << k));
      if (tensors.some((t) => taken.filter((d) => t.has(d)).length > 1)) continue;
      for (const d of taken) axesOf.get(d)!.push(mesh.axes[a].name);
      rec(a + 1);
      for (const d of taken) axesOf.get(d)!.pop();
    }
  };
  rec(0);
  return out;
}

/**
 * DESIGN.md's network level of an axis: the first level holding its span (its size times the
 * inner axes'), an axis named dcn the outermost, an axisLinks override a level of its own outside them.
 */
function levelOf(mesh: Mesh, profile: HardwareProfile, a: number): number {
  if (profile.axisLinks?.[mesh.axes[a].name]) return profile.levels.length + a;
  if (mesh.axes[a].name === 'dcn') return profile.levels.length - 1;
  const span = mesh.axes.slice(a).reduce((p, x) => p * x.size, 1);
  const i = profile.levels.findIndex((l) => span <= l.devices);
  return i < 0 ? profile.levels.length - 1 : i;
}

/** DESIGN.md's hybrid variant: ZeRO over the batch axes below the outermost level they use, when they use several. */
function hybridAxes(layout: string, mesh: Mesh, profile: HardwareProfile): string[] | null {
  const batch = /(?:^|;)batch:([^;]*)/.exec(layout)?.[1]?.split('+') ?? [];
  const levels = batch.map((n) => levelOf(mesh, profile, mesh.axes.findIndex((x) => x.name === n)));
  if (levels.length < 2 || Math.max(...levels) === Math.min(...levels)) return null;
  return batch.filter((_, i) => levels[i] < Math.max(...levels));
}

function bruteForce(spec: ModelSpec, mesh: Mesh, profile: HardwareProfile): Priced[] {
  const graph = buildGraph(spec);
  const all: Priced[] = [];
  for (const layout of validLayouts(graph, mesh)) {
    const batchSplit = /(^|;)batch:/.test(layout);
    const hybrid = hybridAxes(layout, mesh, profile);
    for (const [zero, zeroAxes] of (batchSplit ? [0, 1, 2, 3] : [0]).flatMap((z) => (z > 0 && hybrid ? [[z, undefined], [z, hybrid.join('+')]] : [[z, undefined]])) as [0 | 1 | 2 | 3, string | undefined][]) {
      for (const recompute of ['none', 'selective', 'minimal', 'full'] as Recompute[]) {
        for (let microbatches = 1; microbatches <= spec.batch; microbatches *= 2) {
          // Each plan with and without sequence parallelism; estimatePlan says which are valid.
          for (const sequenceParallel of [false, true]) {
            let e;
            try {
              e = estimatePlan(graph, mesh, makePlan(layout, { zero, zeroAxes, recompute, microbatches, sequenceParallel }), profile);
            } catch (err) {
              // A layout that cannot take sequence parallelism is refused by name.
              if (sequenceParallel && /sequence parallelism/.test((err as Error).message)) continue;
              throw err;
            }
            if (e.valid) all.push({ layout, sequenceParallel, hybrid: zeroAxes !== undefined, step: e.time.step, memory: e.memory.total, feasible: e.feasible });
          }
        }
      }
    }
  }
  return all;
}

const prim = (o: Objective, p: { step: number; memory: number }) => (o === 'time' ? p.step : p.memory);
const other = (o: Objective, p: { step: number; memory: number }) => (o === 'time' ? p.memory : p.step);

/** The k best values (objective, then the other figure): unique even when plans tie. */
function bestK(all: readonly Priced[], o: Objective, k: number): [number, number][] {
  return all.filter((p) => p.feasible)
    .sort((a, b) => prim(o, a) - prim(o, b) || other(o, a) - other(o, b))
    .slice(0, k).map((p) => [p.step, p.memory]);
}

/** Points of the feasible plans within (1 + slack) of the best that no plan in scope dominates. */
function paretoPoints(all: readonly Priced[], o: Objective, slack: number): string[] {
  const feasible = all.filter((p) => p.feasible);
  if (!feasible.length) return [];
  const best = Math.min(...feasible.map((p) => prim(o, p)));
  const scope = feasible.filter((p) => prim(o, p) <= best * (1 + slack));
  const dominated = (p: Priced) => scope.some((q) => q.step <= p.step && q.memory <= p.memory && (q.step < p.step || q.memory < p.memory));
  return [...new Set(scope.filter((p) => !dominated(p)).map((p) => `${p.step}/${p.memory}`))].sort();
}

const points = (es: readonly Estimate[]) => [...new Set(es.map((e) => `${e.time.step}/${e.memory.total}`))].sort();

// Two axes of different sizes (no mirror images), or one.
const meshes = ['a0:2;a1:4', 'a0:4;a1:2', 'a0:2;a1:3', 'a0:3;a1:2', 'a0:4', 'a0:1;a1:2'].map(parseMesh);

describe('the search against an independent brute force', () => {
  const exact = (specs: fc.Arbitrary<ModelSpec>, numRuns: number, seed: number, minSpCases: number | null) => async () => {
    let cases = 0, spCases = 0, hybridCases = 0;
    await fc.assert(fc.asyncProperty(
      fc.record({
        spec: specs, mesh: fc.constantFrom(...meshes), profile: tinyProfile(),
        objective: fc.constantFrom('time' as const, 'memory' as const), top: fc.integer({ min: 1, max: 6 }),
        paretoSlack: fc.constantFrom(0, 0.25, 1),
      }),
      async (s) => {
        let r;
        try {
          r = await search({ ...s, workers: 0 });
        } catch (e) {
          // A mesh larger than the model can use is refused (search.test.ts checks the message).
          expect((e as Error).message).toMatch(/more than .* can use/);
          fc.pre(false);
          return;
        }
        // Only cases where the bounds prune: there a bound that prunes too much would show.
        fc.pre(r.searched.pruned > 0);
        cases++;
        const all = bruteForce(s.spec, s.mesh, s.profile);
        // The space's count is of plans without sequence parallelism (their SP variants are priced beside them).
        expect(r.searched.valid).toBe(all.filter((p) => !p.sequenceParallel && !p.hybrid).length);
        if (all.some((p) => p.sequenceParallel)) spCases++;
        if (all.some((p) => p.hybrid)) hybridCases++;
        expect(r.top.map((e) => [e.time.step, e.memory.total])).toEqual(bestK(all, s.objective, s.top));
        expect(points(r.pareto)).toEqual(paretoPoints(all, s.objective, s.paretoSlack));
        if (all.some((p) => p.feasible)) {
          expect(r.best!.time.step).toBe(bestK(all, s.objective, 1)[0][0]);
        } else {
          expect(r.best).toBeNull();
          expect(r.closest!.memory.total).toBe(Math.min(...all.map((p) => p.memory)));
        }
      },
    ), { numRuns, seed });
    expect(cases).toBe(numRuns);
    // Cases where sequence parallelism is in the space, so its variants are checked too.
    if (minSpCases !== null) expect(spCases).toBeGreaterThan(minSpCases);
    // And cases where hybrid sharding is (batch axes on two network levels).
    if (minSpCases !== null) expect(hybridCases).toBeGreaterThan(0);
  };

  it('finds the same top plans, the same Pareto front and the same closest plan, on cases where the bounds prune', exact(tinySpec(), 30, 12, 5), 600_000);

  it('does so on mixture-of-experts models, where experts and expert_hidden are placed with the rest', exact(tinyMoeSpec(), 8, 15, null), 600_000);
});
