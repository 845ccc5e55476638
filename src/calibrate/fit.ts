import { InputError } from '../errors.js';
import { axisLink, priceParts } from '../cost/price.js';
import { validateProfile, type HardwareProfile, type Link } from '../cost/profile.js';
import { axisIndex } from '../mesh/mesh.js';
import type { Program } from '../lower/program.js';
import { fitPhysics, fitPhysicsFamily } from './physics.js';
import { asMeasured } from './resolve.js';
import { inProfileUnits, makeSpace, toProfile, type ParamSpace } from './model.js';
import { boundedLm, evaluate, groupJacobian, robustFit, unidentifiable, type LsqProblem } from './solve.js';
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
   * `classes` (the default): efficiency per op class and a link per mesh axis, fitted through
   * the cost model (price.ts priceParts: step, per-class and per-axis times; fits traces with
   * per-class times). `physics`: the profile's
   * hardware constants fitted through the cost model itself (physics.ts), which carry over to
   * other models and meshes (what the presets are fitted with).
   */
  readonly method?: 'classes' | 'physics';
  /**
   * Classes fit: start the free parameters from this profile (a fit of more rows) instead of the
   * base, from that one start only; held parameters stay at the base. Cross-validation's folds
   * start from the fit to all rows: they converge in a few steps to their own optimum.
   */
  readonly startFrom?: HardwareProfile;
}

export interface FitResult {
  readonly profile: HardwareProfile;
  readonly summary: FitSummary;
  /** The fitted profiles of the rows' sibling devices (Measurement.sibling), by name. */
  readonly siblings?: ReadonlyMap<string, HardwareProfile>;
}

