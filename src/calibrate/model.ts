import type { HardwareProfile, Link, OpClassName } from '../cost/profile.js';
import { OP_CLASSES } from './types.js';

/**
 * The parameters the classes fit (fit.ts) varies, in variables in which price.ts is nearly linear:
 * `inv` = 1/efficiency of a class (≥ 1, since efficiency ≤ 1); `kernel` = halfWork/efficiency
 * (≥ 0: the per-kernel cost); `invBandwidth` = 1/bandwidth of an axis (> 0); `latency` (≥ 0);
 * `overlap` (0..1). Only the max over axes and the exposure max(0, ·) are not linear.
 */
export type ParamKind =
  | { readonly type: 'inv'; readonly klass: OpClassName }
  | { readonly type: 'kernel'; readonly klass: OpClassName }
  | { readonly type: 'invBandwidth'; readonly axis: string }
  | { readonly type: 'latency'; readonly axis: string }
  | { readonly type: 'overlap' };

export interface ParamDef {
  readonly name: string;
  readonly kind: ParamKind;
  readonly lo: number;
  readonly hi: number;
  /** Value in the base profile (in the fitted variable). */
  readonly base: number;
  /** Which to keep at its base value first when the rows cannot tell parameters apart (lower first). */
  readonly priority: number;
}

/** The parameter vector's layout: which index holds what. */
export interface ParamSpace {
  readonly defs: readonly ParamDef[];
  readonly inv: Readonly<Record<OpClassName, number>>;
  readonly kernel: Readonly<Record<OpClassName, number>>;
  readonly invBandwidth: ReadonlyMap<string, number>;
  readonly latency: ReadonlyMap<string, number>;
  readonly overlap: number;
}

// Bandwidth at most 1e18 B/s keeps every fitted link finite for validateProfile.
const MIN_INV_BANDWIDTH = 1e-18;

/** The space for a base profile and the axes the rows use, each with its base link. */
export function makeSpace(base: HardwareProfile, axisLinks: ReadonlyMap<string, Link>): ParamSpace {
  const defs: ParamDef[] = [];
  const add = (d: ParamDef) => defs.push(d) - 1;
  const inv = {} as Record<OpClassName, number>;
  const kernel = {} as Record<OpClassName, number>;
  for (const k of OP_CLASSES) {
    inv[k] = add({ name: `efficiency.${k}`, kind: { type: 'inv', klass: k }, lo: 1, hi: Infinity, base: 1 / base.efficiency[k], priority: 4 });
  }
  for (const k of OP_CLASSES) {
    const h = base.efficiencyHalfWork?.[k] ?? 0;
    kernel[k] = add({ name: `efficiencyHalfWork.${k}`, kind: { type: 'kernel', klass: k }, lo: 0, hi: 1e18, base: h / base.efficiency[k], priority: 1 });
  }
  const invBandwidth = new Map<string, number>();
  const latency = new Map<string, number>();
  for (const [axis, link] of axisLinks) {
    invBandwidth.set(axis, add({ name: `bandwidth.${axis}`, kind: { type: 'invBandwidth', axis }, lo: MIN_INV_BANDWIDTH, hi: 1e-3, base: 1 / link.bandwidth, priority: 5 }));
    latency.set(axis, add({ name: `latency.${axis}`, kind: { type: 'latency', axis }, lo: 0, hi: 1, base: link.latency, priority: 2 }));
  }
  const overlap = add({ name: 'overlap', kind: { type: 'overlap' }, lo: 0, hi: 1, base: base.overlap, priority: 3 });
  return { defs, inv, kernel, invBandwidth, latency, overlap };
}

/** A profile from the base with the fitted parameters written in; `fixed` ones stay as the base has them. */
export function toProfile(base: HardwareProfile, space: ParamSpace, theta: Float64Array, fixed: readonly boolean[]): HardwareProfile {
  const efficiency = { ...base.efficiency };
  const half: Partial<Record<OpClassName, number>> = { ...(base.efficiencyHalfWork ?? {}) };
  const axisLinks: Record<string, Link> = { ...(base.axisLinks ?? {}) };
  for (const k of OP_CLASSES) {
    const i = space.inv[k];
    const j = space.kernel[k];
    if (!fixed[i]) efficiency[k] = 1 / theta[i];
    if (!fixed[j]) half[k] = theta[j] / theta[i];
  }
  for (const [axis, i] of space.invBandwidth) {
    const j = space.latency.get(axis)!;
    if (fixed[i] && fixed[j]) continue;
    axisLinks[axis] = { bandwidth: 1 / theta[i], latency: theta[j] };
  }
  const overlap = fixed[space.overlap] ? base.overlap : theta[space.overlap];
  const out: HardwareProfile = { ...base, efficiency, overlap, axisLinks };
  return Object.keys(half).length ? { ...out, efficiencyHalfWork: half } : out;
}

/** A parameter in the profile's own units: efficiency, halfWork (FLOPs or bytes), B/s, s, fraction. */
export function inProfileUnits(space: ParamSpace, theta: ArrayLike<number>, i: number): number {
  const d = space.defs[i];
  switch (d.kind.type) {
    case 'inv':
      return 1 / theta[i];
    case 'kernel':
      return theta[i] / theta[space.inv[d.kind.klass]];
    case 'invBandwidth':
      return 1 / theta[i];
    default:
      return theta[i];
  }
}
