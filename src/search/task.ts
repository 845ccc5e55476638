import { makePricer, type Pricer } from '../cost/pricer.js';
import type { Layout } from '../layout/layout.js';
import { RECOMPUTE, type Plan } from '../lower/plan.js';
import { parseMesh } from '../mesh/mesh.js';
import { buildGraph, DIM_NAMES } from '../model/graph.js';
import { matmulBound } from './bounds.js';
import { planFilter, pricingProfile } from './filter.js';
import type { BoundResult, Bounds, Candidate, Context, PriceResult, Task, TaskResult } from './protocol.js';
import { compare, dominated, paretoFront, primary, pushTop } from './rank.js';
import {
  decode, dimMasks, encode, layoutOf, makeSpace, microbatchCounts, nextCanonical, orbitSize, splits, strategies, strategyCount,
  toCanonical, type PlanSpace,
} from './space.js';

/**
 * One share of the search, as a pure function of its message: the same code runs in a piscina
 * worker and inline (`--workers 0`), so a test can run it either way and get the same answer.
 */
interface Prepared {
  readonly admit: ReturnType<typeof planFilter> | null;
  readonly space: PlanSpace;
  readonly pricer: Pricer;
  /** The pricer of the plans the filter's engine prices without overlap (pricingProfile), else null. */
  readonly exposedPricer: Pricer | null;
  readonly matmul: (split: readonly number[]) => number;
}

let cached: { key: string; prepared: Prepared } | null = null;

function prepare(ctx: Context): Prepared {
  if (cached?.key === ctx.key) return cached.prepared;
  const graph = buildGraph(ctx.spec);
  const mesh = parseMesh(ctx.mesh);
  const admit = ctx.filter ? planFilter(ctx.filter, mesh, ctx.spec, ctx.profile) : null;
  const prepared = { admit, space: makeSpace(graph, mesh, ctx.profile, { symmetric: !ctx.filter }), pricer: makePricer(graph, mesh, ctx.profile),
    exposedPricer: ctx.filter ? makePricer(graph, mesh, { ...ctx.profile, overlap: 0 }) : null, matmul: matmulBound(graph, ctx.profile) };
  cached = { key: ctx.key, prepared };
  return prepared;
}

// Bounds are scaled down by this much so that a float rounded the other way never prunes an equal plan.
const SLACK_ROUNDING = 1 - 1e-9;
const BATCH = DIM_NAMES.indexOf('batch');
const LAYERS = DIM_NAMES.indexOf('layers');

export function runTask(task: Task): TaskResult {
  try {
    if (task.throws) throw new Error('injected exception in the share');
    const p = prepare(task.ctx);
    return task.kind === 'bound' ? bound(p, task.ctx.objective, task.lo, task.hi) : price(p, task.ctx, task.ranks, task.bounds, task.top);
  } catch (e) {
    return { kind: 'error', error: (e as Error)?.stack ?? String(e) };
  }
}

/**
 * Lower bounds of a layout, sound by the lowering's structure (test/search.bounds.test.ts checks
 * them on random plans). Compute time is least at ZeRO ≥ 1 (Adam on a shard), no recompute and
 * one microbatch (more microbatches re-read the weights), and step ≥ compute × (1 + bubble share),
 * the bubble share least at the most microbatches.
 */
export function stepBound(space: PlanSpace, pricer: Pricer, layout: Layout, masks: readonly number[], split: readonly number[]): number {
  const ms = microbatchCounts(space, split);
  const c = pricer({ layout, zero: masks[BATCH] ? 1 : 0, recompute: 'none', microbatches: 1, sequenceParallel: false, virtualStages: 1 });
  return c.compute * (1 + (split[LAYERS] - 1) / ms[ms.length - 1]) * SLACK_ROUNDING;
}

/** The matmul-FLOPs bound of a layout, with the least bubble share (see stepBound). */
export function flopsBound(space: PlanSpace, matmul: Prepared['matmul'], split: readonly number[]): number {
  const ms = microbatchCounts(space, split);
  return matmul(split) * (1 + (split[LAYERS] - 1) / ms[ms.length - 1]) * SLACK_ROUNDING;
}

