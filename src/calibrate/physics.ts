import { InputError } from '../errors.js';
import { price } from '../cost/price.js';
import { validateProfile, type HardwareProfile, type Level } from '../cost/profile.js';
import { innerSize } from '../mesh/mesh.js';
import { boundedLm, evaluate, type LsqProblem } from './solve.js';
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

function withLevel(p: HardwareProfile, i: number, f: (l: Level) => Level): HardwareProfile {
  return { ...p, levels: p.levels.map((l, j) => (j === i ? f(l) : l)) };
}

/** The levels any row's collectives run on (the first level that holds each axis's span). */
function levelsUsed(rows: readonly Measurement[], base: HardwareProfile): number[] {
  const used = new Set<number>();
  for (const m of rows) {
    for (let a = 0; a < m.mesh.axes.length; a++) {
      if (m.mesh.axes[a].size <= 1) continue;
      const span = innerSize(m.mesh, a) * m.mesh.axes[a].size;
      const i = base.levels.findIndex((l) => span <= l.devices);
      used.add(i < 0 ? base.levels.length - 1 : i);
    }
  }
  return [...used].sort();
}

function paramsFor(rows: readonly Measurement[], base: HardwareProfile): Param[] {
  const eff = (k: 'matmul' | 'elementwise'): Param => ({
    name: `efficiency.${k}`, lo: 0.05, hi: 1, base: base.efficiency[k], log: true, scale: 1,
    get: (p) => p.efficiency[k],
    // The other memory-bound classes keep their ratio to elementwise.
    set: (p, v) => ({
      ...p, efficiency: k === 'matmul' ? { ...p.efficiency, matmul: v } : {
        ...p.efficiency, elementwise: v,
        softmax: Math.min(1, (base.efficiency.softmax * v) / base.efficiency.elementwise),
        reduction: Math.min(1, (base.efficiency.reduction * v) / base.efficiency.elementwise),
      },
    }),
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
  for (const i of levelsUsed(rows, base)) {
    const name = base.levels[i].name;
    const e0 = base.levels[i].link.efficiency?.allreduce ?? 1;
    out.push({
      name: `levels.${name}.efficiency`, lo: 0.05, hi: 1, base: e0, log: true, scale: 1,
      get: (p) => p.levels[i].link.efficiency?.allreduce ?? 1,
      set: (p, v) => withLevel(p, i, (l) => ({ ...l, link: { ...l.link, efficiency: { allreduce: v, allgather: v, 'reduce-scatter': v, 'all-to-all': v, send: v } } })),
    });
    out.push({
      name: `levels.${name}.latency`, lo: 1e-8, hi: 1e-2, base: Math.max(1e-8, base.levels[i].link.latency), log: true, scale: 1,
      get: (p) => p.levels[i].link.latency,
      set: (p, v) => withLevel(p, i, (l) => ({ ...l, link: { ...l.link, latency: v } })),
    });
  }
  return out;
}

export interface PhysicsFit {
  readonly profile: HardwareProfile;
  readonly summary: FitSummary;
}

/** Fit a profile's physical constants to rows of measured step times (relative errors, robust weights). */
export function fitPhysics(rows: readonly Measurement[], base: HardwareProfile, hold: readonly string[] = []): PhysicsFit {
  if (rows.length === 0) throw new InputError('no usable rows to fit a profile to');
  const params = paramsFor(rows, base).filter((p) => !hold.some((h) => p.name === h || p.name.startsWith(`${h}.`)));
  const profileOf = (theta: Float64Array) => params.reduce((p, q, j) => q.set(p, theta[j]), base);
  // Each row is its own group (relative error of its priced step); each prior a group measured as 1,
  // predicted as 1 + its penalty, so that its residual is the penalty itself.
  const n = rows.length + params.length;
  const values = (theta: Float64Array): Float64Array => {
    const p = profileOf(theta);
    const v = new Float64Array(n);
    rows.forEach((m, i) => { v[i] = price(m.program, p).time.step; });
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
  const lm = boundedLm(problem, start, w);
  const { r } = evaluate(problem, lm.theta);
  const res = { theta: lm.theta, residuals: r, weights: w, iterations: lm.iterations };
  const profile = validateProfile(profileOf(res.theta), 'calibrated profile');
  let inSample = 0;
  for (let i = 0; i < rows.length; i++) inSample += Math.abs(res.residuals[i]);
  const outliers = rows.flatMap((m, i) => (res.weights[i] < 0.05 ? [{ ...m.source, relativeError: res.residuals[i] }] : []));
  return {
    profile,
    summary: {
      parameters: params.map((q, j) => ({ name: q.name, base: q.base, fitted: res.theta[j], fixed: false })),
      outliers, inSampleMape: inSample / rows.length, observations: rows.length, iterations: res.iterations,
    },
  };
}
