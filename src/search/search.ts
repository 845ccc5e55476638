import { availableParallelism } from 'node:os';
import type { Estimate } from '../cost/estimate.js';
import { estimatePlan } from '../cost/estimatePlan.js';
import type { HardwareProfile } from '../cost/profile.js';
import { InputError } from '../errors.js';
import { formatMesh, parseMesh, type Mesh } from '../mesh/mesh.js';
import { buildGraph } from '../model/graph.js';
import type { ModelSpec } from '../model/spec.js';
import type { Plan } from '../lower/plan.js';
import { makeRunner, runShare, type Runner } from './pool.js';
import { planFilter, pricingProfile } from './filter.js';
import type { BoundResult, Candidate, Context, Objective, PlanFilter, PriceResult, Task } from './protocol.js';
import { compare, dominated, mergeTop, paretoFront, primary } from './rank.js';
import { layoutAt, makeSpace, planOf, strategies, type PlanSpace } from './space.js';

export interface SearchOptions {
  readonly spec: ModelSpec;
  readonly mesh: Mesh | string;
  readonly profile: HardwareProfile;
  /** How many plans to report (default 5). */
  readonly top?: number;
  /** Worker threads; 0 runs the same code inline. Default: inline, then one worker per core if the search runs past 1 s. */
  readonly workers?: number;
  readonly objective?: Objective;
  /** Restrict the space (e.g. to one engine's plans); the search is exact within it. */
  readonly filter?: PlanFilter;
  /** With `workers` unset: how long the search runs inline before it starts the pool (default 1 s). */
  readonly inlineSeconds?: number;
  /** The Pareto front covers plans within (1 + slack) × the best on the objective (default 0.25). */
  readonly paretoSlack?: number;
  readonly onProgress?: (p: Progress) => void;
  /** Fault injection for tests: the n-th share submitted crashes (or throws) on its first `times` attempts. */
  readonly faults?: { readonly share: number; readonly times: number; readonly kind?: 'crash' | 'throw' };
}

export interface Progress {
  readonly phase: 'bound' | 'price';
  /** Fraction of the valid plans decided (priced or pruned), 0..1. */
  readonly fraction: number;
  readonly plansPerSecond: number;
}

/** DESIGN.md's search JSON; `closest` only when no plan fits in memory. */
export interface SearchResult {
  best: Estimate | null;
  top: Estimate[];
  pareto: Estimate[];
  searched: { plans: number; valid: number; feasible: number; pruned: number; seconds: number; workers: number };
  closest?: Estimate;
}

let searches = 0;
const BOUND_SHARES = 64;
const SHARES_PER_WAVE = 16;
const MAX_SHARE = 32;

/** Every dimension's largest split on this mesh: what the "mesh too large" message names. */
function divisorReport(space: PlanSpace): string {
  const A = space.sizes.length;
  const none: string[] = [];
  const some: string[] = [];
  for (let k = 0; k < space.dims.length; k++) {
    let best = 1;
    for (let m = 1; m < 1 << A; m++) {
      let f = 1;
      for (let a = 0; a < A; a++) if (m & (1 << a)) f *= space.sizes[a];
      if (space.dimSizes[k] % f === 0) best = Math.max(best, f);
    }
    (best === 1 ? none : some).push(best === 1 ? `${space.dims[k]} (${space.dimSizes[k]})` : `${space.dims[k]} (${space.dimSizes[k]}) at most ${best} ways`);
  }
  return [none.length ? `${none.join(', ')} divide by no mesh axis` : '', some.length ? `${some.join(', ')}` : ''].filter(Boolean).join('; ');
}

