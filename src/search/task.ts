import { pipelineFactor } from '../cost/price.js';
import { makePricer, type Pricer } from '../cost/pricer.js';
import type { HardwareProfile } from '../cost/profile.js';
import { compileLayout, type Layout } from '../layout/layout.js';
import { RECOMPUTE, RECOMPUTE_LEVEL, type Plan } from '../lower/plan.js';
import { parseMesh } from '../mesh/mesh.js';
import { buildGraph, DIM_NAMES, type Graph } from '../model/graph.js';
import { sequenceParallelAxes, type LayoutLowering } from '../lower/lower.js';
import { layoutFloor, matmulBound, offResidualBound } from './bounds.js';
import { allowsSequenceParallel, planFilter, pricingProfile } from './filter.js';
import type { Candidate, Context, ExploreResult, Task, TaskResult } from './protocol.js';
import { compare, dominated, paretoFront, primary, pushTop } from './rank.js';
import { makeRemaining, SLACK_ROUNDING, type Remaining } from './remaining.js';
import { Shared } from './shared.js';
import { encode, layoutOf, makeSpace, microbatchCounts, planOf, strategies, strategyIndex, type PlanSpace } from './space.js';

/**
 * One share of the search, as a pure function of its message: the same code runs in a piscina
 * worker and inline (`--workers 0`), so a test can run it either way and get the same answer.
 */
export interface Prepared {
  /** The plan filter's predicates (src/search/filter.ts), or null for the whole space. */
  readonly admit: ReturnType<typeof planFilter> | null;
  readonly space: PlanSpace;
  readonly pricer: Pricer;
  /** The pricer of the plans the filter's engine prices without overlap (pricingProfile), else null. */
  readonly exposedPricer: Pricer | null;
  readonly matmul: (split: readonly number[]) => number;
  /** What the remaining axes can add, memoised (src/search/remaining.ts). */
  readonly remaining: Remaining;
  /** Per axis choice: the dimensions it splits. */
  readonly choiceDims: readonly (readonly number[])[];
  /** Whether a layout, given by each dimension's axes mask and split, can take sequence parallelism (the lowering's own rule). */
  readonly spLegal: (masks: readonly number[], split: readonly number[]) => boolean;
  /** Whether the search asks the state floors (remaining.ts floor, floorStep) at all: see floorsPay. */
  readonly floors: boolean;
  /**
   * The lowerings of the layouts of this thread's latest candidates that may rank, by layout rank
   * (× 2, + 1 with sequence parallelism), at most KEPT_LOWERINGS, oldest out: an inline search's
   * final estimates price their plans from them instead of lowering those layouts again. Only on
   * the search's own thread (which prepares with the graph it built); a worker keeps none.
   */
  readonly kept: Map<number, LayoutLowering> | null;
}

const KEPT_LOWERINGS = 16;

/** Keep a lowering in `kept` (see Prepared.kept), as the most recent. */
function keepLowering(kept: Map<number, LayoutLowering>, key: number, l: LayoutLowering | null): void {
  if (!l) return;
  kept.delete(key);
  kept.set(key, l);
  if (kept.size > KEPT_LOWERINGS) kept.delete(kept.keys().next().value!);
}

/**
 * Whether state floors (bounds.ts stateFloor) can pay for themselves on this mesh. A floor costs
 * two stand-in lowerings (with and without sequence parallelism, records only) and is worked out
 * once per state, for every layout with that state's splits; what it spares is the lowering of a
 * layout variant it cuts (the pricer-based stepBound cuts after that lowering). Where no two sets
 * of axes have equal products, a state's splits name each dimension's axes: one layout per state,
 * so a floor serves one leaf, and two record lowerings stand against at most one full lowering per
 * variant. transformer-5b on 16x32 (tpu-v2): 6 floors, 12 record lowerings, cut 4 of 12 variants
 * that stepBound then cut as well; floors 1.2 ms and pricer lowerings 1.0 ms of a 7.2 ms search (2026-12-07).
 * Meshes with repeated axis products (equal sizes, size-1 axes, 2x4 against 8) share a floor
 * among the layouts of a state, and keep it.
 */
