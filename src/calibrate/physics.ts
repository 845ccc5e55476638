import { InputError } from '../errors.js';
import { networkLevel, price } from '../cost/price.js';
import { validateProfile, type HardwareProfile, type Level } from '../cost/profile.js';
import { runSemantics } from '../engine/index.js';
import { boundedLm, evaluate, type LsqProblem } from './solve.js';
import { asMeasured } from './resolve.js';
import type { FitSummary, Measurement } from './types.js';

/**
 * The physics fit: a handful of a profile's own constants, fitted to measured step times by
 * pricing every row with the real cost model (price.ts, the same code the estimate runs), not a
 * linear stand-in of it. What it fits are properties of the hardware that carry over to models
 * and meshes it has not seen: the GEMM efficiency curve (peak fraction and half size), the
 * memory-bound kernels' fraction of HBM bandwidth, the launch cost per kernel, each network
 * level's achieved fraction of its link, and how much of the backward hides overlappable
 * communication. A weak prior keeps each constant near its datasheet value unless the rows say
 * otherwise, so a family with few rows is not overfitted: a 20% change of a constant costs what a
 * 3.6% step-time error does (PRIOR 0.2, chosen among 0.05, 0.1 and 0.2 on bench/accuracy's
 * leave-one-model-out figures).
 */
interface Param {
  readonly name: string;
  readonly lo: number;
  readonly hi: number;
  readonly base: number;
  readonly get: (p: HardwareProfile) => number;
  readonly set: (p: HardwareProfile, v: number) => HardwareProfile;
  /** Multiplicative constants take a prior on their logarithm, the rest on their value over `scale`. */
  readonly log: boolean;
  readonly scale: number;
}

const PRIOR = 0.2;

function withLevelNamed(p: HardwareProfile, name: string, f: (l: Level) => Level): HardwareProfile {
  return p.levels.some((l) => l.name === name) ? { ...p, levels: p.levels.map((l) => (l.name === name ? f(l) : l)) } : p;
}

/** The levels any row's collectives run on (the first level of its profile that holds each axis's span), by name. */
function levelsUsed(rows: readonly Measurement[], baseOf: (i: number) => HardwareProfile): string[] {
  const used = new Set<string>();
  rows.forEach((m, r) => {
    const base = baseOf(r);
    for (let a = 0; a < m.mesh.axes.length; a++) {
      if (m.mesh.axes[a].size <= 1) continue;
      used.add(base.levels[networkLevel(base, m.mesh, a)].name);
    }
  });
  return [...used];
}

/** Per-element seconds of every kind and phase, times f. */
function scaleElementSeconds(es: NonNullable<HardwareProfile['elementSeconds']>, f: number): NonNullable<HardwareProfile['elementSeconds']> {
  return Object.fromEntries(Object.entries(es).map(([kind, x]) => [kind, x && { forward: x.forward * f, backward: x.backward * f }]));
}

/**
 * The constants to fit. The chip's (GEMM curve, memory-bound fraction, launch cost, overlap) are
 * read from the first profile and set on every profile of the family; a network level's are set on
 * every profile that has a level of that name, so that profiles of one chip on different networks
 * (DGX H100 on InfiniBand, an A3 VM on GPUDirect-TCPX) share what they share.
 */
