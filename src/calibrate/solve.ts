import { Matrix, SingularValueDecomposition, solve } from 'ml-matrix';

/**
 * A nonlinear least-squares problem in residual form: observation i has residual r_i(θ) and
 * gradient J_i(θ), and belongs to row rowOf[i] (robust weights are per observation).
 */
export interface LsqProblem {
  readonly lo: Float64Array;
  readonly hi: Float64Array;
  /** Parameters held at their starting value. */
  readonly fixed: readonly boolean[];
  evaluate(theta: Float64Array): { r: Float64Array; J: Float64Array[] };
}

export interface LsqResult {
  readonly theta: Float64Array;
  /** Final robust weight of each observation (1 = full, 0 = rejected). */
  readonly weights: Float64Array;
  readonly residuals: Float64Array;
  readonly iterations: number;
}

const clip = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));

function cost(r: Float64Array, w: Float64Array): number {
  let s = 0;
  for (let i = 0; i < r.length; i++) s += w[i] * r[i] * r[i];
  return s;
}

/**
 * Weighted least squares under box bounds by projected Levenberg–Marquardt: each step solves the
 * damped, column-scaled linearisation (ml-matrix's QR least squares) over the parameters not held
 * at a bound by the gradient, then projects onto the box.
 */
export function boundedLm(p: LsqProblem, theta0: Float64Array, w: Float64Array, maxIter = 200): { theta: Float64Array; iterations: number } {
  let theta = Float64Array.from(theta0, (v, j) => clip(v, p.lo[j], p.hi[j]));
  let { r, J } = p.evaluate(theta);
  let c = cost(r, w);
  let lambda = 1e-3;
  let it = 0;
  const n = r.length;
  for (; it < maxIter; it++) {
    const m = theta.length;
    const g = new Float64Array(m);
    const norm = new Float64Array(m);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < m; j++) {
        g[j] += w[i] * r[i] * J[i][j];
        norm[j] += w[i] * J[i][j] * J[i][j];
      }
    }
    const free: number[] = [];
    for (let j = 0; j < m; j++) {
      if (p.fixed[j] || norm[j] === 0) continue;
      if (theta[j] <= p.lo[j] && g[j] > 0) continue;
      if (theta[j] >= p.hi[j] && g[j] < 0) continue;
      free.push(j);
    }
    if (free.length === 0) break;
    const d = free.map((j) => Math.sqrt(norm[j]));
    let improved = false;
    // With the columns scaled to unit norm, a damping of 1e6 allows only negligible steps: converged.
    while (lambda < 1e6) {
      const A = new Matrix(n + free.length, free.length);
      const b = new Matrix(n + free.length, 1);
      for (let i = 0; i < n; i++) {
        const sw = Math.sqrt(w[i]);
        for (let k = 0; k < free.length; k++) A.set(i, k, (sw * J[i][free[k]]) / d[k]);
        b.set(i, 0, -sw * r[i]);
      }
      for (let k = 0; k < free.length; k++) A.set(n + k, k, Math.sqrt(lambda));
      const step = solve(A, b);
      const next = Float64Array.from(theta);
      for (let k = 0; k < free.length; k++) {
        const j = free[k];
        next[j] = clip(theta[j] + step.get(k, 0) / d[k], p.lo[j], p.hi[j]);
      }
      const e = p.evaluate(next);
      const cn = cost(e.r, w);
      if (Number.isFinite(cn) && cn < c) {
        const gain = c - cn;
        theta = next;
        r = e.r;
        J = e.J;
        c = cn;
        lambda = Math.max(lambda / 3, 1e-12);
        // Converged when a step gains less than a part in 1e10 of the cost (or the cost is ~0).
        improved = gain > 1e-10 * c && c > 1e-28;
        break;
      }
      lambda *= 4;
    }
    if (!improved) break;
  }
  return { theta, iterations: it };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
}

/** Robust scale of relative residuals (MAD), floored: exact synthetic data must not make every error an outlier. */
function robustScale(r: Float64Array, floor: number): number {
  const abs = Array.from(r, Math.abs);
  return Math.max(1.4826 * median(abs), floor);
}

/**
 * Robust fit by iteratively reweighted least squares: Huber weights from a least-squares start,
 * then Tukey's bisquare from the Huber solution, which gives a gross outlier no weight at all.
 */
export function robustFit(p: LsqProblem, theta0: Float64Array, opts: { scaleFloor?: number } = {}): LsqResult {
  const floor = opts.scaleFloor ?? 0.01;
  const n = p.evaluate(theta0).r.length;
  let w = new Float64Array(n).fill(1);
  let { theta, iterations } = boundedLm(p, theta0, w);
  const rounds: ['huber' | 'bisquare', number][] = [['huber', 10], ['bisquare', 10]];
  for (const [kind, count] of rounds) {
    for (let k = 0; k < count; k++) {
      const { r } = p.evaluate(theta);
      const s = robustScale(r, floor);
      const next = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        const u = Math.abs(r[i]) / s;
        if (kind === 'huber') next[i] = u <= 1.345 ? 1 : 1.345 / u;
        else next[i] = u < 4.685 ? (1 - (u / 4.685) ** 2) ** 2 : 0;
      }
      const res = boundedLm(p, theta, next);
      iterations += res.iterations;
      const moved = next.some((v, i) => Math.abs(v - w[i]) > 1e-3);
      theta = res.theta;
      w = next;
      if (!moved) break;
    }
  }
  return { theta, weights: w, residuals: p.evaluate(theta).r, iterations };
}

/**
 * Parameters the observations cannot tell apart: repeatedly take the direction of the smallest
 * singular value of the column-normalised Jacobian and hold the lowest-priority parameter in it.
 */
export function unidentifiable(J: Float64Array[], fixed: boolean[], priority: readonly number[], tol = 1e-7): number[] {
  const held: number[] = [];
  const m = fixed.length;
  const f = [...fixed];
  for (;;) {
    const cols: number[] = [];
    for (let j = 0; j < m; j++) {
      if (f[j]) continue;
      let s = 0;
      for (const row of J) s += row[j] * row[j];
      if (s === 0) {
        f[j] = true;
        held.push(j);
      } else cols.push(j);
    }
    if (cols.length === 0 || J.length === 0) return held;
    const norms = cols.map((j) => Math.sqrt(J.reduce((s, row) => s + row[j] * row[j], 0)));
    const A = new Matrix(Math.max(J.length, cols.length), cols.length);
    J.forEach((row, i) => cols.forEach((j, k) => A.set(i, k, row[j] / norms[k])));
    const svd = new SingularValueDecomposition(A, { computeLeftSingularVectors: false, autoTranspose: false });
    const sv = svd.diagonal;
    const V = svd.rightSingularVectors;
    let kmin = 0;
    for (let k = 1; k < sv.length; k++) if (sv[k] < sv[kmin]) kmin = k;
    if (sv[kmin] > tol * Math.max(...sv)) return held;
    let pick = -1;
    for (let k = 0; k < cols.length; k++) {
      if (Math.abs(V.get(k, kmin)) < 0.1) continue;
      if (pick < 0 || priority[cols[k]] < priority[cols[pick]]) pick = k;
    }
    f[cols[pick]] = true;
    held.push(cols[pick]);
  }
}
