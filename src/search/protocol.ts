import type { HardwareProfile } from '../cost/profile.js';
import type { ModelSpec } from '../model/spec.js';
import type { ZeroStage, Recompute } from '../lower/plan.js';
import type { SharedTable } from './remaining.js';

/**
 * The protocol between the search and its workers, typed before any logic. Every message is
 * structured-clonable; a worker answers with data, an error included, and never throws across.
 */
export type Objective = 'time' | 'memory';

/** What a worker needs to rebuild the graph, mesh, space and pricer (cached per context key). */
export interface Context {
  readonly key: string;
  readonly spec: ModelSpec;
  readonly mesh: string;
  readonly profile: HardwareProfile;
  readonly objective: Objective;
  /** Only plans this names are in the space (a structured-clonable spec; see PlanFilter). */
  readonly filter?: PlanFilter;
  /** The bound table the main thread worked out (src/search/remaining.ts), so workers need not. */
  readonly table?: SharedTable;
}

/**
 * A restriction of the plan space, by name so that it crosses to workers: today, the plans one
 * training engine can express (src/engine whyNot). A filtered-out plan is never priced, so it is
 * never an incumbent and never tightens a bound.
 */
export interface PlanFilter {
  readonly engine: string;
}

/** A priced plan, small: enough to rank it and to rebuild it. */
export interface Candidate {
  readonly rank: number;
  /** Index of the strategy in strategies(...) of that layout. */
  readonly strategy: number;
  readonly zero: ZeroStage;
  readonly recompute: Recompute;
  readonly microbatches: number;
  readonly step: number;
  readonly memory: number;
  readonly feasible: boolean;
}

/** The prune thresholds a share of phase 2 runs under (fixed for the whole wave: determinism). */
export interface Bounds {
  /** The K-th best objective value so far (Infinity until K feasible plans are known). */
  readonly kth: number;
  /** The Pareto scope: plans worse than this on the objective are out of it. */
  readonly cap: number;
  /** Pareto points so far, as [step, memory] pairs. */
  readonly front: readonly (readonly [number, number])[];
  /** The Pareto scope is plans within (1 + slack) × the best on the objective. */
  readonly slack: number;
}

/**
 * A share: the subtrees of the branch and bound under some prefixes (the choices of the first
 * axes), searched depth first against the given bounds and the shared incumbent.
 */
export type Task = {
  readonly kind: 'explore';
  readonly ctx: Context;
  /** Per prefix: the choice index of each of its axes (axis 0 first). */
  readonly prefixes: readonly (readonly number[])[];
  readonly bounds: Bounds;
  readonly top: number;
  /** Shared incumbent, stop flag and counters (src/search/shared.ts). */
  readonly shared: SharedArrayBuffer;
  /** Wall-clock deadline (Date.now() ms) after which the share stops and reports what it left open. */
  readonly deadline?: number;
  /** Fault injection for tests: `crash` kills the thread (true) or makes it throw inside the share. */
  readonly crash?: boolean | 'throw';
  /** Fault injection for tests: the share throws (what a crash of kind 'throw' becomes in the worker). */
  readonly throws?: boolean;
};

/** What a share found: the candidates that may reach the answer, and counts. */
export interface ExploreResult {
  readonly kind: 'explore';
  /** Strategies priced (without sequence parallelism: the plans `valid` counts). */
  readonly priced: number;
  /** Sequence-parallel variants priced (not counted in the space's plans). */
  readonly pricedSequenceParallel: number;
  /** Hybrid-sharded variants priced without sequence parallelism (not counted in the space's plans either). */
  readonly pricedHybrid: number;
  readonly feasible: number;
  /** Complete layouts examined (bounded or priced). */
  readonly layouts: number;
  /** Best K feasible plans of the share, by the objective. */
  readonly top: Candidate[];
  /** The share's Pareto points in scope. */
  readonly front: Candidate[];
  /** The least-memory valid plan of the share (for "no feasible plan"). */
  readonly leastMemory: Candidate | null;
  /** The least bound on the objective of what the share left unexplored when it stopped early (Infinity: none). */
  readonly open: number;
}

export type TaskResult = ExploreResult & { readonly error?: undefined } | { readonly kind: 'error'; readonly error: string };