function paramsFor(rows: readonly Measurement[], bases: readonly HardwareProfile[], baseOf: (i: number) => HardwareProfile): Param[] {
  const base = bases[0];
  const eff = (k: 'matmul' | 'elementwise'): Param => ({
    name: `efficiency.${k}`, lo: 0.05, hi: 1, base: base.efficiency[k], log: true, scale: 1,
    get: (p) => p.efficiency[k],
    // The other memory-bound classes keep their ratio to elementwise, and kinds priced per element
    // (elementSeconds) take as much longer as elementwise ops do.
    set: (p, v) => k === 'matmul' ? { ...p, efficiency: { ...p.efficiency, matmul: v } } : {
      ...p,
      efficiency: {
        ...p.efficiency, elementwise: v,
        softmax: Math.min(1, (base.efficiency.softmax * v) / base.efficiency.elementwise),
        reduction: Math.min(1, (base.efficiency.reduction * v) / base.efficiency.elementwise),
      },
      ...(p.elementSeconds ? { elementSeconds: scaleElementSeconds(p.elementSeconds, p.efficiency.elementwise / v) } : {}),
    },
  });
  const out: Param[] = [
    eff('matmul'),
    { name: 'gemmHalfSize', lo: 1, hi: 4096, base: Math.max(1, base.gemmHalfSize ?? 64), log: true, scale: 1, get: (p) => p.gemmHalfSize ?? 64, set: (p, v) => ({ ...p, gemmHalfSize: v }) },
    eff('elementwise'),
    { name: 'launchOverhead', lo: 0, hi: 1e-4, base: base.launchOverhead ?? 0, log: false, scale: 5e-6, get: (p) => p.launchOverhead ?? 0, set: (p, v) => ({ ...p, launchOverhead: v }) },
    { name: 'overlap', lo: 0, hi: 1, base: base.overlap, log: false, scale: 0.5, get: (p) => p.overlap, set: (p, v) => ({ ...p, overlap: v }) },
  ];
  // Only rows that split heads or d_ff say anything about hiding tensor-parallel collectives.
  if (rows.some((m) => m.program.layout.mask.heads || m.program.layout.mask.d_ff)) {
    out.push({ name: 'tensorParallelOverlap', lo: 0, hi: 1, base: base.tensorParallelOverlap ?? 0, log: false, scale: 0.5, get: (p) => p.tensorParallelOverlap ?? 0, set: (p, v) => ({ ...p, tensorParallelOverlap: v }) });
  }
  // Only rows an eager engine ran say how fast its kernels are against the fused ones.
  if (rows.some((m) => m.engine && runSemantics(m.engine).kernels === 'eager')) {
    out.push({ name: 'eagerCompute', lo: 0.2, hi: 1.5, base: base.eagerCompute ?? 1, log: true, scale: 1, get: (p) => p.eagerCompute ?? 1, set: (p, v) => ({ ...p, eagerCompute: v }) });
  }
  for (const name of levelsUsed(rows, baseOf)) {
    const owner = bases.find((b) => b.levels.some((l) => l.name === name))!;
    const level = (p: HardwareProfile) => (p.levels.find((l) => l.name === name) ?? owner.levels.find((l) => l.name === name))!;
    const e0 = level(owner).link.efficiency?.allreduce ?? 1;
    out.push({
      name: `levels.${name}.efficiency`, lo: 0.05, hi: 1, base: e0, log: true, scale: 1,
      get: (p) => level(p).link.efficiency?.allreduce ?? 1,
      set: (p, v) => withLevelNamed(p, name, (l) => ({ ...l, link: { ...l.link, efficiency: { allreduce: v, allgather: v, 'reduce-scatter': v, 'all-to-all': v, send: v } } })),
    });
    // How much of a network's gradient and gather traffic can hide at all is the engine's and the
    // network's (XLA's collective scheduling, NCCL streams, a TCP transport): no datasheet says it,
    // so its prior is weak (a change of 1 costs what a 8% step-time error does).
    out.push({
      name: `levels.${name}.overlap`, lo: 0, hi: 1, base: level(owner).link.overlap ?? 1, log: false, scale: 2.5,
      get: (p) => level(p).link.overlap ?? 1,
      set: (p, v) => withLevelNamed(p, name, (l) => ({ ...l, link: { ...l.link, overlap: v } })),
    });
    out.push({
      name: `levels.${name}.latency`, lo: 1e-8, hi: 1e-2, base: Math.max(1e-8, level(owner).link.latency), log: true, scale: 1,
      get: (p) => level(p).link.latency,
      set: (p, v) => withLevelNamed(p, name, (l) => ({ ...l, link: { ...l.link, latency: v } })),
    });
  }
  return out;
}

function sumSquares(r: Float64Array): number {
  let c = 0;
  for (const x of r) c += x * x;
  return c;
}

export interface PhysicsFit {
  readonly profile: HardwareProfile;
  readonly summary: FitSummary;
}

/** Fit a profile's physical constants to rows of measured step times (relative errors, robust weights). */
export function fitPhysics(rows: readonly Measurement[], base: HardwareProfile, hold: readonly string[] = []): PhysicsFit {
  const fit = fitPhysicsFamily(rows, [base], () => 0, hold);
  return { profile: fit.profiles[0], summary: fit.summary };
}

export interface FamilyFit {
  /** The fitted profile of each base, in the order given. */
  readonly profiles: readonly HardwareProfile[];
  readonly summary: FitSummary;
}

/**
 * One fit over rows measured on several profiles of one chip (each row priced under
 * `bases[baseIndex(i)]`): the chip's constants are shared, each network level's are shared by
 * the profiles that have it.
 */
