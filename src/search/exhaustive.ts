import type { Estimate } from '../cost/estimate.js';
import { estimatePlan, type LoweringCache } from '../cost/estimatePlan.js';
import { makePricer } from '../cost/pricer.js';
import type { HardwareProfile } from '../cost/profile.js';
import { compileLayout, splittableDims, layoutProblem, type Layout } from '../layout/layout.js';
import { parseMesh, type Mesh } from '../mesh/mesh.js';
import { buildGraph, DIM_NAMES, type DimName } from '../model/graph.js';
import type { ModelSpec } from '../model/spec.js';
import { sequenceParallelProblem } from '../lower/lower.js';
import { RECOMPUTE, type Plan, type ZeroStage } from '../lower/plan.js';
import type { Candidate, Objective } from './protocol.js';
import { compare, mergeTop, paretoFront, primary } from './rank.js';
import { conflicts, hybridZeroAxes, isCanonical, makeSpace, strategyIndex } from './space.js';
import type { SearchResult } from './search.js';

/**
 * The plain exhaustive scan the search is checked and measured against: every dimension on
 * every set of axes (mesh order), validity by the layout module's own check, every strategy
 * priced (and, where the layout takes it, each with sequence parallelism too: strategy index
 * n + i of n, not counted in `valid`, as the search counts them), no bounds. With `symmetry` it keeps one layout per orbit of interchangeable axes, as
 * the search reports them; without, it prices the mirror images too (the bench's baseline).
 */