/**
 * Memory is least at the most microbatches, for some ZeRO stage ≥ 2 (stage 3 adds a gathered
 * layer, so either may be least) and some recompute (full recompute adds a layer's buffer).
 */
export function memoryBound(space: PlanSpace, pricer: Pricer, layout: Layout, masks: readonly number[], split: readonly number[]): number {
  const ms = microbatchCounts(space, split);
  let memory = Infinity;
  for (const zero of masks[BATCH] ? ([2, 3] as const) : ([0] as const)) {
    for (const recompute of RECOMPUTE) memory = Math.min(memory, pricer({ layout, zero, recompute, microbatches: ms[ms.length - 1], sequenceParallel: false, virtualStages: 1 }).memory);
  }
  return memory * SLACK_ROUNDING;
}

function bound(p: Prepared, objective: Context['objective'], lo: number, hi: number): BoundResult {
  const { space, pricer } = p;
  const A = space.sizes.length;
  const choice = new Array<number>(A);
  const masks = new Array<number>(space.dims.length);
  const ranks: number[] = [], lbStep: number[] = [], lbMemory: number[] = [], count: number[] = [];
  let plans = 0, valid = 0, symmetric = 0, maxUsed = 0;
  // Only canonical layouts are visited; each counts for its whole orbit (mirror images have the
  // same splits, so the same validity and strategies).
  decode(space, lo, choice);
  toCanonical(space, choice);
  for (let r = encode(space, choice); r < hi; r = nextCanonical(space, choice) ? encode(space, choice) : hi) {
    dimMasks(space, choice, masks);
    const split = splits(space, masks);
    const orbit = orbitSize(space, choice);
    if (!split) {
      plans += (masks[BATCH] ? 4 : 1) * 3 * orbit;
      continue;
    }
    const n = strategyCount(space, split, masks);
    plans += n * orbit;
    valid += n * orbit;
    symmetric += n * (orbit - 1);
    let used = 1;
    for (let a = 0; a < A; a++) if (space.choices[choice[a]] !== 0) used *= space.sizes[a];
    maxUsed = Math.max(maxUsed, used);
    // A layout the filter refuses whatever its strategy is counted, never priced.
    if (p.admit && !p.admit.layout({ layout: layoutOf(space, masks), zero: 0, recompute: 'none', microbatches: 1, sequenceParallel: false, virtualStages: 1 })) continue;
    ranks.push(r);
    // The FLOPs bound orders the layouts; pricer-based bounds are worked out only where needed.
    lbStep.push(flopsBound(space, p.matmul, split));
    lbMemory.push(objective === 'memory' ? memoryBound(space, pricer, layoutOf(space, masks), masks, split) : NaN);
    count.push(n);
  }
  return {
    kind: 'bound', plans, valid, symmetric, maxUsed,
    ranks: Float64Array.from(ranks), lbStep: Float64Array.from(lbStep), lbMemory: Float64Array.from(lbMemory), count: Float64Array.from(count),
  };
}

/**
 * Whether every plan with step ≥ s and memory ≥ m() can be skipped: out of the top K and out of
 * the Pareto front. m is a thunk: the memory bound costs pricer calls and is rarely needed.
 */
function prunable(ctx: Context, bounds: PriceBounds, s: number, m: () => number): boolean {
  if (ctx.objective === 'time') {
    if (s <= bounds.kth) return false;
    return s > bounds.cap || dominated(bounds.front, s, m());
  }
  const mem = m();
  if (mem <= bounds.kth) return false;
  return mem > bounds.cap || dominated(bounds.front, s, mem);
}

/** Keep a list of mutually non-dominated points. */
function addPoint(front: (readonly [number, number])[], s: number, m: number): void {
  for (const [ps, pm] of front) if (ps <= s && pm <= m) return;
  for (let i = front.length - 1; i >= 0; i--) if (s <= front[i][0] && m <= front[i][1]) front.splice(i, 1);
  front.push([s, m]);
}

interface PriceBounds {
  kth: number;
  cap: number;
  front: (readonly [number, number])[];
  slack: number;
}

