import { Matrix, SingularValueDecomposition, solve } from 'ml-matrix';

/**
 * A nonlinear least-squares problem in relative residuals: observation i measured y_i of a
 * quantity its group g predicts as v_g(θ) (rows of one plan share every prediction), so
 * r_i = (v_g − y_i)/y_i with gradient ∇v_g / y_i. Robust weights are per observation; the
 * linearised system sums over each group's observations, so a step costs O(groups), not O(rows).
 */
export interface LsqProblem {
  readonly lo: Float64Array;
  readonly hi: Float64Array;
  /** Parameters held at their starting value. */
  readonly fixed: readonly boolean[];
  /** Observation i's group. */
  readonly groupOf: Int32Array;
  readonly measured: Float64Array;
  readonly groups: number;
  /** Each group's prediction and its gradient (read `grad` only when needed: it may be worked out on demand). */
  predict(theta: Float64Array): { readonly value: Float64Array; readonly grad: Float64Array[] };
}

/** Relative residuals of every observation at θ, with the groups' gradients (passed through lazily). */
export function evaluate(p: LsqProblem, theta: Float64Array): { r: Float64Array; readonly grad: Float64Array[] } {
  const pred = p.predict(theta);
  const value = pred.value;
  const n = p.measured.length;
  const r = new Float64Array(n);
  for (let i = 0; i < n; i++) r[i] = (value[p.groupOf[i]] - p.measured[i]) / p.measured[i];
  return { r, get grad() { return pred.grad; } };
}

/**
 * Σ_i w_i (r_i + J_i·δ)² is, per group, A_g (∇v_g·δ + G_g/A_g)² plus a constant, with
 * A_g = Σ w_i / y_i² and G_g = Σ w_i r_i / y_i: one least-squares row per group.
 */
function groupSums(p: LsqProblem, r: Float64Array, w: Float64Array): { A: Float64Array; G: Float64Array } {
  const A = new Float64Array(p.groups);
  const G = new Float64Array(p.groups);
  for (let i = 0; i < r.length; i++) {
    const g = p.groupOf[i];
    const y = p.measured[i];
    A[g] += w[i] / (y * y);
    G[g] += (w[i] * r[i]) / y;
  }
  return { A, G };
}

/** The groups' rows of the weighted Jacobian, √A_g ∇v_g (its JᵀWJ is the observations'). */
export function groupJacobian(p: LsqProblem, theta: Float64Array, w?: Float64Array): Float64Array[] {
  const { r, grad } = evaluate(p, theta);
  const { A } = groupSums(p, r, w ?? new Float64Array(r.length).fill(1));
  return grad.map((g, k) => g.map((x) => Math.sqrt(A[k]) * x));
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
  let { r, grad } = evaluate(p, theta);
  let c = cost(r, w);
  let lambda = 1e-3;
  let it = 0;
  const n = p.groups;
  for (; it < maxIter; it++) {
    const m = theta.length;
    const { A: sumA, G: sumG } = groupSums(p, r, w);
    const g = new Float64Array(m);
    const norm = new Float64Array(m);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < m; j++) {
        g[j] += sumG[i] * grad[i][j];
        norm[j] += sumA[i] * grad[i][j] * grad[i][j];
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
        const sa = Math.sqrt(sumA[i]);
        if (sa === 0) continue;
        for (let k = 0; k < free.length; k++) A.set(i, k, (sa * grad[i][free[k]]) / d[k]);
        b.set(i, 0, -sumG[i] / sa);
      }
      for (let k = 0; k < free.length; k++) A.set(n + k, k, Math.sqrt(lambda));
      const step = solve(A, b);
      const next = Float64Array.from(theta);
      for (let k = 0; k < free.length; k++) {
        const j = free[k];
        next[j] = clip(theta[j] + step.get(k, 0) / d[k], p.lo[j], p.hi[j]);
      }
      const e = evaluate(p, next);
      const cn = cost(e.r, w);
      if (Number.isFinite(cn) && cn < c) {
        const gain = c - cn;
        theta = next;
        r = e.r;
        grad = e.grad;
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

/** Robust scale of relative residuals (MAD), floored: exact synthetic data must not make every error an outlier. */
function robustScale(r: Float64Array, floor: number): number {
  const abs = new Float64Array(r.length);
  for (let i = 0; i < r.length; i++) abs[i] = Math.abs(r[i]);
  abs.sort();
  const h = abs.length >> 1;
  const median = abs.length % 2 ? abs[h] : (abs[h - 1] + abs[h]) / 2;
  return Math.max(1.4826 * median, floor);
}

/**
 * Robust fit by iteratively reweighted least squares: Huber weights from a least-squares start,
 * then Tukey's bisquare from the Huber solution, which gives a gross outlier no weight at all.
 */
export function robustFit(p: LsqProblem, theta0: Float64Array, opts: { scaleFloor?: number } = {}): LsqResult {
  const floor = opts.scaleFloor ?? 0.01;
  const n = p.measured.length;
  let w = new Float64Array(n).fill(1);
  let { theta, iterations } = boundedLm(p, theta0, w);
  const rounds: ['huber' | 'bisquare', number][] = [['huber', 10], ['bisquare', 10]];
  for (const [kind, count] of rounds) {
    for (let k = 0; k < count; k++) {
      const { r } = evaluate(p, theta);
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
  return { theta, weights: w, residuals: evaluate(p, theta).r, iterations };
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
    if (sv[kmin] > tol * sv.reduce((a, b) => Math.max(a, b), 0)) return held;
    let pick = -1;
    for (let k = 0; k < cols.length; k++) {
      if (Math.abs(V.get(k, kmin)) < 0.1) continue;
      if (pick < 0 || priority[cols[k]] < priority[cols[pick]]) pick = k;
    }
    f[cols[pick]] = true;
    held.push(cols[pick]);
  }
}
