import type { HardwareProfile, Link, OpClassName } from '../cost/profile.js';
import type { Features } from './features.js';
import { OP_CLASSES } from './types.js';

/**
 * The parameters calibration fits, in the variables that make price.ts linear (or nearly):
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

/** A predicted time and its gradient with respect to the parameter vector. */
export interface Valued {
  value: number;
  grad: Float64Array;
}

export interface Prediction {
  readonly step: Valued;
  readonly compute: Readonly<Record<OpClassName, Valued>>;
  /** By axis group key (`rows+cols`), blocking and overlappable together. */
  readonly comm: ReadonlyMap<string, Valued>;
}

const zero = (p: number): Valued => ({ value: 0, grad: new Float64Array(p) });

function addInto(a: Valued, b: Valued, s = 1): void {
  a.value += s * b.value;
  for (let i = 0; i < a.grad.length; i++) a.grad[i] += s * b.grad[i];
}

/** price.ts's step time as a function of the parameters, with its gradient (the fit's Jacobian row). */
export function predict(f: Features, theta: Float64Array, space: ParamSpace): Prediction {
  const p = theta.length;
  const compute = {} as Record<OpClassName, Valued>;
  const total = zero(p);
  const bwd = zero(p);
  for (const k of OP_CLASSES) {
    const c = f.classes[k];
    const i = space.inv[k];
    const j = space.kernel[k];
    const v = zero(p);
    v.value = theta[i] * c.work + theta[j] * c.calls;
    v.grad[i] = c.work;
    v.grad[j] = c.calls;
    compute[k] = v;
    addInto(total, v);
    bwd.value += theta[i] * c.backwardWork + theta[j] * c.backwardCalls;
    bwd.grad[i] += c.backwardWork;
    bwd.grad[j] += c.backwardCalls;
  }
  const comm = new Map<string, Valued>();
  const blocking = zero(p);
  const overlappable = zero(p);
  for (const g of f.comm) {
    // Several axes at once use the slowest link: the largest 1/bandwidth and the largest latency.
    let iu = -1;
    let il = -1;
    for (const a of g.axes) {
      const u = space.invBandwidth.get(a)!;
      const l = space.latency.get(a)!;
      if (iu < 0 || theta[u] > theta[iu]) iu = u;
      if (il < 0 || theta[l] > theta[il]) il = l;
    }
    const t = zero(p);
    t.value = g.sent * theta[iu] + g.steps * theta[il];
    t.grad[iu] += g.sent;
    t.grad[il] += g.steps;
    addInto(g.overlappable ? overlappable : blocking, t);
    const key = g.axes.join('+');
    const acc = comm.get(key) ?? zero(p);
    addInto(acc, t);
    comm.set(key, acc);
  }
  const o = space.overlap;
  const step = zero(p);
  addInto(step, total);
  addInto(step, blocking);
  const hidden = theta[o] * bwd.value;
  if (overlappable.value - hidden > 0) {
    addInto(step, overlappable);
    addInto(step, bwd, -theta[o]);
    step.grad[o] -= bwd.value;
  }
  const scale = 1 + f.bubble;
  step.value *= scale;
  for (let i = 0; i < p; i++) step.grad[i] *= scale;
  return { step, compute, comm };
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
