import { availableParallelism } from 'node:os';
import type { Estimate } from '../cost/estimate.js';
import { estimatePlan, loweringKey, type LoweringCache } from '../cost/estimatePlan.js';
import type { HardwareProfile } from '../cost/profile.js';
import { InputError } from '../errors.js';
import { formatMesh, parseMesh, type Mesh } from '../mesh/mesh.js';
import { buildGraph } from '../model/graph.js';
import type { ModelSpec } from '../model/spec.js';
import type { Plan } from '../lower/plan.js';
import { makeRunner, runShare, type Runner } from './pool.js';
import { engineProfile, planFilter, pricingProfile } from './filter.js';
import type { Candidate, Context, ExploreResult, Objective, PlanFilter, Task } from './protocol.js';
import { compare, dominated, mergeTop, paretoFront, primary } from './rank.js';
import { Shared } from './shared.js';
import { layoutAt, planOf, strategies, type PlanSpace } from './space.js';
import { prepare } from './task.js';

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
  /** Stop after this many seconds and return the best plan found, with a proven gap (searched.lowerBound, searched.gap). */
  readonly timeLimit?: number;
  /** Fault injection for tests: the n-th share submitted crashes (or throws) on its first `times` attempts. */
  readonly faults?: { readonly share: number; readonly times: number; readonly kind?: 'crash' | 'throw' };
}

export interface Progress {
  readonly phase: 'bound' | 'price';
  /** Fraction of the shares decided (searched or cut), weighted by their valid plans, 0..1. */
  readonly fraction: number;
  readonly plansPerSecond: number;
  /** Complete layouts examined so far. */
  readonly examined?: number;
  /** The best objective value found so far (Infinity: no plan fits yet). */
  readonly best?: number;
  /** A proven lower bound on the objective of any plan not yet ruled out. */
  readonly bound?: number;
}

/** DESIGN.md's search JSON; `closest` only when no plan fits in memory. */
export interface SearchResult {
  best: Estimate | null;
  top: Estimate[];
  pareto: Estimate[];
  searched: {
    plans: number; valid: number; feasible: number; pruned: number; seconds: number; workers: number;
    /** Sequence-parallel variants priced beside the plans (not in the counts before it). */
    sequenceParallel: number;
    /** Hybrid-sharded variants priced beside the plans (ZeRO within the faster levels: space.ts hybridZeroAxes), not in the counts either. */
    hybrid?: number;
    /** Only when a time limit stopped the search: a proven lower bound on the objective and the best's gap to it. */
    lowerBound?: number; gap?: number;
  };
  closest?: Estimate;
}

let searches = 0;
// The tree is cut into at least this many subtrees (prefixes of the first axes' choices), handed
// out most promising first; several prefixes make one share when they are many.
const MIN_SUBTREES = 256;
const MAX_SHARES = 1024;

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

