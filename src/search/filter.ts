import { engineFilter, isEngine, ENGINES } from '../engine/index.js';
import { InputError } from '../errors.js';
import type { HardwareProfile } from '../cost/profile.js';
import type { Mesh } from '../mesh/mesh.js';
import type { ModelSpec } from '../model/spec.js';
import type { Plan } from '../lower/plan.js';
import type { PlanFilter } from './protocol.js';

/** The predicate a PlanFilter names (an InputError for an unknown engine). */
export function planFilter(f: PlanFilter, mesh: Mesh, spec: ModelSpec, profile: HardwareProfile): (plan: Plan) => boolean {
  if (!isEngine(f.engine)) throw new InputError(`unknown engine "${f.engine}"; engines are ${ENGINES.join(', ')}`);
  return engineFilter(f.engine, mesh, spec, profile);
}
