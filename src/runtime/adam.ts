/** Adam (Kingma and Ba 2015) with bias correction; the runtime and the reference share it. */
export interface AdamConfig {
  readonly lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
}

export const DEFAULT_ADAM: AdamConfig = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8 };

/** Update p in place from gradient g at step t (1-based), with moments m and v. */
export function adamUpdate(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, t: number, c: AdamConfig): void {
  const b1 = 1 - Math.pow(c.beta1, t), b2 = 1 - Math.pow(c.beta2, t);
  for (let i = 0; i < p.length; i++) {
    m[i] = c.beta1 * m[i] + (1 - c.beta1) * g[i];
    v[i] = c.beta2 * v[i] + (1 - c.beta2) * g[i] * g[i];
    p[i] -= (c.lr * (m[i] / b1)) / (Math.sqrt(v[i] / b2) + c.eps);
  }
}
