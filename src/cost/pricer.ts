import { axisConflict, compileLayout, divisibilityProblem, type CompiledLayout } from '../layout/layout.js';
import { InputError } from '../errors.js';
import type { Mesh } from '../mesh/mesh.js';
import type { Graph } from '../model/graph.js';
import { microBatchOf, planMemoryTotal } from '../lower/instantiate.js';
import { lowerLayout, sequenceParallelAxes, strategyProblem, type LayoutLowering } from '../lower/lower.js';
import { RECOMPUTE, RECOMPUTE_LEVEL, type Plan } from '../lower/plan.js';
import { combineWalk, stepParts, strategyCost, walkBase, walkRecompute, type StrategyCost, type Walk, type WalkPart } from './price.js';
import type { HardwareProfile } from './profile.js';

/**
 * The search's inner loop: the numbers price(lower(graph, mesh, plan), profile) gives, from the
 * very same records and pricing functions, with what a plan shares with its neighbours cached:
 * a layout is lowered once (lowerLayout), its forward and backward walked once per microbatch count
 * and its recompute once per (recompute, microbatches), and each
 * ZeRO stage and interleaving only adds its strategy terms.
 */
export interface PlanCost {
  readonly valid: boolean;
  /** Why the plan is invalid (empty when valid). */
  readonly problem: string;
  readonly feasible: boolean;
  readonly step: number;
  readonly compute: number;
  readonly communication: number;
  readonly exposed: number;
  readonly bubble: number;
  readonly memory: number;
  readonly bytesPerDevice: number;
  readonly mfu: number;
}

export type Pricer = ((plan: Plan) => PlanCost) & {
  /**
   * A valid plan's memory per device alone (what the pricer's `memory` says, from the same
   * lowering and planMemory) without its time; NaN for a plan the pricer calls invalid. The
   * search asks it first: most plans of a large model do not fit, and their time cannot matter.
   */
  readonly memory: (plan: Plan) => number;
  /** The layout lowering the pricer prices a plan from (its own, cached), or null where the layout (or sequence parallelism on it) is invalid. */
  readonly lowering: (plan: Plan) => LayoutLowering | null;
};

const INVALID = (problem: string): PlanCost => ({
  valid: false, problem, feasible: false, step: Infinity, compute: Infinity, communication: Infinity, exposed: Infinity,
  bubble: Infinity, memory: Infinity, bytesPerDevice: Infinity, mfu: 0,
});

interface LayoutEntry {
  lowering: LayoutLowering | string;
  walks: Map<number, Walk>;
  /** Per microbatch count, the part of its walks every recompute mode shares. */
  bases: Map<number, WalkPart>;
  /** Strategy terms by ZeRO stage: they do not depend on microbatches or interleaving (price.ts). */
  strategies: (StrategyCost | undefined)[];
  hybrid: Map<string, StrategyCost>;
}

/** The plan at one microbatch, uninterleaved: what its strategy terms are worked out at (made only where they are not cached). */
const once = (plan: Plan): Plan => ({ ...plan, microbatches: 1, virtualStages: 1 });

// Layouts whose lowering and walks a pricer keeps (least recently used out).
const WORKING_SET = 4;