export function floorsPay(sizes: readonly number[]): boolean {
  const A = sizes.length;
  if (A > 20) return true;
  const seen = new Set<number>();
  for (let m = 0; m < 1 << A; m++) {
    let f = 1;
    for (let a = 0; a < A; a++) if (m & (1 << a)) f *= sizes[a];
    if (seen.has(f)) return true;
    seen.add(f);
  }
  return false;
}

let cached: { key: string; prepared: Prepared } | null = null;

/**
 * The graph, space, pricer and bound tables of a context: built once per search and thread. The
 * search's own thread hands over the graph it built of ctx.spec (buildGraph of the same spec).
 */
export function prepare(ctx: Context, built?: Graph): Prepared {
  if (cached?.key === ctx.key) return cached.prepared;
  const graph = built ?? buildGraph(ctx.spec);
  const mesh = parseMesh(ctx.mesh);
  // A filter may tell mirror images apart (an engine's device order): no symmetry reduction then.
  const space = makeSpace(graph, mesh, ctx.profile, { symmetric: !ctx.filter });
  // One matmul bound for the prepared search and its table (einsumPasses once).
  const matmul = matmulBound(graph, ctx.profile);
  const prepared: Prepared = {
    admit: ctx.filter ? planFilter(ctx.filter, mesh, ctx.spec, ctx.profile) : null,
    space, pricer: makePricer(graph, mesh, ctx.profile), matmul,
    // Overlap 0 only slows plans down, so the bounds of the overlapping pricer stay admissible.
    exposedPricer: ctx.filter ? makePricer(graph, mesh, { ...ctx.profile, overlap: 0 }) : null,
    remaining: makeRemaining(space, graph, ctx.profile, ctx.table, matmul),
    choiceDims: space.choices.map((c) => DIM_NAMES.map((_, d) => d).filter((d) => c & (1 << d))),
    // An engine without sequence parallelism never sees those variants (not even their bounds).
    spLegal: allowsSequenceParallel(ctx.filter)
      ? (masks, split) => !('problem' in sequenceParallelAxes(graph, {
        mask: { heads: masks[HEADS], d_ff: masks[D_FF] },
        split: { heads: split[HEADS], d_ff: split[D_FF], length: split[LENGTH] },
      }))
      : () => false,
    floors: floorsPay(space.sizes),
    kept: built ? new Map() : null,
  };
  cached = { key: ctx.key, prepared };
  return prepared;
}

const BATCH = DIM_NAMES.indexOf('batch');
const LAYERS = DIM_NAMES.indexOf('layers');
const HEADS = DIM_NAMES.indexOf('heads');
const D_FF = DIM_NAMES.indexOf('d_ff');
const LENGTH = DIM_NAMES.indexOf('length');

export function runTask(task: Task): TaskResult {
  try {
    if (task.throws) throw new Error('injected exception in the share');
    const p = prepare(task.ctx);
    return explore(p, task);
  } catch (e) {
    return { kind: 'error', error: (e as Error)?.stack ?? String(e) };
  }
}

/**
 * Lower bounds of a layout, sound by the lowering's structure (test/search.bounds.test.ts checks
 * them on random plans). Compute time is least at ZeRO ≥ 1 (Adam on a shard), no recompute and
 * one microbatch (more microbatches re-read the weights and launch more kernels). The bubble
 * (price.ts bubbleShare: a share, times a microbatch of the slowest stage, that shrinks with
 * microbatches, 1F1B; or M times a share, sequential, where M microbatch times only grow with M)
 * is least at one end of the microbatch counts, with no recompute, whatever the ZeRO stage:
 * step ≥ that compute + that bubble.
 */
export function stepBound(space: PlanSpace, pricer: Pricer, layout: Layout, masks: readonly number[], split: readonly number[], sequenceParallel = false): number {
  const c = pricer({ layout, zero: masks[BATCH] ? 1 : 0, recompute: 'none', microbatches: 1, sequenceParallel, virtualStages: 1 });
  return (c.compute + bubbleBound(space, pricer, layout, masks, split, sequenceParallel)) * SLACK_ROUNDING;
}