/** The profile a row is priced under: the fitted one, or its sibling device's (fitted, when the fit gave it), as its engine runs. */
export function rowProfile(m: Measurement, fit: Pick<FitResult, 'profile' | 'siblings'>): HardwareProfile {
  return asMeasured(m, m.sibling ? fit.siblings?.get(m.sibling.name) ?? m.sibling : fit.profile);
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
function axesOf(rows: readonly Measurement[], base: HardwareProfile): Map<string, Link> {
  const links = new Map<string, Link>();
  const add = (m: Measurement, a: string) => { if (!links.has(a)) links.set(a, axisLink(base, m.mesh, axisIndex(m.mesh, a))); };
  // Every axis that has more than one device (one no collective uses has no effect on the rows,
  // so the identifiability check holds its parameters at the base).
  for (const m of rows) {
    for (const a of m.mesh.axes) if (a.size > 1) add(m, a.name);
    for (const key of Object.keys(m.components.comm)) for (const a of key.split('+')) add(m, a);
  }
  return links;
}

/** Step of a finite difference for parameter j at value v (the variables span 1e-12 to 1e9). */
function diffStep(space: ParamSpace, j: number, v: number): number {
  const t = space.defs[j].kind.type;
  const floor = t === 'kernel' ? 1 : t === 'latency' ? 1e-9 : t === 'invBandwidth' ? 1e-15 : 1e-6;
  return Math.max(Math.abs(v) * 1e-5, floor);
}

/** The set-up of a fit: space, features, observations, and which parameters the rows cannot determine. */
export interface FitSetup {
  readonly space: ParamSpace;
  readonly obs: Observation[];
  readonly problem: LsqProblem;
  readonly start: Float64Array;
  readonly fixed: boolean[];
  /** Parameters the rows determine. */
  readonly free: number;
}

export function setupFit(rows: readonly Measurement[], base: HardwareProfile, opts: FitOptions = {}): FitSetup {
  // Rows of one plan (and engine) share one program: its prediction is worked out once.
  const byProgram = new Map<Program, Map<string, number>>();
  const unique: { program: Program; engine?: Measurement['engine'] }[] = [];
  const slot = rows.map((m) => {
    let byEngine = byProgram.get(m.program);
    if (!byEngine) byProgram.set(m.program, (byEngine = new Map()));
    let k = byEngine.get(m.engine ?? '');
    if (k === undefined) {
      byEngine.set(m.engine ?? '', (k = unique.length));
      unique.push({ program: m.program, engine: m.engine });
    }
    return k;
  });
  const space = makeSpace(base, axesOf(rows, base));
  const obs = observationsOf(rows);
  const m = space.defs.length;
  const hold = opts.hold ?? [];
  const fixed = space.defs.map((d) => hold.some((h) => d.name === h || d.name.startsWith(`${h}.`)));
  // A group: one program and one kind of time. Its observations share a prediction (errors are
  // relative: step times span orders of magnitude across models and meshes).
  const groupIds = new Map<string, number>();
  const members: { program: number; what: Observation['what'] }[] = [];
  const groupOf = Int32Array.from(obs, (o) => {
    const key = `${slot[o.row]}|${o.what.type === 'step' ? 'step' : o.what.type === 'compute' ? o.what.klass : `comm:${o.what.key}`}`;
    let g = groupIds.get(key);
    if (g === undefined) {
      groupIds.set(key, (g = members.length));
      members.push({ program: slot[o.row], what: o.what });
    }
    return g;
  });
  // Every group's time as price.ts prices it under the profile theta describes (one source of
  // truth: the fit sees the cost model's own roofline, collectives, overlap and bubble).
  const none = space.defs.map(() => false);
  const valuesAt = (theta: Float64Array): Float64Array => {
    const profile = toProfile(base, space, theta, none);
    const parts = unique.map((u) => priceParts(u.program, asMeasured(u, profile)));
    return Float64Array.from(members, (g) => {
      const p = parts[g.program];
      return g.what.type === 'step' ? p.step : g.what.type === 'compute' ? p.classTime[g.what.klass] ?? 0 : p.commTime[g.what.key] ?? 0;
    });
  };
  const gradAt = (theta: Float64Array, value: Float64Array): Float64Array[] => {
    const grad = members.map(() => new Float64Array(m));
    // Forward differences (backward at the upper bound): the cost model is piecewise smooth
    // (maxima of stages, of the roofline, of the exposure).
    for (let j = 0; j < m; j++) {
      if (fixed[j]) continue;
      const h = diffStep(space, j, theta[j]);
      const to = theta[j] + h <= problem.hi[j] ? theta[j] + h : Math.max(problem.lo[j], theta[j] - h);
      if (to === theta[j]) continue;
      const t = Float64Array.from(theta);
      t[j] = to;
      const v = valuesAt(t);
      for (let k = 0; k < members.length; k++) grad[k][j] = (v[k] - value[k]) / (to - theta[j]);
    }
    return grad;
  };
  // The gradient costs 2 × parameters pricings: worked out only when the solver reads it (a
  // rejected trial step never does).
  // The solver asks again at points it has seen (each robust round starts where the last ended):
  // the last few predictions are kept, by the exact parameter values.
  const seen = new Map<string, { readonly value: Float64Array; readonly grad: Float64Array[] }>();
  const predictGroups = (theta: Float64Array) => {
    const key = Array.prototype.join.call(theta, ',');
    const hit = seen.get(key);
    if (hit) return hit;
    const at = Float64Array.from(theta);
    const value = valuesAt(at);
    let grad: Float64Array[] | undefined;
    const pred = { value, get grad() { return (grad ??= gradAt(at, value)); } };
    if (seen.size >= 8) seen.delete(seen.keys().next().value!);
    seen.set(key, pred);
    return pred;
  };
  const start = Float64Array.from(space.defs, (d) => d.base);
  // Identifiability is judged with nothing hidden (overlap 0), where every term shows in the step.
  const probe = Float64Array.from(start);
  probe[space.overlap] = 0;
  const problem: LsqProblem = {
    lo: Float64Array.from(space.defs, (d) => d.lo),
    hi: Float64Array.from(space.defs, (d) => d.hi),
    fixed,
    groupOf,
    measured: Float64Array.from(obs, (o) => o.measured),
    groups: members.length,
    predict: predictGroups,
  };
  const held = unidentifiable(groupJacobian(problem, probe), fixed, space.defs.map((d) => d.priority));
  for (const j of held) fixed[j] = true;
  return { space, obs, problem, start, fixed, free: fixed.filter((f) => !f).length };
}

export function tooFewMessage(observations: number, least: number, rows: number, free: number, names: string[]): string {
  return `too few measurements to calibrate: ${rows} rows give ${observations} observations (step times plus per-class and per-axis times), ` +
    `${least} once a plan is left out, for ${free} parameters (${names.join(', ')}); every leave-one-plan-out fit needs at least ${free + 1}. ` +
    'Add rows with other plans or meshes, or per-op times (traces carry them), rather than overfit.';
}

/** Fit a profile to the rows, starting from (and falling back to) the base profile. */
export function fitProfile(rows: readonly Measurement[], base: HardwareProfile, opts: FitOptions = {}, setup?: FitSetup): FitResult {
  const names = [...new Set(rows.flatMap((m) => (m.sibling ? [m.sibling.name] : [])))];
  if (names.length) {
    if (opts.method !== 'physics') throw new InputError(`rows measured on ${names.join(', ')} (another network of ${base.name}'s chip) are fitted with --fit physics only`);
    // One fit over the chip's networks (physics.ts fitPhysicsFamily): the base first, then each sibling.
    const bases = [base, ...names.map((n) => rows.find((m) => m.sibling?.name === n)!.sibling!)];
    const fam = fitPhysicsFamily(rows, bases, (i) => (rows[i].sibling ? 1 + names.indexOf(rows[i].sibling!.name) : 0), opts.hold);
    return { profile: fam.profiles[0], summary: fam.summary, siblings: new Map(names.map((n, j) => [n, fam.profiles[1 + j]])) };
  }
  if (opts.method === 'physics') return fitPhysics(rows, base, opts.hold);
  const { space, obs, problem, start, fixed, free } = setup ?? setupFit(rows, base, opts);
  if (obs.length < free + 1) {
    throw new InputError(tooFewMessage(obs.length, obs.length, rows.length, free, space.defs.filter((_, j) => !fixed[j]).map((d) => d.name)));
  }
  // The exposure max(0, ·) is flat where communication hides entirely: start the overlap from the
  // base, from 0 (everything exposed) and half way, and keep the fit that explains the rows best.
  let from = start;
  if (opts.startFrom) {
    const warm = makeSpace(opts.startFrom, axesOf(rows, opts.startFrom));
    from = Float64Array.from(start, (v, j) => (fixed[j] || warm.defs[j]?.name !== space.defs[j].name ? v : warm.defs[j].base));
  }
  const starts = [from];
  for (const o of [0, 0.5]) {
    if (opts.startFrom || fixed[space.overlap] || o === start[space.overlap]) continue;
    const s = Float64Array.from(start);
    s[space.overlap] = o;
    starts.push(s);
  }
  let res = robustFit(problem, from);
  for (const s of starts.slice(1)) {
    const alt = robustFit(problem, s);
    if (trimmedCost(alt.residuals) < trimmedCost(res.residuals) * (1 - 1e-9)) res = alt;
  }
  // The rows the robust fit rejected are dropped and the rest fitted again from the starts: the
  // reweighting began at a fit the outliers pulled, and may end short of the fit without them.
  if (res.weights.some((w) => w < OUTLIER_WEIGHT)) {
    const keep = Float64Array.from(res.weights, (w) => (w < OUTLIER_WEIGHT ? 0 : 1));
    const kept = (r: Float64Array) => r.reduce((a, x, i) => a + keep[i] * x * x, 0);
    for (const s0 of starts) {
      const lm = boundedLm(problem, s0, keep);
      const r = evaluate(problem, lm.theta).r;
      if (kept(r) < kept(res.residuals) * (1 - 1e-9)) res = { theta: lm.theta, weights: keep, residuals: r, iterations: res.iterations + lm.iterations };
    }
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