/** A pricer for one graph, mesh and profile. */
export function makePricer(graph: Graph, mesh: Mesh, profile: HardwareProfile): Pricer {
  // A small working set, most recent last: a search prices a layout's strategies one after another
  // and moves on, so its records die young (cheap to collect) instead of piling up in the old space.
  const cache = new Map<string, LayoutEntry>();
  // The last layout object priced, per sequence-parallel flag: the usual hit, without building the key.
  const lastLayout: (object | null)[] = [null, null];
  const lastEntry: (LayoutEntry | null)[] = [null, null];

  const entryOf = (plan: Plan): LayoutEntry => {
    const sp = plan.sequenceParallel ? 1 : 0;
    if (lastLayout[sp] === plan.layout) return lastEntry[sp]!;
    const key = `${sp}|${[...plan.layout].map(([d, a]) => `${d}:${a.join('+')}`).join(';')}`;
    let entry = cache.get(key);
    if (entry) {
      cache.delete(key);
    } else {
      let lowering: LayoutLowering | string;
      try {
        const c: CompiledLayout = compileLayout(plan.layout, mesh);
        const problem = divisibilityProblem(graph, c) ?? axisConflict(graph, mesh, c);
        const spProblem = !problem && plan.sequenceParallel ? sequenceParallelAxes(graph, c) : null;
        lowering = problem ?? (spProblem && 'problem' in spProblem ? spProblem.problem : lowerLayout(graph, mesh, c, { sequenceParallel: plan.sequenceParallel }));
      } catch (err) {
        if (!(err instanceof InputError)) throw err;
        lowering = err.message;
      }
      entry = { lowering, walks: new Map(), bases: new Map(), strategies: [], hybrid: new Map() };
      if (cache.size >= WORKING_SET) cache.delete(cache.keys().next().value!);
    }
    cache.set(key, entry);
    lastLayout[sp] = plan.layout;
    lastEntry[sp] = entry;
    return entry;
  };

  /** The layout's lowering for a plan, or why the plan is invalid (its layout, or its strategy on it). */
  const lowered = (entry: LayoutEntry, plan: Plan): LayoutLowering | string => {
    const l = entry.lowering;
    return typeof l === 'string' ? l : strategyProblem(graph, l.layout, plan) ?? l;
  };

  const memory = (plan: Plan): number => {
    const l = lowered(entryOf(plan), plan);
    if (typeof l === 'string') return NaN;
    try {
      return planMemoryTotal(l, plan);
    } catch (err) {
      if (err instanceof InputError) return NaN; // hybrid axes the layout cannot shard over: the pricer says why
      throw err;
    }
  };

  const pricer = (plan: Plan): PlanCost => {
    const entry = entryOf(plan);
    const l = lowered(entry, plan);
    if (typeof l === 'string') return INVALID(l);
    const key = plan.microbatches * RECOMPUTE.length + RECOMPUTE_LEVEL[plan.recompute];
    let w = entry.walks.get(key);
    if (!w) {
      const M = plan.microbatches, mb = microBatchOf(l, plan);
      let base = entry.bases.get(M);
      if (!base) entry.bases.set(M, (base = walkBase(l, M, mb, profile)));
      w = combineWalk(M, base, walkRecompute(l, plan.recompute, M, mb, profile));
      entry.walks.set(key, w);
    }
    let s: StrategyCost | undefined;
    if (plan.zeroAxes) {
      // A hybrid plan: its strategy terms cached by stage and axes; axes the layout cannot shard over make it invalid.
      const hk = `${plan.zero}|${plan.zeroAxes.join('+')}`;
      s = entry.hybrid.get(hk);
      if (!s) {
        try {
          s = strategyCost(l, once(plan), profile);
        } catch (err) {
          if (err instanceof InputError) return INVALID(err.message);
          throw err;
        }
        entry.hybrid.set(hk, s);
      }
    } else {
      s = entry.strategies[plan.zero] ?? (entry.strategies[plan.zero] = strategyCost(l, once(plan), profile));
    }
    const p = stepParts(l, plan, profile, w, s);
    const m = planMemoryTotal(l, plan);
    return {
      valid: true, problem: '', feasible: m <= profile.memoryBytes, step: p.step, compute: p.compute,
      communication: p.communication, exposed: p.exposed, bubble: p.bubble, memory: m, bytesPerDevice: p.bytesPerDevice, mfu: p.mfu,
    };
  };
  const lowering = (plan: Plan): LayoutLowering | null => {
    const l = entryOf(plan).lowering;
    return typeof l === 'string' ? null : l;
  };
  return Object.assign(pricer, { memory, lowering });
}
