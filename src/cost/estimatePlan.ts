import { divisibilityProblem, compileLayout, formatLayout } from '../layout/layout.js';
import type { Mesh } from '../mesh/mesh.js';
import type { Graph } from '../model/graph.js';
import { instantiate } from '../lower/instantiate.js';
import { lower, lowerLayout, strategyProblem, type LayoutLowering } from '../lower/lower.js';
import type { Plan } from '../lower/plan.js';
import type { Estimate } from './estimate.js';
import { fmtBytes, price, priceMemo, type PriceMemo } from './price.js';
import type { HardwareProfile } from './profile.js';

/** Layout lowerings of one graph and mesh, by layout (estimatePlan's optional cache, keyed by loweringKey). */
export type LoweringCache = Map<string, LayoutLowering>;

// Per cache, per lowering and profile: what the prices of its plans share (price.ts PriceMemo).
// Kept as long as the cache is, so the plans one caller estimates together share it, and no others.
const memos = new WeakMap<LoweringCache, Map<LayoutLowering, Map<HardwareProfile, PriceMemo>>>();

function memoOf(cache: LoweringCache, l: LayoutLowering, profile: HardwareProfile): PriceMemo {
  let byLowering = memos.get(cache);
  if (!byLowering) memos.set(cache, (byLowering = new Map()));
  let byProfile = byLowering.get(l);
  if (!byProfile) byLowering.set(l, (byProfile = new Map()));
  let m = byProfile.get(profile);
  if (!m) byProfile.set(profile, (m = priceMemo()));
  return m;
}

/** A plan's key in a LoweringCache: its layout and whether it takes sequence parallelism. */
export function loweringKey(plan: Plan): string {
  return `${formatLayout(plan.layout)}/${plan.sequenceParallel ? 'sp' : ''}`;
}

/**
 * Estimate one plan. A layout whose only fault is an indivisible split (or a microbatch count
 * that does not divide the batch) is still priced, with fractional local sizes, and reported
 * invalid with its reasons; a layout that puts two dimensions of a tensor on one axis throws.
 */
export function estimatePlan(graph: Graph, mesh: Mesh, plan: Plan, profile: HardwareProfile, lowerings?: LoweringCache): Estimate {
  if (lowerings) {
    // A layout lowered before is valid (its lowering checked it): only the strategy is left to check.
    const l = lowerings.get(loweringKey(plan));
    if (l && strategyProblem(graph, l.layout, plan) === null) return price(instantiate(l, plan), profile, memoOf(lowerings, l, profile));
  }
  const c = compileLayout(plan.layout, mesh);
  const divisibility = divisibilityProblem(graph, c);
  const microProblem = divisibility === null ? strategyProblem(graph, c, plan) : null;
  if (divisibility === null && microProblem === null) {
    if (!lowerings) return price(lower(graph, mesh, plan), profile);
    // The layout's lowering is the same for every strategy: lower it once per cache.
    const key = loweringKey(plan);
    let l = lowerings.get(key);
    if (!l) lowerings.set(key, (l = lowerLayout(graph, mesh, plan.layout, { sequenceParallel: plan.sequenceParallel })));
    return price(instantiate(l, plan), profile, memoOf(lowerings, l, profile));
  }
  const e: Estimate = price(lower(graph, mesh, plan, { relaxed: true }), profile);
  const first = `invalid layout ${formatLayout(plan.layout) || '(replicated)'}: ${divisibility ?? microProblem}`;
  const reasons = [first, ...e.reasons];
  if (e.feasible) reasons.push(`memory would be ${fmtBytes(e.memory.total)} per device of ${fmtBytes(e.memory.capacity)}`);
  return { ...e, valid: false, feasible: false, reasons };
}
