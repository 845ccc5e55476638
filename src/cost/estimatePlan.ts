import { divisibilityProblem, compileLayout, formatLayout } from '../layout/layout.js';
import type { Mesh } from '../mesh/mesh.js';
import type { Graph } from '../model/graph.js';
import { lower, strategyProblem } from '../lower/lower.js';
import type { Plan } from '../lower/plan.js';
import type { Estimate } from './estimate.js';
import { fmtBytes, price } from './price.js';
import type { HardwareProfile } from './profile.js';

/**
 * Estimate one plan. A layout whose only fault is an indivisible split (or a microbatch count
 * that does not divide the batch) is still priced, with fractional local sizes, and reported
 * invalid with its reasons; a layout that puts two dimensions of a tensor on one axis throws.
 */
export function estimatePlan(graph: Graph, mesh: Mesh, plan: Plan, profile: HardwareProfile): Estimate {
  const c = compileLayout(plan.layout, mesh);
  const divisibility = divisibilityProblem(graph, c);
  const microProblem = divisibility === null ? strategyProblem(graph, c, plan) : null;
  if (divisibility === null && microProblem === null) return price(lower(graph, mesh, plan), profile);
  const e: Estimate = price(lower(graph, mesh, plan, { relaxed: true }), profile);
  const first = `invalid layout ${formatLayout(plan.layout) || '(replicated)'}: ${divisibility ?? microProblem}`;
  const reasons = [first, ...e.reasons];
  if (e.feasible) reasons.push(`memory would be ${fmtBytes(e.memory.total)} per device of ${fmtBytes(e.memory.capacity)}`);
  return { ...e, valid: false, feasible: false, reasons };
}