export function exhaustive(opts: {
  spec: ModelSpec; mesh: Mesh | string; profile: HardwareProfile; top?: number; objective?: Objective; paretoSlack?: number; symmetry?: boolean;
}): SearchResult & { candidates: number; maxUsed: number } {
  const t0 = performance.now();
  const mesh = typeof opts.mesh === 'string' ? parseMesh(opts.mesh) : opts.mesh;
  const objective = opts.objective ?? 'time';
  const k = opts.top ?? 5;
  const slack = opts.paretoSlack ?? 0.25;
  const graph = buildGraph(opts.spec);
  const space = makeSpace(graph, mesh, opts.profile);
  const pricer = makePricer(graph, mesh, opts.profile);
  const conf = conflicts(graph);
  const A = mesh.axes.length;
  const D = DIM_NAMES.length;
  const masks = new Array<number>(D).fill(0);
  let top: Candidate[] = [];
  const all: Candidate[] = [];
  let leastMemory: Candidate | null = null;
  let plans = 0, valid = 0, feasible = 0, priced = 0, pricedPlain = 0, pricedHybrid = 0, maxUsed = 0;
  const withSp = new WeakSet<Candidate>();
  const hybridOf = new WeakMap<Candidate, readonly string[]>();
  const choiceIndex = new Map(space.choices.map((c, i) => [c, i]));

  const visit = () => {
    const layout = new Map<DimName, string[]>();
    for (let d = 0; d < D; d++) if (masks[d]) layout.set(DIM_NAMES[d], mesh.axes.filter((_, a) => masks[d] & (1 << a)).map((x) => x.name));
    plans += (masks[0] ? 4 : 1) * RECOMPUTE.length;
    if (layoutProblem(graph, mesh, compileLayout(layout as Layout, mesh)) !== null) return;
    plans -= (masks[0] ? 4 : 1) * RECOMPUTE.length;
    // The layout's rank: per axis, the set of dimensions on it.
    const choice: number[] = [];
    for (let a = 0; a < A; a++) {
      let s = 0;
      for (let d = 0; d < D; d++) if (masks[d] & (1 << a)) s |= 1 << d;
      choice.push(choiceIndex.get(s)!);
    }
    let used = 1;
    for (let a = 0; a < A; a++) if (choice[a] !== 0) used *= mesh.axes[a].size;
    maxUsed = Math.max(maxUsed, used);
    const rank = choice.reduce((r, c) => r * space.choices.length + c, 0);
    const canonical = isCanonical(space, choice);
    let split = 1;
    for (let a = 0; a < A; a++) if (masks[0] & (1 << a)) split *= mesh.axes[a].size;
    const perReplica = graph.spec.batch / split;
    const zeros: ZeroStage[] = masks[0] ? [0, 1, 2, 3] : [0];
    // Hybrid sharding where the batch axes run on several network levels (test/search.exact.test.ts checks it from DESIGN.md).
    const hybrid = hybridZeroAxes(space, masks);
    // The strategies without sequence parallelism first: their count n numbers the SP variants (space.ts strategyIndex).
    const sps = sequenceParallelProblem(graph, mesh, layout as Layout) === null ? [false, true] : [false];
    let n = 0;
    for (const sequenceParallel of sps) {
      let strategy = 0;
      for (const zero of zeros) for (const zeroAxes of zero > 0 && hybrid ? [undefined, hybrid] : [undefined]) {
        for (const recompute of RECOMPUTE) {
          for (let microbatches = 1; perReplica % microbatches === 0; microbatches *= 2) {
            const plain = !sequenceParallel && !zeroAxes;
            if (plain) valid++;
            const index = strategyIndex(strategy++, n, sequenceParallel);
            if (opts.symmetry && !canonical) continue;
            const plan: Plan = { layout, zero, ...(zeroAxes ? { zeroAxes } : {}), recompute, microbatches, sequenceParallel, virtualStages: 1 };
            const cost = pricer(plan);
            priced++;
            if (plain) pricedPlain++;
            else if (!sequenceParallel) pricedHybrid++;
            const c: Candidate = { rank, strategy: index, zero, recompute, microbatches, step: cost.step, memory: cost.memory, feasible: cost.feasible };
            if (sequenceParallel) withSp.add(c);
            if (zeroAxes) hybridOf.set(c, zeroAxes);
            if (!leastMemory || compare('memory', c, leastMemory) < 0) leastMemory = c;
            if (!cost.feasible) continue;
            if (plain) feasible++;
            all.push(c);
            top = mergeTop(objective, [top, [c]], k);
          }
        }
      }
      if (!sequenceParallel) n = strategy;
    }
  };
  // Backtrack over dimensions, dropping a set of axes that collides with a dimension it shares a tensor with.
  // A dimension the model lacks stays unsplit, as the search's space leaves it.
  const present = splittableDims(graph);
  const rec = (d: number) => {
    if (d === D) return visit();
    for (let m = 0; m < (present.has(DIM_NAMES[d]) ? 1 << A : 1); m++) {
      let ok = true;
      for (let e = 0; e < d && ok; e++) if (conf[d] & (1 << e) && masks[e] & m) ok = false;
      if (!ok) continue;
      masks[d] = m;
      rec(d + 1);
    }
    masks[d] = 0;
  };
  rec(0);
  const cap = top.length ? primary(objective, top[0]) * (1 + slack) : Infinity;
  const lowerings: LoweringCache = new Map();
  const estimateOf = (c: Candidate): Estimate => {
    const layout = new Map<DimName, string[]>();
    let r = c.rank;
    for (let a = A - 1; a >= 0; a--) {
      const s = space.choices[r % space.choices.length];
      r = Math.floor(r / space.choices.length);
      for (let d = 0; d < D; d++) if (s & (1 << d)) layout.set(DIM_NAMES[d], [mesh.axes[a].name, ...(layout.get(DIM_NAMES[d]) ?? [])]);
    }
    const zeroAxes = hybridOf.get(c);
    return estimatePlan(graph, mesh, { layout, zero: c.zero, ...(zeroAxes ? { zeroAxes } : {}), recompute: c.recompute, microbatches: c.microbatches, sequenceParallel: withSp.has(c), virtualStages: 1 }, opts.profile, lowerings);
  };
  const result: SearchResult & { candidates: number; maxUsed: number } = {
    best: top.length ? estimateOf(top[0]) : null,
    top: top.map(estimateOf),
    pareto: paretoFront(objective, all, cap).map(estimateOf),
    searched: { plans: plans + valid, valid, feasible, pruned: valid - pricedPlain, seconds: (performance.now() - t0) / 1000, workers: 0, sequenceParallel: priced - pricedPlain - pricedHybrid, hybrid: pricedHybrid },
    candidates: priced,
    maxUsed,
  };
  if (!top.length && leastMemory) result.closest = estimateOf(leastMemory);
  return result;
}
