import { InputError } from '../errors.js';
import type { Mesh } from '../mesh/mesh.js';
import type { Graph } from '../model/graph.js';
import { lower } from '../lower/lower.js';
import type { Plan } from '../lower/plan.js';
import { price } from './price.js';
import type { HardwareProfile } from './profile.js';

/** The numbers a search compares, for one plan: equal to price(lower(...)) on the same plan. */
export interface PlanCost {
  readonly valid: boolean;
  /** Why the plan is invalid (empty when valid). */
  readonly problem: string;
  readonly feasible: boolean;
  readonly step: number;
  readonly compute: number;
  readonly exposed: number;
  readonly bubble: number;
  readonly memory: number;
  readonly bytesPerDevice: number;
  readonly mfu: number;
}

export type Pricer = (plan: Plan) => PlanCost;

const INVALID = (problem: string): PlanCost => ({
  valid: false, problem, feasible: false, step: Infinity, compute: Infinity, exposed: Infinity, bubble: Infinity,
  memory: Infinity, bytesPerDevice: Infinity, mfu: 0,
});

/** A pricer for one graph, mesh and profile: the search's inner loop. */
export function makePricer(graph: Graph, mesh: Mesh, profile: HardwareProfile): Pricer {
  return (plan) => {
    let e;
    try {
      e = price(lower(graph, mesh, plan), profile);
    } catch (err) {
      if (err instanceof InputError) return INVALID(err.message);
      throw err;
    }
    return {
      valid: true, problem: '', feasible: e.feasible, step: e.time.step, compute: e.time.compute,
      exposed: e.time.exposedCommunication, bubble: e.time.bubble, memory: e.memory.total,
      bytesPerDevice: e.communication.bytesPerDevice, mfu: e.mfu,
    };
  };
}
