import { InputError } from '../errors.js';
import { axisLink } from '../cost/price.js';
import { validateProfile, type HardwareProfile, type Link } from '../cost/profile.js';
import { axisIndex } from '../mesh/mesh.js';
import { featuresOf, type Features } from './features.js';
import { fitPhysics } from './physics.js';
import { inProfileUnits, makeSpace, predict, toProfile, type ParamSpace } from './model.js';
import { robustFit, unidentifiable, type LsqProblem } from './solve.js';
import type { FitSummary, Measurement } from './types.js';
import { OP_CLASSES } from './types.js';

/** A row's observations: its step time, and each component time it measured. */
interface Observation {
  readonly row: number;
  readonly what: { type: 'step' } | { type: 'compute'; klass: (typeof OP_CLASSES)[number] } | { type: 'comm'; key: string };
  readonly measured: number;
}

/**
 * A truncated quadratic: residuals beyond 10% count as 10%. Compares fits from different starts
 * without letting an outlier row decide, nor letting a fit that leaves a few rows far off win.
 */
function trimmedCost(r: Float64Array): number {
  let s = 0;
  for (const x of r) s += Math.min(x * x, 0.01);
  return s;
}

/** Choices a user (or an experiment) makes about the fit. */
export interface FitOptions {
  /** Parameters to keep at the base value: names (`latency.rows`) or groups (`efficiencyHalfWork`, `overlap`). */
  readonly hold?: readonly string[];
  /**
   * `classes` (the default): efficiency per op class and a link per mesh axis, fitted on a
   * linearisation of the step time (fits traces with per-class times). `physics`: the profile's
   * hardware constants fitted through the cost model itself (physics.ts), which carry over to
   * other models and meshes (what the presets are fitted with).
   */
  readonly method?: 'classes' | 'physics';
}

export interface FitResult {
  readonly profile: HardwareProfile;
  readonly summary: FitSummary;
}

/** Robust weight below which a row counts as an outlier in the report. */
const OUTLIER_WEIGHT = 0.05;

function observationsOf(rows: readonly Measurement[]): Observation[] {
  const obs: Observation[] = [];
  rows.forEach((m, row) => {
    obs.push({ row, what: { type: 'step' }, measured: m.stepTime });
    for (const k of OP_CLASSES) {
      const v = m.components.compute[k];
      if (v !== undefined) obs.push({ row, what: { type: 'compute', klass: k }, measured: v });
    }
    for (const [key, v] of Object.entries(m.components.comm)) obs.push({ row, what: { type: 'comm', key }, measured: v });
  });
  return obs;
}

/** Every axis the rows communicate over, with its link in the base profile (on the first mesh that uses it). */
function axesOf(rows: readonly Measurement[], features: readonly Features[], base: HardwareProfile): Map<string, Link> {
  const links = new Map<string, Link>();
  rows.forEach((m, i) => {
    for (const g of features[i].comm) for (const a of g.axes) if (!links.has(a)) links.set(a, axisLink(base, m.mesh, axisIndex(m.mesh, a)));
    for (const key of Object.keys(m.components.comm)) for (const a of key.split('+')) if (!links.has(a)) links.set(a, axisLink(base, m.mesh, axisIndex(m.mesh, a)));
  });
  return links;
}

/** The set-up of a fit: space, features, observations, and which parameters the rows cannot determine. */
export interface FitSetup {
  readonly space: ParamSpace;
  readonly features: Features[];
  readonly obs: Observation[];
  readonly problem: LsqProblem;
  readonly start: Float64Array;
  readonly fixed: boolean[];
  /** Parameters the rows determine. */
  readonly free: number;
}