export function fitPhysicsFamily(rows: readonly Measurement[], bases: readonly HardwareProfile[], baseIndex: (row: number) => number, hold: readonly string[] = []): FamilyFit {
  if (rows.length === 0) throw new InputError('no usable rows to fit a profile to');
  const base = bases[0];
  const params = paramsFor(rows, bases, (i) => bases[baseIndex(i)]).filter((p) => !hold.some((h) => p.name === h || p.name.startsWith(`${h}.`)));
  const profilesOf = (theta: Float64Array) => bases.map((b) => params.reduce((p, q, j) => q.set(p, theta[j]), b));
  const rowBase = Int32Array.from(rows, (_, i) => baseIndex(i));
  // Each row is its own group (relative error of its priced step); each prior a group measured as 1,
  // predicted as 1 + its penalty, so that its residual is the penalty itself.
  const n = rows.length + params.length;
  const values = (theta: Float64Array): Float64Array => {
    const ps = profilesOf(theta);
    const v = new Float64Array(n);
    rows.forEach((m, i) => { v[i] = price(m.program, asMeasured(m, ps[rowBase[i]])).time.step; });
    params.forEach((q, j) => {
      v[rows.length + j] = 1 + PRIOR * (q.log ? Math.log(Math.max(theta[j], 1e-12) / Math.max(q.base, 1e-12)) : (theta[j] - q.base) / q.scale);
    });
    return v;
  };
  const problem: LsqProblem = {
    lo: Float64Array.from(params, (q) => q.lo),
    hi: Float64Array.from(params, (q) => q.hi),
    fixed: params.map(() => false),
    groupOf: Int32Array.from({ length: n }, (_, i) => i),
    measured: Float64Array.from({ length: n }, (_, i) => (i < rows.length ? rows[i].stepTime : 1)),
    groups: n,
    predict(theta) {
      const value = values(theta);
      // Forward differences: the cost model is piecewise smooth (maxima of stages, of the roofline).
      // Worked out only when the solver reads it (a rejected trial step never does).
      const gradAt = () => {
        const grad = Array.from(value, () => new Float64Array(theta.length));
        for (let j = 0; j < theta.length; j++) {
          const h = Math.max(1e-6, Math.abs(theta[j]) * 1e-4) * (theta[j] + 1e-6 > problem.hi[j] ? -1 : 1);
          const t = Float64Array.from(theta);
          t[j] += h;
          const v2 = values(t);
          for (let i = 0; i < n; i++) grad[i][j] = (v2[i] - value[i]) / h;
        }
        return grad;
      };
      let grad: Float64Array[] | undefined;
      return { value, get grad() { return (grad ??= gradAt()); } };
    },
  };
  const start = Float64Array.from(params, (q) => Math.min(q.hi, Math.max(q.lo, q.get(base))));
  // Plain least squares: with a handful of rows per family a robust weighting would call any row
  // a few percent off an outlier (the prior's residuals set its scale).
  const w = new Float64Array(rows.length + params.length).fill(1);
  // Where communication hides entirely the exposure max(0, ·) is flat in the overlap: start it also
  // from 0 and half way (as the class fit does) and keep the fit that explains the rows best.
  const oi = params.findIndex((q) => q.name === 'overlap');
  const starts = [start, ...(oi < 0 ? [] : [0, 0.5].filter((o) => o !== start[oi]).map((o) => Float64Array.from(start, (v, j) => (j === oi ? o : v))))];
  let lm = boundedLm(problem, starts[0], w);
  let best = sumSquares(evaluate(problem, lm.theta).r);
  for (const s0 of starts.slice(1)) {
    const trial = boundedLm(problem, s0, w);
    const c = sumSquares(evaluate(problem, trial.theta).r);
    if (c < best) { best = c; lm = trial; }
  }
  const { r } = evaluate(problem, lm.theta);
  const res = { theta: lm.theta, residuals: r, weights: w, iterations: lm.iterations };
  const profiles = profilesOf(res.theta).map((p) => validateProfile(p, 'calibrated profile'));
  let inSample = 0;
  for (let i = 0; i < rows.length; i++) inSample += Math.abs(res.residuals[i]);
  const outliers = rows.flatMap((m, i) => (res.weights[i] < 0.05 ? [{ ...m.source, relativeError: res.residuals[i] }] : []));
  return {
    profiles,
    summary: {
      parameters: params.map((q, j) => ({ name: q.name, base: q.base, fitted: res.theta[j], fixed: false })),
      outliers, inSampleMape: inSample / rows.length, observations: rows.length, iterations: res.iterations,
    },
  };
}
