import { asRunBy, CAPABILITIES, engineFilter, engineLayoutFilter, isEngine, ENGINES } from '../engine/index.js';
import { InputError } from '../errors.js';
import type { HardwareProfile } from '../cost/profile.js';
import type { Mesh } from '../mesh/mesh.js';
import type { ModelSpec } from '../model/spec.js';
import type { Plan } from '../lower/plan.js';
import type { PlanFilter } from './protocol.js';

/**
 * The predicates a PlanFilter names (an InputError for an unknown engine): `plan` decides, `layout`
 * is a necessary condition read from the layout alone, so a whole layout is skipped at once.
 */
export function planFilter(f: PlanFilter, mesh: Mesh, spec: ModelSpec, profile: HardwareProfile): { plan: (plan: Plan) => boolean; layout: (plan: Plan) => boolean } {
  if (!isEngine(f.engine)) throw new InputError(`unknown engine "${f.engine}"; engines are ${ENGINES.join(', ')}`);
  return { plan: engineFilter(f.engine, mesh, spec, profile), layout: engineLayoutFilter(f.engine, mesh, spec, profile) };
}

/** Whether any plan with sequence parallelism can pass the filter (the engine has it). */
export function allowsSequenceParallel(f: PlanFilter | undefined): boolean {
  return !f || !isEngine(f.engine) || CAPABILITIES[f.engine].sequenceParallel;
}

/** The profile the filter's engine runs on (asRunBy: its full recompute, its kernels); the same profile when nothing changes. */
export function engineProfile(f: PlanFilter | undefined, profile: HardwareProfile): HardwareProfile {
  return f && isEngine(f.engine) ? asRunBy(f.engine, profile) : profile;
}

/**
 * The profile a plan is priced with under the filter: an engine that reduces gradients only after
 * the backward at this ZeRO stage hides nothing behind it (overlap 0); otherwise the profile's own.
 */
export function pricingProfile(f: PlanFilter | undefined, plan: Plan, profile: HardwareProfile): HardwareProfile {
  if (!f || !isEngine(f.engine) || !CAPABILITIES[f.engine].reduceAfterBackward.includes(plan.zero)) return profile;
  return { ...profile, overlap: 0, sources: { ...profile.sources, overlap: `${CAPABILITIES[f.engine].title} reduces gradients after the backward at ZeRO ${plan.zero}` } };
}