export async function search(given: SearchOptions): Promise<SearchResult> {
  const t0 = performance.now();
  // An engine's plans are priced as it runs them (its full recompute, its kernels).
  const opts: SearchOptions = given.filter ? { ...given, profile: engineProfile(given.filter, given.profile) } : given;
  const mesh = typeof opts.mesh === 'string' ? parseMesh(opts.mesh) : opts.mesh;
  const objective = opts.objective ?? 'time';
  const k = opts.top ?? 5;
  if (!Number.isSafeInteger(k) || k < 1) throw new InputError(`--top must be a positive integer, got ${k}`);
  const slack = opts.paretoSlack ?? 0.25;
  const graph = buildGraph(opts.spec);
  if (opts.filter) planFilter(opts.filter, mesh, opts.spec, opts.profile);
  const workers = opts.workers;
  if (workers !== undefined && (!Number.isSafeInteger(workers) || workers < 0)) throw new InputError(`--workers must be 0 or more, got ${workers}`);
  const meshText = formatMesh(mesh);
  // One key per search: a worker (or the main thread, inline) prepares the pricer once per search
  // and never reuses one warmed by an earlier search, so every search costs what it costs.
  const ctx: Context = { key: `${process.pid}/${++searches}`, spec: opts.spec, mesh: meshText, profile: opts.profile, objective, ...(opts.filter ? { filter: opts.filter } : {}) };
  // This thread's share of the work: the space and bound tables it explores inline (workers build their own).
  const prepared = prepare(ctx, graph);
  const space = prepared.space;

  let submitted = 0;
  const faults = opts.faults;
  const share = (runner: Runner, task: Task, what: string) => {
    const n = submitted++;
    return runShare(runner, task, what, (attempt) => faults !== undefined && faults.share === n && attempt < faults.times && (faults.kind === 'throw' ? 'throw' : true));
  };
  const runner = makeRunner(workers, Math.max(1, availableParallelism()), opts.inlineSeconds);
  try {
    const rem = prepared.remaining;
    // A pool asked for starts now: its threads load their code while this thread works out the
    // bound table (synchronous, 0.6 s for the seven-axis case). The default's pool starts only
    // once the search has run inline for a second, as before.
    await runner.start();
    // Workers read the table and the floors this thread works out; a search that never starts a
    // pool (--workers 0) keeps both to itself (no shared floor store to set up).
    const shareCtx: Context = workers === 0 ? ctx : { ...ctx, table: rem.share() };
    const plans = rem.plans(rem.root), valid = rem.valid(rem.root), maxUsed = rem.maxUsed(rem.root);
    if (maxUsed < mesh.size) {
      throw new InputError(`the mesh ${meshText} has ${mesh.size} devices, more than ${graph.spec.name} can use: no valid layout puts more than ${maxUsed} of them to work; its dimensions ran out of divisors: ${divisorReport(space)}`);
    }
    const prim = (state: number) => (objective === 'time' ? rem.lbStep(state) : rem.lbMemory(state));
    // Subtrees: canonical prefixes, one axis deeper at a time, until there are enough.
    let prefixes: { choice: number[]; state: number }[] = [{ choice: [], state: rem.root }];
    const A = space.sizes.length, S = space.choices.length;
    while (prefixes.length < MIN_SUBTREES && prefixes[0] && prefixes[0].choice.length < A) {
      const deeper: typeof prefixes = [];
      for (const q of prefixes) {
        const j = q.choice.length;
        const lo = space.twin[j] >= 0 ? q.choice[space.twin[j]] : 0;
        for (let c = lo; c < S; c++) {
          const t = rem.next(q.state, j, c);
          if (t >= 0) deeper.push({ choice: [...q.choice, c], state: t });
        }
      }
      prefixes = deeper;
    }
    // Sorted by their bound, each looked up once (not once per comparison); distinct prefixes never tie.
    {
      const all = prefixes, bound = all.map((q) => prim(q.state));
      prefixes = all.map((_, i) => i).sort((i, j) => bound[i] - bound[j] || compareChoices(all[i].choice, all[j].choice)).map((i) => all[i]);
    }
    const weights = prefixes.map((q) => rem.valid(q.state));
    const totalWeight = weights.reduce((x, y) => x + y, 0);
    // Consecutive prefixes form a share, so that shares stay few enough to hand out cheaply.
    const per = Math.max(1, Math.ceil(prefixes.length / MAX_SHARES));

    const shared = Shared.create(k);
    const deadline = opts.timeLimit !== undefined ? Date.now() + opts.timeLimit * 1000 : undefined;
    let top: Candidate[] = [];
    let frontCandidates: Candidate[] = [];
    let leastMemory: Candidate | null = null;
    let priced = 0, pricedSp = 0, pricedHybrid = 0, feasible = 0, done = 0;
    let kth = Infinity, cap = Infinity;
    let front: [number, number][] = [];
    let open = Infinity;
    const take = (r: ExploreResult, weight: number) => {
      priced += r.priced;
      pricedSp += r.pricedSequenceParallel;
      pricedHybrid += r.pricedHybrid;
      feasible += r.feasible;
      open = Math.min(open, r.open);
      if (r.leastMemory && (!leastMemory || compare('memory', r.leastMemory, leastMemory) < 0)) leastMemory = r.leastMemory;
      top = mergeTop(objective, [top, r.top], k);
      if (top.length >= k) kth = primary(objective, top[k - 1]);
      if (top.length) cap = primary(objective, top[0]) * (1 + slack);
      frontCandidates = paretoFront(objective, [...frontCandidates, ...r.front], cap);
      front = frontCandidates.map((c) => [c.step, c.memory]);
      done += weight;
      const best = top.length ? primary(objective, top[0]) : Infinity;
      opts.onProgress?.({
        phase: 'price', fraction: totalWeight > 0 ? Math.min(1, done / totalWeight) : 1,
        plansPerSecond: priced / Math.max(1e-9, (performance.now() - t0) / 1000), examined: shared.examined(), best,
        bound: Math.min(best, open, ...(next < prefixes.length ? [prim(prefixes[next].state)] : [])),
      });
    };
    const hopeless = (state: number) => {
      const lm = rem.lbMemory(state);
      return lm > opts.profile.memoryBytes && (top.length > 0 || (leastMemory !== null && lm > leastMemory.memory));
    };
    const cut = (state: number) => {
      const pv = prim(state);
      if (hopeless(state)) return true;
      if (pv <= kth) return false;
      return pv > cap || dominated(front, rem.lbStep(state), rem.lbMemory(state));
    };
    // Hand out shares in bound order, a few more than there are workers at a time, so each share
    // starts under the bounds the finished ones set; a share cut here is never sent.
    let next = 0;
    const inFlight = new Set<Promise<void>>();
    const launch = () => {
      const group: number[][] = [];
      let weight = 0;
      while (next < prefixes.length && group.length < per) {
        const q = prefixes[next];
        weight += weights[next];
        next++;
        if (shared.stopped() || (deadline !== undefined && Date.now() > deadline)) {
          shared.stop();
          open = Math.min(open, prim(q.state));
          continue;
        }
        if (!cut(q.state)) group.push(q.choice);
      }
      if (!group.length) {
        done += weight;
        return;
      }
      const task: Task = { kind: 'explore', ctx: shareCtx, prefixes: group, bounds: { kth, cap, front, slack }, top: k, shared: shared.buffer, deadline };
      const what = `layouts under ${group.length} prefix${group.length === 1 ? '' : 'es'} from ${describePrefix(space, group[0])}`;
      const job: Promise<void> = share(runner, task, what).then((r) => { take(r as ExploreResult, weight); inFlight.delete(job); });
      inFlight.add(job);
    };
    while (next < prefixes.length || inFlight.size) {
      while (next < prefixes.length && inFlight.size < Math.max(1, runner.workers + 1)) launch();
      if (inFlight.size) await Promise.race(inFlight);
    }
    opts.onProgress?.({ phase: 'price', fraction: 1, plansPerSecond: priced / Math.max(1e-9, (performance.now() - t0) / 1000), examined: shared.examined(), best: top.length ? primary(objective, top[0]) : Infinity, bound: top.length ? Math.min(primary(objective, top[0]), open) : open });

    const estimates = new Map<string, Estimate>();
    const lowerings: LoweringCache = new Map();
    const estimateOf = (c: Candidate): Estimate => {
      const key = `${c.rank}/${c.strategy}`;
      let e = estimates.get(key);
      if (!e) {
        const plan = planFromCandidate(space, c);
        // The layout as this thread's pricer lowered it, if it did (inline): the same records.
        const kept = prepared.kept?.get(c.rank * 2 + (plan.sequenceParallel ? 1 : 0));
        const lk = loweringKey(plan);
        if (kept && !lowerings.has(lk)) lowerings.set(lk, kept);
        estimates.set(key, (e = estimatePlan(graph, mesh, plan, pricingProfile(opts.filter, plan, opts.profile), lowerings)));
      }
      return e;
    };
    const result: SearchResult = {
      best: top.length ? estimateOf(top[0]) : null,
      top: top.map(estimateOf),
      pareto: paretoFront(objective, frontCandidates, cap).map(estimateOf),
      searched: {
        plans, valid, feasible, pruned: valid - priced, seconds: (performance.now() - t0) / 1000, workers: runner.workers, sequenceParallel: pricedSp, hybrid: pricedHybrid,
      },
    };
    if (open < Infinity) {
      const best = top.length ? primary(objective, top[0]) : Infinity;
      const lowerBound = Math.min(best, open);
      result.searched.lowerBound = lowerBound;
      result.searched.gap = best === Infinity ? Infinity : best / lowerBound - 1;
    }
    if (!top.length && leastMemory) result.closest = estimateOf(leastMemory);
    return result;
  } finally {
    await runner.close();
  }
}

function compareChoices(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/** `rows=batch+d_ff, cols=-`: a prefix of per-axis choices, for messages. */
function describePrefix(space: PlanSpace, choice: readonly number[]): string {
  if (!choice.length) return 'the root';
  return choice.map((c, a) => {
    const dims = space.dims.filter((_, d) => space.choices[c] & (1 << d));
    return `${space.mesh.axes[a].name}=${dims.join('+') || '-'}`;
  }).join(', ');
}

/** Rebuild the plan a candidate names. */
export function planFromCandidate(space: PlanSpace, c: Candidate): Plan {
  const at = layoutAt(space, c.rank);
  if (!at) throw new Error(`rank ${c.rank} is not a valid layout`);
  const all = strategies(space, at.split, at.masks);
  const sp = c.strategy >= all.length;
  return planOf(at.layout, all[sp ? c.strategy - all.length : c.strategy], sp);
}