/** The least pipeline bubble of any plan of the layout (see stepBound): the lesser of its ends; 0 without stages. */
export function bubbleBound(space: PlanSpace, pricer: Pricer, layout: Layout, masks: readonly number[], split: readonly number[], sequenceParallel = false): number {
  if (split[LAYERS] === 1) return 0;
  const ms = microbatchCounts(space, split);
  const at = (microbatches: number) => pricer({ layout, zero: masks[BATCH] ? 1 : 0, recompute: 'none', microbatches, sequenceParallel, virtualStages: 1 }).bubble;
  return ms.length === 1 ? at(1) : Math.min(at(1), at(ms[ms.length - 1]));
}

/** The matmul-FLOPs bound of a layout's splits, with the least pipeline factor of any layout of them (price.ts pipelineFactor). */
export function flopsBound(space: PlanSpace, profile: HardwareProfile, matmul: Prepared['matmul'], split: readonly number[]): number {
  const ms = microbatchCounts(space, split);
  return matmul(split) * pipelineFactor(profile, space.mesh, split[LAYERS], ms[ms.length - 1]) * SLACK_ROUNDING;
}

/**
 * Memory is least at the most microbatches, for some ZeRO stage ≥ 2 (stage 3 adds a gathered
 * layer, so either may be least) and some recompute (full recompute adds a layer's buffer).
 */
export function memoryBound(space: PlanSpace, pricer: Pricer, layout: Layout, masks: readonly number[], split: readonly number[], sequenceParallel = false): number {
  const ms = microbatchCounts(space, split);
  let memory = Infinity;
  for (const zero of masks[BATCH] ? ([2, 3] as const) : ([0] as const)) {
    for (const recompute of RECOMPUTE) {
      // Memory alone (an invalid plan's NaN never lowers it, as the pricer's Infinity did not).
      const m = pricer.memory({ layout, zero, recompute, microbatches: ms[ms.length - 1], sequenceParallel, virtualStages: 1 });
      if (m < memory) memory = m;
    }
  }
  return memory * SLACK_ROUNDING;
}

/** Whether every plan with step ≥ s and memory ≥ m can be skipped: out of the top K and out of the Pareto front (m: a number, or worked out only if needed). */
function prunable(objective: Context['objective'], kth: number, cap: number, front: readonly (readonly [number, number])[], s: number, m: number | (() => number)): boolean {
  if (objective === 'time') {
    if (s <= kth) return false;
    return s > cap || dominated(front, s, typeof m === 'number' ? m : m());
  }
  const mem = typeof m === 'number' ? m : m();
  if (mem <= kth) return false;
  return mem > cap || dominated(front, s, mem);
}

/** Keep a list of mutually non-dominated points. */
function addPoint(front: (readonly [number, number])[], s: number, m: number): void {
  for (const [ps, pm] of front) if (ps <= s && pm <= m) return;
  for (let i = front.length - 1; i >= 0; i--) if (s <= front[i][0] && m <= front[i][1]) front.splice(i, 1);
  front.push([s, m]);
}

// How often (in layouts) a share looks at the clock and the stop flag, and publishes its count.
const CHECK_EVERY = 64;

/**
 * Branch and bound under each prefix: axes are given choices in order, children in order of
 * their bound (the most promising first, so a good incumbent comes early); a child is cut when
 * what its completions can reach (src/search/remaining.ts) cannot enter the top K or the Pareto
 * scope, or cannot fit in memory. Choices of interchangeable axes never decrease (one layout per
 * orbit). At a complete layout, the pricer-based bounds and the strategies, as before.
 */