export function setupFit(rows: readonly Measurement[], base: HardwareProfile, opts: FitOptions = {}): FitSetup {
  const features = rows.map((m) => featuresOf(m.program, base));
  const space = makeSpace(base, axesOf(rows, features, base));
  const obs = observationsOf(rows);
  const m = space.defs.length;
  const hold = opts.hold ?? [];
  const fixed = space.defs.map((d) => hold.some((h) => d.name === h || d.name.startsWith(`${h}.`)));
  const evaluate = (theta: Float64Array) => {
    const preds = features.map((f) => predict(f, theta, space));
    const r = new Float64Array(obs.length);
    const J: Float64Array[] = [];
    obs.forEach((o, i) => {
      const p = preds[o.row];
      const v = o.what.type === 'step' ? p.step : o.what.type === 'compute' ? p.compute[o.what.klass] : p.comm.get(o.what.key) ?? { value: 0, grad: new Float64Array(m) };
      // Relative error: step times span orders of magnitude across models and meshes.
      r[i] = (v.value - o.measured) / o.measured;
      J.push(v.grad.map((g) => g / o.measured));
    });
    return { r, J };
  };
  const start = Float64Array.from(space.defs, (d) => d.base);
  // Identifiability is judged with nothing hidden (overlap 0), where every term shows in the step.
  const probe = Float64Array.from(start);
  probe[space.overlap] = 0;
  const held = unidentifiable(evaluate(probe).J, fixed, space.defs.map((d) => d.priority));
  for (const j of held) fixed[j] = true;
  const problem: LsqProblem = {
    lo: Float64Array.from(space.defs, (d) => d.lo),
    hi: Float64Array.from(space.defs, (d) => d.hi),
    fixed,
    evaluate,
  };
  return { space, features, obs, problem, start, fixed, free: fixed.filter((f) => !f).length };
}

export function tooFewMessage(observations: number, least: number, rows: number, free: number, names: string[]): string {
  return `too few measurements to calibrate: ${rows} rows give ${observations} observations (step times plus per-class and per-axis times), ` +
    `${least} once a plan is left out, for ${free} parameters (${names.join(', ')}); every leave-one-plan-out fit needs at least ${free + 1}. ` +
    'Add rows with other plans or meshes, or per-op times (traces carry them), rather than overfit.';
}

/** Fit a profile to the rows, starting from (and falling back to) the base profile. */
export function fitProfile(rows: readonly Measurement[], base: HardwareProfile, opts: FitOptions = {}, setup?: FitSetup): FitResult {
  if (opts.method === 'physics') return fitPhysics(rows, base, opts.hold);
  const { space, obs, problem, start, fixed, free } = setup ?? setupFit(rows, base, opts);
  if (obs.length < free + 1) {
    throw new InputError(tooFewMessage(obs.length, obs.length, rows.length, free, space.defs.filter((_, j) => !fixed[j]).map((d) => d.name)));
  }
  // The exposure max(0, ·) is flat where communication hides entirely: start the overlap from the
  // base, from 0 (everything exposed) and half way, and keep the fit that explains the rows best.
  let res = robustFit(problem, start);
  for (const o of [0, 0.5]) {
    if (fixed[space.overlap] || o === start[space.overlap]) continue;
    const s = Float64Array.from(start);
    s[space.overlap] = o;
    const alt = robustFit(problem, s);
    if (trimmedCost(alt.residuals) < trimmedCost(res.residuals) * (1 - 1e-9)) res = alt;
  }
  const profile = validateProfile(toProfile(base, space, res.theta, fixed), 'calibrated profile');
  const outliers = new Map<number, number>();
  obs.forEach((o, i) => {
    if (res.weights[i] < OUTLIER_WEIGHT && o.what.type === 'step') outliers.set(o.row, res.residuals[i]);
  });
  let inSample = 0;
  let steps = 0;
  obs.forEach((o, i) => {
    if (o.what.type !== 'step') return;
    inSample += Math.abs(res.residuals[i]);
    steps++;
  });
  const summary: FitSummary = {
    parameters: space.defs.map((d, j) => ({
      name: d.name, base: inProfileUnits(space, start, j), fitted: inProfileUnits(space, fixed[j] ? start : res.theta, j), fixed: fixed[j],
    })),
    outliers: [...outliers].map(([row, e]) => ({ ...rows[row].source, relativeError: e })),
    inSampleMape: inSample / steps,
    observations: obs.length,
    iterations: res.iterations,
  };
  return { profile, summary };
}