export async function search(opts: SearchOptions): Promise<SearchResult> {
  const t0 = performance.now();
  const mesh = typeof opts.mesh === 'string' ? parseMesh(opts.mesh) : opts.mesh;
  const objective = opts.objective ?? 'time';
  const k = opts.top ?? 5;
  if (!Number.isSafeInteger(k) || k < 1) throw new InputError(`--top must be a positive integer, got ${k}`);
  const slack = opts.paretoSlack ?? 0.25;
  const graph = buildGraph(opts.spec);
  if (opts.filter) planFilter(opts.filter, mesh, opts.spec, opts.profile);
  const space = makeSpace(graph, mesh, opts.profile, { symmetric: !opts.filter });
  const workers = opts.workers;
  if (workers !== undefined && (!Number.isSafeInteger(workers) || workers < 0)) throw new InputError(`--workers must be 0 or more, got ${workers}`);
  const meshText = formatMesh(mesh);
  // One key per search: a worker (or the main thread, inline) prepares the pricer once per search
  // and never reuses one warmed by an earlier search, so every search costs what it costs.
  const ctx: Context = { key: `${process.pid}/${++searches}`, spec: opts.spec, mesh: meshText, profile: opts.profile, objective, ...(opts.filter ? { filter: opts.filter } : {}) };

  let submitted = 0;
  const faults = opts.faults;
  const share = (runner: Runner, task: Task, what: string) => {
    const n = submitted++;
    return runShare(runner, task, what, (attempt) => faults !== undefined && faults.share === n && attempt < faults.times && (faults.kind === 'throw' ? 'throw' : true));
  };
  const progress = (phase: Progress['phase'], fraction: number, priced: number) =>
    opts.onProgress?.({ phase, fraction, plansPerSecond: priced / Math.max(1e-9, (performance.now() - t0) / 1000) });

  const runner = makeRunner(workers, Math.max(1, availableParallelism()), opts.inlineSeconds);
  try {
    // Phase 1: bounds of every canonical valid layout, in fixed shares of the rank range.
    const step = Math.ceil(space.ranks / BOUND_SHARES);
    const jobs: Promise<BoundResult>[] = [];
    let boundsDone = 0;
    for (let lo = 0; lo < space.ranks; lo += step) {
      const hi = Math.min(space.ranks, lo + step);
      jobs.push(share(runner, { kind: 'bound', ctx, lo, hi }, `layouts ${lo}..${hi - 1}`).then((r) => {
        progress('bound', (++boundsDone / BOUND_SHARES) * 0.05, 0);
        return r as BoundResult;
      }));
    }
    const bounds = await Promise.all(jobs);
    let plans = 0, valid = 0, maxUsed = 0, n = 0;
    for (const b of bounds) {
      plans += b.plans; valid += b.valid; maxUsed = Math.max(maxUsed, b.maxUsed); n += b.ranks.length;
    }
    if (maxUsed < mesh.size) {
      throw new InputError(`the mesh ${meshText} has ${mesh.size} devices, more than ${graph.spec.name} can use: no valid layout puts more than ${maxUsed} of them to work; its dimensions ran out of divisors: ${divisorReport(space)}`);
    }
    const rank = new Float64Array(n), lbStep = new Float64Array(n), lbMem = new Float64Array(n);
    let i = 0;
    for (const b of bounds) {
      rank.set(b.ranks, i); lbStep.set(b.lbStep, i); lbMem.set(b.lbMemory, i);
      i += b.ranks.length;
    }
    const lbPrim = objective === 'time' ? lbStep : lbMem;
    const order = Uint32Array.from({ length: n }, (_, j) => j).sort((a, b) => lbPrim[a] - lbPrim[b] || rank[a] - rank[b]);

    // Phase 2: price layouts in bound order, in waves of fixed shares; each wave runs under the
    // bounds the previous waves set, so the answer and the counts do not depend on the workers.
    let top: Candidate[] = [];
    let frontCandidates: Candidate[] = [];
    let leastMemory: Candidate | null = null;
    let priced = 0, feasible = 0;
    let kth = Infinity, cap = Infinity;
    let front: [number, number][] = [];
    let pos = 0, wave = 0;
    const prunable = (j: number) => {
      const prim = lbPrim[j];
      if (prim <= kth) return false;
      return prim > cap || (!Number.isNaN(lbMem[j]) && dominated(front, lbStep[j], lbMem[j]));
    };
    while (pos < n) {
      // Waves grow: the first ones run with no bound yet, so they are small and few.
      const size = Math.min(MAX_SHARE, 1 << wave);
      const width = Math.min(SHARES_PER_WAVE, 1 << wave);
      const shares: number[][] = [];
      let cur: number[] = [];
      while (pos < n && shares.length < width) {
        const j = order[pos++];
        if (prunable(j)) {
          // Sorted by the bound on the objective: once past both thresholds, all the rest are too.
          if (lbPrim[j] > kth && lbPrim[j] > cap) pos = n;
          continue;
        }
        cur.push(rank[j]);
        if (cur.length === size) { shares.push(cur); cur = []; }
      }
      if (cur.length) shares.push(cur);
      const given = { kth, cap, front, slack };
      const results = await Promise.all(shares.map((ranks) =>
        share(runner, { kind: 'price', ctx, ranks, bounds: given, top: k }, `${ranks.length} layouts from rank ${ranks[0]}`) as Promise<PriceResult>));
      for (const r of results) {
        priced += r.priced;
        feasible += r.feasible;
        if (r.leastMemory && (!leastMemory || compare('memory', r.leastMemory, leastMemory) < 0)) leastMemory = r.leastMemory;
      }
      top = mergeTop(objective, [top, ...results.map((r) => r.top)], k);
      if (top.length >= k) kth = primary(objective, top[k - 1]);
      if (top.length) cap = primary(objective, top[0]) * (1 + slack);
      frontCandidates = paretoFront(objective, [...frontCandidates, ...results.flatMap((r) => r.front)], cap);
      front = frontCandidates.map((c) => [c.step, c.memory]);
      wave++;
      progress('price', 0.05 + 0.95 * ((pos) / Math.max(1, n)), priced);
    }

    const estimates = new Map<string, Estimate>();
    const estimateOf = (c: Candidate): Estimate => {
      const key = `${c.rank}/${c.strategy}`;
      let e = estimates.get(key);
      const plan = planFromCandidate(space, c);
      if (!e) estimates.set(key, (e = estimatePlan(graph, mesh, plan, pricingProfile(opts.filter, plan, opts.profile))));
      return e;
    };
    const result: SearchResult = {
      best: top.length ? estimateOf(top[0]) : null,
      top: top.map(estimateOf),
      pareto: paretoFront(objective, frontCandidates, cap).map(estimateOf),
      searched: {
        plans, valid, feasible, pruned: valid - priced, seconds: (performance.now() - t0) / 1000, workers: runner.workers,
      },
    };
    if (!top.length && leastMemory) result.closest = estimateOf(leastMemory);
    return result;
  } finally {
    await runner.close();
  }
}

/** Rebuild the plan a candidate names. */
export function planFromCandidate(space: PlanSpace, c: Candidate): Plan {
  const at = layoutAt(space, c.rank);
  if (!at) throw new Error(`rank ${c.rank} is not a valid layout`);
  const s = strategies(space, at.split, at.masks)[c.strategy];
  return planOf(at.layout, s);
}



