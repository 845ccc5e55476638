import type { HardwareProfile } from '../cost/profile.js';
import type { ModelSpec } from '../model/spec.js';
import type { ZeroStage, Recompute } from '../lower/plan.js';

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

/** Fault injection for tests: `crash` kills the thread (true) or `throw`s inside the share (`throws`). */
interface Faults {
  readonly crash?: boolean | 'throw';
  readonly throws?: boolean;
}

export type Task =
  | { readonly kind: 'bound'; readonly ctx: Context; readonly lo: number; readonly hi: number } & Faults
  | { readonly kind: 'price'; readonly ctx: Context; readonly ranks: readonly number[]; readonly bounds: Bounds; readonly top: number } & Faults;

/** Phase 1: per valid canonical layout of the range, its bounds. */
export interface BoundResult {
  readonly kind: 'bound';
  /** Every layout of the range × its strategies (indivisible layouts count once per zero and recompute). */
  readonly plans: number;
  readonly valid: number;
  /** Valid plans of layouts that are mirror images of a canonical one. */
  readonly symmetric: number;
  readonly ranks: Float64Array;
  /** Lower bound of any plan's step time in the layout, seconds. */
  readonly lbStep: Float64Array;
  /** Lower bound of any plan's memory per device in the layout, bytes. */
  readonly lbMemory: Float64Array;
  /** Strategies of the layout. */
  readonly count: Float64Array;
  /** Devices used (product of the axes that split something) by the valid layout using most. */
  readonly maxUsed: number;
}

/** Phase 2: the candidates of a share that may reach the answer, and counts. */
export interface PriceResult {
  readonly kind: 'price';
  readonly priced: number;
  readonly feasible: number;
  /** Best K feasible plans of the share, by the objective. */
  readonly top: Candidate[];
  /** The share's Pareto points in scope. */
  readonly front: Candidate[];
  /** The least-memory valid plan of the share (for "no feasible plan"). */
  readonly leastMemory: Candidate | null;
}

export type TaskResult = (BoundResult | PriceResult) & { readonly error?: undefined } | { readonly kind: 'error'; readonly error: string };