function price(p: Prepared, ctx: Context, ranks: readonly number[], given: Bounds, k: number): PriceResult {
  const { space, pricer } = p;
  const A = space.sizes.length;
  const choice = new Array<number>(A);
  const masks = new Array<number>(space.dims.length);
  // The share tightens its own bounds as it goes: deterministic, since the share is fixed.
  const bounds: PriceBounds = { kth: given.kth, cap: given.cap, front: [...given.front], slack: given.slack };
  const top: Candidate[] = [];
  const scope: Candidate[] = [];
  let leastMemory: Candidate | null = null;
  let priced = 0, feasible = 0;
  const tighten = (c: Candidate) => {
    if (!c.feasible) return;
    pushTop(ctx.objective, top, c, k);
    if (top.length >= k) bounds.kth = Math.min(bounds.kth, primary(ctx.objective, top[top.length - 1]));
    bounds.cap = Math.min(bounds.cap, primary(ctx.objective, top[0]) * (1 + bounds.slack));
    if (primary(ctx.objective, c) <= bounds.cap) {
      scope.push(c);
      addPoint(bounds.front, c.step, c.memory);
    }
  };
  for (const rank of ranks) {
    decode(space, rank, choice);
    dimMasks(space, choice, masks);
    const split = splits(space, masks)!;
    const layout = layoutOf(space, masks);
    if (p.admit && !p.admit.layout({ layout, zero: 0, recompute: 'none', microbatches: 1, sequenceParallel: false, virtualStages: 1 })) continue;
    const all = strategies(space, split, masks);
    const ms = microbatchCounts(space, split);
    let memo = NaN;
    const lbMemory = () => (Number.isNaN(memo) ? (memo = memoryBound(space, pricer, layout, masks, split)) : memo);
    // The cheap FLOPs bound first; if it is not enough, the tighter compute bound (one walk).
    if (prunable(ctx, bounds, flopsBound(space, p.matmul, split), lbMemory)) continue;
    if (prunable(ctx, bounds, stepBound(space, pricer, layout, masks, split), lbMemory)) continue;
    const stages = split[LAYERS];
    const mMax = ms[ms.length - 1];
    let skipZero = -1;
    let skipZR = '';
    for (let i = 0; i < all.length; i++) {
      const s = all[i];
      if (s.zero === skipZero || `${s.zero}/${s.recompute}` === skipZR) continue;
      const plan: Plan = { layout, zero: s.zero, recompute: s.recompute, microbatches: s.microbatches, sequenceParallel: false, virtualStages: 1 };
      // Outside the filter: never priced, so never an incumbent and never a bound.
      if (p.admit && !p.admit.plan(plan)) continue;
      const cost = (p.exposedPricer && pricingProfile(ctx.filter, plan, ctx.profile) !== ctx.profile ? p.exposedPricer : pricer)(plan);
      priced++;
      if (!cost.valid) throw new Error(`the space holds an invalid plan: ${cost.problem}`);
      if (cost.feasible) feasible++;
      // A record only for a plan that may reach an answer (most do not: less garbage to collect).
      const prim = ctx.objective === 'time' ? cost.step : cost.memory;
      const mayRank = cost.feasible && (top.length < k || prim <= primary(ctx.objective, top[top.length - 1]) || prim <= bounds.cap);
      const mayBeLeast = !leastMemory || cost.memory <= leastMemory.memory;
      if (mayRank || mayBeLeast) {
        const c: Candidate = {
          rank, strategy: i, zero: s.zero, recompute: s.recompute, microbatches: s.microbatches,
          step: cost.step, memory: cost.memory, feasible: cost.feasible,
        };
        if (mayBeLeast && (!leastMemory || compare('memory', c, leastMemory) < 0)) leastMemory = c;
        if (mayRank) tighten(c);
      }
      if (ctx.objective === 'time') {
        // Compute only grows with microbatches (weights re-read, per-kernel costs) and recompute:
        // at one microbatch this bounds the rest of the ZeRO stage, otherwise the rest of (zero, recompute).
        const sb = cost.compute * (1 + (stages - 1) / mMax) * SLACK_ROUNDING;
        if (prunable(ctx, bounds, sb, lbMemory)) {
          if (s.microbatches === 1) skipZero = s.zero;
          else skipZR = `${s.zero}/${s.recompute}`;
        }
      }
    }
  }
  return { kind: 'price', priced, feasible, top, front: paretoFront(ctx.objective, scope, bounds.cap), leastMemory };
}