function explore(p: Prepared, task: Task): ExploreResult {
  const { space, pricer, remaining: rem, choiceDims } = p;
  const ctx = task.ctx;
  const objective = ctx.objective;
  const shared = new Shared(task.shared);
  const k = task.top;
  const A = space.sizes.length;
  const S = space.choices.length;
  const capacity = ctx.profile.memoryBytes;
  const slack = task.bounds.slack;
  let kth = task.bounds.kth;
  let cap = task.bounds.cap;
  const front: (readonly [number, number])[] = [...task.bounds.front];
  const top: Candidate[] = [];
  const scope: Candidate[] = [];
  let leastMemory: Candidate | null = null;
  let priced = 0, pricedSp = 0, pricedHybrid = 0, feasible = 0, layouts = 0, sinceCheck = 0;
  let stopping = false;
  let open = Infinity;
  const choice = new Array<number>(A).fill(0);
  const masks = new Array<number>(space.dims.length).fill(0);
  // Per ZeRO variant (2 × stage + hybrid) and per (variant, recompute mode): step bounds (variant()).
  const stepZ = new Float64Array(8);
  const stepZR = new Float64Array(8 * RECOMPUTE.length);

  // What other shares found (real plans, so pruning against them is sound whenever it is read).
  const refresh = () => {
    const best = shared.best();
    if (best < Infinity) cap = Math.min(cap, best * (1 + slack));
    kth = Math.min(kth, shared.kth());
    for (const [ps, pm] of shared.points()) if ((objective === 'time' ? ps : pm) <= cap) addPoint(front, ps, pm);
  };
  const tighten = (c: Candidate) => {
    if (!c.feasible) return;
    const pv = primary(objective, c);
    shared.offerValue(pv);
    pushTop(objective, top, c, k);
    if (top.length >= k) kth = Math.min(kth, primary(objective, top[top.length - 1]));
    shared.offer(pv);
    cap = Math.min(cap, Math.min(shared.best(), pv) * (1 + slack));
    if (pv <= cap) {
      scope.push(c);
      addPoint(front, c.step, c.memory);
      shared.offerPoint(c.step, c.memory);
    }
  };
  /** A subtree (or a plan) whose completions all need more memory than the device has: it only matters for "closest". */
  const hopeless = (lbMem: number) =>
    lbMem > capacity && (top.length > 0 || (leastMemory !== null && lbMem > leastMemory.memory) || shared.best() < Infinity);
  const cut = (lbS: number, lbM: number) => prunable(objective, kth, cap, front, lbS, lbM) || hopeless(lbM);
  const prim = (lbS: number, lbM: number) => (objective === 'time' ? lbS : lbM);

  const leaf = (state: number) => {
    layouts++;
    if (++sinceCheck >= CHECK_EVERY) {
      sinceCheck = 0;
      shared.addExamined(CHECK_EVERY);
      refresh();
      if (shared.stopped() || (task.deadline !== undefined && Date.now() > task.deadline)) {
        shared.stop();
        stopping = true;
      }
    }
    const split = rem.splitOf(state);
    // Its layout and rank are built only for a layout the floor does not cut (most are cut).
    let layoutMap: Layout | null = null;
    const lay = () => (layoutMap ??= layoutOf(space, masks));
    let rankMemo = -1;
    const rankOf = () => (rankMemo >= 0 ? rankMemo : (rankMemo = encode(space, choice)));
    // A layout the filter refuses whatever its strategy is examined, never priced.
    if (p.admit && !p.admit.layout({ layout: lay(), zero: 0, recompute: 'none', microbatches: 1, sequenceParallel: false, virtualStages: 1 })) return;
    // Without state floors (floorsPay) and without a pipeline: the layout's matmul bound and the
    // work of its ops off the residual stream, a fraction of a lowering, for both variants before either is lowered.
    if (!p.floors && split[LAYERS] === 1 && cut(offResidualBound(space.graph, space.mesh, ctx.profile, compileLayout(lay(), space.mesh), p.matmul(split)) * SLACK_ROUNDING, rem.lbMemory(state))) return;
    const all = strategies(space, split, masks);
    const floor = p.floors ? rem.floor(state) : null;
    const ms = microbatchCounts(space, split);
    // The layout's least step / (compute + blocking) over its microbatch counts (price.ts pipelineFactor).
    const share = pipelineFactor(ctx.profile, space.mesh, split[LAYERS], ms[ms.length - 1], masks[LAYERS]);
    // Each strategy without sequence parallelism, then (where the layout takes it) with it.
    const variant = (sp: boolean) => {
      // Its splits' floor with its own axes' collectives, before any lowering of the layout (memory: the state's law).
      const vf = floor ? floor.variants[sp ? 1 : 0] : null;
      if (vf && prunable(objective, kth, cap, front, layoutFloor(ctx.profile, space.mesh, vf, split[LAYERS], masks) * share * SLACK_ROUNDING, () => rem.lbMemory(state))) return;
      const layout = lay();
      let memo = NaN;
      const lbMemory = () => (Number.isNaN(memo) ? (memo = memoryBound(space, pricer, layout, masks, split, sp)) : memo);
      const sbLayout = stepBound(space, pricer, layout, masks, split, sp);
      if (prunable(objective, kth, cap, front, sbLayout, lbMemory)) return;
      const bubble = bubbleBound(space, pricer, layout, masks, split, sp);
      // Skips are per ZeRO variant (stage, and hybrid or not): each runs its own recompute x microbatches.
      // Numbered: a ZeRO variant as 2 × stage (+ 1 when hybrid), with its recompute as (modes × that) + the mode's place.
      let skipZero = -1;
      let skipZR = -1;
      // Step bounds of the ZeRO variants and of their recompute modes priced so far (0: none yet).
      stepZ.fill(0);
      stepZR.fill(0);
      for (let i = 0; i < all.length; i++) {
        const s = all[i];
        const zk = 2 * s.zero + (s.zeroAxes ? 1 : 0);
        const zr = RECOMPUTE.length * zk + RECOMPUTE_LEVEL[s.recompute];
        if (zk === skipZero || zr === skipZR) continue;
        const plan: Plan = planOf(layout, s, sp);
        // Outside the filter: never priced, so never an incumbent and never a bound.
        if (p.admit && !p.admit.plan(plan)) continue;
        const pr = p.exposedPricer && pricingProfile(ctx.filter, plan, ctx.profile) !== ctx.profile ? p.exposedPricer : pricer;
        // The plan's own memory (the very figure its price would say, without its walks) against a
        // bound on its step: the layout's, or its ZeRO variant's, or its recompute mode's at one
        // microbatch (compute only grows with microbatches and recompute, see below). A plan that
        // cannot rank nor reach the front that way is never priced.
        const mem = pr.memory(plan);
        // Over memory, once a plan fits (anywhere) or this one is no nearer to fitting than the
        // nearest seen: no answer can hold it (answers are plans that fit, or else the nearest), so
        // its time is never worked out. At one microbatch it still is: its compute bounds the rest of its ZeRO stage (below).
        if (s.microbatches > 1 && hopeless(mem)) continue;
        if (prunable(objective, kth, cap, front, Math.max(sbLayout, stepZ[zk], stepZR[zr]), mem)) continue;
        const cost = pr(plan);
        if (sp) pricedSp++;
        else if (s.zeroAxes) pricedHybrid++;
        else priced++;
        if (!cost.valid) throw new Error(`the space holds an invalid plan: ${cost.problem}`);
        if (cost.feasible && !sp && !s.zeroAxes) feasible++;
        // A record only for a plan that may reach an answer (most do not: less garbage to collect).
        const pv = objective === 'time' ? cost.step : cost.memory;
        const mayRank = cost.feasible && (top.length < k || pv <= primary(objective, top[top.length - 1]) || pv <= cap);
        const mayBeLeast = !leastMemory || cost.memory <= leastMemory.memory;
        if (mayRank || mayBeLeast) {
          const c: Candidate = {
            rank: rankOf(), strategy: strategyIndex(i, all.length, sp), zero: s.zero, recompute: s.recompute, microbatches: s.microbatches,
            step: cost.step, memory: cost.memory, feasible: cost.feasible,
          };
          if (mayBeLeast && (!leastMemory || compare('memory', c, leastMemory) < 0)) leastMemory = c;
          if (mayRank) {
            tighten(c);
            if (p.kept && cost.feasible) keepLowering(p.kept, c.rank * 2 + (sp ? 1 : 0), pr.lowering(plan));
          }
        }
        // Compute only grows with microbatches (weights re-read, per-kernel costs) and recompute:
        // at one microbatch this bounds the rest of the ZeRO stage, otherwise the rest of (zero, recompute).
        // Strategies come by ZeRO variant, then recompute mode (fewest records first), then
        // microbatches ascending: what is left of the ZeRO variant after a plan at one microbatch
        // recomputes at least as much, and what is left of the mode has more microbatches.
        const sb = (cost.compute + bubble) * SLACK_ROUNDING;
        if (s.microbatches === 1 && sb > stepZ[zk]) stepZ[zk] = sb;
        if (sb > stepZR[zr]) stepZR[zr] = sb;
        if (objective === 'time') {
          if (prunable(objective, kth, cap, front, sb, lbMemory)) {
            if (s.microbatches === 1) skipZero = zk;
            else skipZR = zr;
          }
        }
      }
    };
    variant(false);
    if (p.spLegal(masks, split)) variant(true);
  };

  // Children of a node, scratch per depth: choice, state, bounds.
  const kids = Array.from({ length: A }, () => ({ c: new Int32Array(S), t: new Float64Array(S), s: new Float64Array(S), m: new Float64Array(S), order: new Int32Array(S) }));
  const dfs = (j: number, state: number) => {
    if (j === A) return leaf(state);
    const K = kids[j];
    let n = 0;
    const lo = space.twin[j] >= 0 ? choice[space.twin[j]] : 0;
    for (let c = lo; c < S; c++) {
      const t = rem.next(state, j, c);
      if (t < 0) continue;
      let ls = rem.lbStep(t);
      const lm = rem.lbMemory(t);
      if (cut(ls, lm)) continue;
      // A complete layout: its splits' compute floor before any lowering of its own.
      if (j === A - 1 && p.floors && cut((ls = rem.floorStep(t)), lm)) continue;
      K.c[n] = c; K.t[n] = t; K.s[n] = ls; K.m[n] = lm; K.order[n] = n;
      n++;
    }
    // Most promising first; ties in choice order (deterministic). An insertion sort of this depth's
    // own scratch (at most one entry per axis choice): deeper calls use the next depth's.
    const O = K.order;
    for (let a = 1; a < n; a++) {
      const x = O[a], px = prim(K.s[x], K.m[x]);
      let b = a - 1;
      for (; b >= 0; b--) {
        const y = O[b], py = prim(K.s[y], K.m[y]);
        if (py < px || (py === px && K.c[y] < K.c[x])) break;
        O[b + 1] = y;
      }
      O[b + 1] = x;
    }
    for (let i = 0; i < n; i++) {
      const o = O[i];
      if (stopping) { open = Math.min(open, prim(K.s[o], K.m[o])); continue; }
      if (cut(K.s[o], K.m[o])) continue;
      const c = K.c[o];
      choice[j] = c;
      for (const d of choiceDims[c]) masks[d] |= 1 << j;
      dfs(j + 1, K.t[o]);
      for (const d of choiceDims[c]) masks[d] &= ~(1 << j);
      choice[j] = 0;
    }
  };

  refresh();
  for (const prefix of task.prefixes) {
    let state = rem.root;
    for (let j = 0; j < prefix.length; j++) {
      state = rem.next(state, j, prefix[j]);
      choice[j] = prefix[j];
      for (const d of choiceDims[prefix[j]]) masks[d] |= 1 << j;
    }
    const ls = rem.lbStep(state), lm = rem.lbMemory(state);
    if (stopping) open = Math.min(open, prim(ls, lm));
    else if (!cut(ls, lm)) dfs(prefix.length, state);
    choice.fill(0);
    masks.fill(0);
  }
  shared.addExamined(sinceCheck);
  return { kind: 'explore', priced, pricedSequenceParallel: pricedSp, pricedHybrid, feasible, layouts, top, front: paretoFront(objective, scope, cap), leastMemory, open };
}
