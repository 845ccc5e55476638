import { beforeAll, describe, expect, it } from 'vitest';
import type { LoweredOp } from '../src/lower/program.js';
import type { DimName, OpSpec } from '../src/model/graph.js';
import { adamUpdate, DEFAULT_ADAM } from '../src/runtime/adam.js';
import { initBackend, tf } from '../src/runtime/backend.js';
import { gelu, geluGrad, LN_EPS, silu, siluGrad } from '../src/runtime/kernels.js';
import { backward, forward } from '../src/runtime/ops.js';
import type { OpCtx } from '../src/runtime/protocol.js';
import type { Local } from '../src/runtime/shard.js';

// Oracles: each op's closed form, evaluated here in float64 (values written out were computed from the
// formula, not from the kernels), and central differences of those closed forms for the gradients.

const C = Math.sqrt(2 / Math.PI); // Hendrycks and Gimpel 2016, eq. for the tanh approximation
const geluF = (x: number) => 0.5 * x * (1 + Math.tanh(C * (x + 0.044715 * x ** 3)));
const sig = (x: number) => 1 / (1 + Math.exp(-x));
const siluF = (x: number) => x * sig(x);
const diff = (f: (x: number) => number, x: number, h = 1e-5) => (f(x + h) - f(x - h)) / (2 * h);

const apply = (k: (t: tf.Tensor) => tf.Tensor, xs: number[]) => Array.from(tf.tidy(() => k(tf.tensor1d(xs))).dataSync());
const POINTS = [-3, -1, -0.5, 0, 0.5, 1, 2, 3];

function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: number): void {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < want.length; i++) expect(Math.abs(got[i] - want[i]), `element ${i}: ${got[i]} vs ${want[i]}`).toBeLessThan(tol);
}

/** Run one op's forward (and backward for `wrt`) on one unsplit device: no collectives. */
function opOnOneDevice(spec: OpSpec, inputs: Record<string, Local>, outDims: readonly DimName[], dy?: Float32Array, wrt?: string) {
  const store = new Map<string, Local>(Object.entries(inputs));
  const given = new Map<string, Float32Array>();
  const rec = { name: spec.name, output: { id: wrt ?? spec.output, dims: wrt ? inputs[wrt].dims : outDims, shape: [] }, collectives: [], wrt, partial: [] } as unknown as LoweredOp;
  const sizes: Record<string, number> = {};
  for (const id of spec.inputs) inputs[id].dims.forEach((d, i) => (sizes[d] = inputs[id].shape[i]));
  const ctx: OpCtx = {
    rec, spec, tokens: 1, topK: 1, seq: null,
    get: (id) => store.get(id) ?? (() => { throw new Error(`no ${id}`); })(),
    set: (id, x) => void store.set(id, x),
    offset: () => 0,
    globalSize: (d) => sizes[d],
    axes: () => [],
    axesSize: () => 1,
    partialMask: () => 0,
    seed: () => 1,
    gradOut: () => dy!,
    contribute: (w, data) => void given.set(w, data),
  };
  const g = wrt ? backward(ctx) : forward(ctx);
  expect(g.next().done).toBe(true); // unsplit: the op asks for no collective
  return { out: store.get(spec.output)!, grad: wrt ? given.get(wrt)! : undefined };
}

const local = (dims: DimName[], shape: number[], data: number[]): Local => ({ dims, shape, data: Float32Array.from(data) });

beforeAll(async () => {
  await initBackend('wasm');
});

describe('activation kernels against their closed forms', () => {
  it('GELU (tanh form) at chosen points', () => {
    // 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))), from the formula in float64.
    const want = [-0.0036373920817729943, -0.15880800939172324, -0.15428599017485606, 0, 0.34571400982514394, 0.8411919906082768, 1.954597694087775, 2.996362607918227];
    expectClose(apply(gelu, POINTS), want, 2e-6);
    expectClose(want, POINTS.map(geluF), 1e-12); // the written values are the formula's
  });

  it("GELU's derivative is the closed form's slope", () => {
    expectClose(apply(geluGrad, POINTS), POINTS.map((x) => diff(geluF, x)), 2e-5);
  });

  it('SiLU = x·σ(x) and its derivative σ(x)(1 + x(1 − σ(x)))', () => {
    const xs = [-2, -1, 0, 1, 2];
    expectClose(apply(silu, xs), [-0.2384058440442351, -0.2689414213699951, 0, 0.7310585786300049, 1.7615941559557646], 2e-6);
    expectClose(apply(siluGrad, xs), [-0.09078424878489547, 0.07232948812851325, 0.5, 0.9276705118714869, 1.0907842487848955], 2e-6);
    expectClose(apply(siluGrad, xs), xs.map((x) => diff(siluF, x)), 2e-5);
  });

  it('the relu and gelu act ops and the SwiGLU op: forward and both gradients', () => {
    const x = local(['batch', 'd_ff'], [1, 4], [-1.5, -0.2, 0.3, 2]);
    const dy = Float32Array.from([1, -2, 0.5, 3]);
    for (const activation of ['relu', 'gelu'] as const) {
      const f = activation === 'relu' ? (v: number) => Math.max(0, v) : geluF;
      const spec: OpSpec = { name: 'a', kind: 'act', inputs: ['h'], output: 'a', activation, saves: ['h'] };
      expectClose(opOnOneDevice(spec, { h: x }, x.dims).out.data, [...x.data].map(f), 2e-6);
      const { grad } = opOnOneDevice(spec, { h: x, a: x }, x.dims, dy, 'h');
      expectClose(grad!, [...x.data].map((v, i) => dy[i] * diff(f, v)), 2e-5);
    }
    const gate = x, up = local(['batch', 'd_ff'], [1, 4], [0.7, -1.1, 2.5, -0.4]);
    const spec: OpSpec = { name: 's', kind: 'swiglu', inputs: ['g', 'u'], output: 'a', saves: ['g', 'u'] };
    const g = [...gate.data], u = [...up.data];
    expectClose(opOnOneDevice(spec, { g: gate, u: up }, gate.dims).out.data, g.map((v, i) => siluF(v) * u[i]), 2e-6);
    const out = local(['batch', 'd_ff'], [1, 4], [0, 0, 0, 0]);
    expectClose(opOnOneDevice(spec, { g: gate, u: up, a: out }, gate.dims, dy, 'g').grad!, g.map((v, i) => dy[i] * u[i] * diff(siluF, v)), 2e-5);
    expectClose(opOnOneDevice(spec, { g: gate, u: up, a: out }, gate.dims, dy, 'u').grad!, g.map((v, i) => dy[i] * siluF(v)), 2e-6);
  });
});

describe('normalisation kernels against their closed forms', () => {
  it('softmax of [1, 2, 3] and [1000, 1000, 1001]; its gradient p ⊙ (dy − Σ dy·p)', () => {
    const spec: OpSpec = { name: 'sm', kind: 'softmax', inputs: ['x'], output: 'p', dim: 'memory_length', saves: ['p'] };
    const x = local(['length', 'memory_length'], [2, 3], [1, 2, 3, 1000, 1000, 1001]);
    const e = Math.E;
    const a = 1 / (1 + e + e * e), b = 1 / (2 + e); // e^(x − max) over its sum, by hand
    const want = [a, e * a, e * e * a, 1 / (2 + e), 1 / (2 + e), e * b];
    expectClose(want.slice(0, 3), [0.09003057317038046, 0.24472847105479767, 0.6652409557748219], 1e-12);
    const { out } = opOnOneDevice(spec, { x }, x.dims);
    expectClose(out.data, want, 1e-6);
    const dy = Float32Array.from([1, 0, -1, 0.5, 2, 0]);
    const { grad } = opOnOneDevice(spec, { x, p: out }, x.dims, dy, 'x');
    const expected: number[] = [];
    for (let r = 0; r < 2; r++) {
      const p = want.slice(3 * r, 3 * r + 3), d = [...dy.slice(3 * r, 3 * r + 3)];
      const s = p.reduce((acc, v, i) => acc + v * d[i], 0);
      expected.push(...p.map((v, i) => v * (d[i] - s)));
    }
    expectClose(grad!, expected, 1e-6);
  });

  it('layer norm of [1, 2, 3, 4] with a scale and bias, and its gradients by central differences', () => {
    const spec: OpSpec = { name: 'ln', kind: 'layernorm', inputs: ['x', 's', 'b'], output: 'y', dim: 'd_model', saves: ['x'] };
    const xs = [1, 2, 3, 4], sc = [1, 2, 0.5, -1], bi = [0, 0.1, -0.2, 0.3];
    const lnF = (v: number[]) => {
      const m = v.reduce((a, c) => a + c) / v.length;
      const va = v.reduce((a, c) => a + (c - m) ** 2, 0) / v.length;
      return v.map((c, i) => ((c - m) / Math.sqrt(va + LN_EPS)) * sc[i] + bi[i]);
    };
    // mean 2.5, variance 1.25: x̂ = (x − 2.5)/√(1.25 + 1e-5)
    const r = 1 / Math.sqrt(1.25 + 1e-5);
    const want = [-1.5 * r, -0.5 * 2 * r + 0.1, 0.5 * 0.5 * r - 0.2, -1.5 * r + 0.3];
    expectClose(lnF(xs), want, 1e-12);
    const ins = { x: local(['batch', 'd_model'], [1, 4], xs), s: local(['d_model'], [4], sc), b: local(['d_model'], [4], bi) };
    const { out } = opOnOneDevice(spec, ins, ins.x.dims);
    expectClose(out.data, want, 2e-6);
    // The backward reads the forward's saved statistics: run forward first, in the same store.
    const dy = Float32Array.from([0.3, -1, 2, 0.7]);
    const loss = (v: number[]) => lnF(v).reduce((a, c, i) => a + c * dy[i], 0);
    const dx = xs.map((_, j) => diff((t) => loss(xs.map((c, i) => (i === j ? t : c))), xs[j], 1e-4));
    const withStats = (wrt: string) => {
      const store: Record<string, Local> = { ...ins };
      const fwd = opOnOneDevice(spec, ins, ins.x.dims);
      store.y = fwd.out;
      const k = ['batch', 'd_model'] as DimName[];
      const m = 2.5;
      store['y#mean'] = local(k, [1, 1], [m]);
      store['y#rstd'] = local(k, [1, 1], [r]);
      return opOnOneDevice(spec, store, ins.x.dims, dy, wrt).grad!;
    };
    expectClose(withStats('x'), dx, 1e-4);
    expectClose(withStats('s'), xs.map((c, i) => dy[i] * (c - 2.5) * r), 1e-5);
    expectClose(withStats('b'), [...dy], 1e-6);
  });
});

describe('Adam (Kingma and Ba 2015, Algorithm 1), one step by hand', () => {
  it('with a large gradient the bias-corrected step is lr·sign(g)', () => {
    const p = Float32Array.of(1, -2), g = Float32Array.of(0.5, -3), m = new Float32Array(2), v = new Float32Array(2);
    adamUpdate(p, g, m, v, 1, DEFAULT_ADAM);
    // m = 0.1·g, v = 0.001·g²; m̂ = g, v̂ = g²: step = lr·g/(|g| + ε)
    expectClose(m, [0.05, -0.3], 1e-7);
    expectClose(v, [0.00025, 0.009], 1e-9);
    expectClose(p, [1 - 1e-3 * 0.5 / (0.5 + 1e-8), -2 + 1e-3 * 3 / (3 + 1e-8)], 1e-7);
  });

  it('with a gradient of ε the step is lr/2: ε sits outside the square root', () => {
    const p = Float32Array.of(1), g = Float32Array.of(1e-8), m = new Float32Array(1), v = new Float32Array(1);
    adamUpdate(p, g, m, v, 1, DEFAULT_ADAM);
    // m̂ = 1e-8, √v̂ = 1e-8: step = 1e-3 · 1e-8 / (1e-8 + 1e-8) = 5e-4 (inside the root it would be 1e-7)
    expect(p[0]).toBeCloseTo(0.9995, 7);
  });

  it('a second step with other betas: the bias corrections 1 − β^t', () => {
    const c = { lr: 0.1, beta1: 0.5, beta2: 0.75, eps: 0 };
    const p = Float32Array.of(0), m = new Float32Array(1), v = new Float32Array(1);
    adamUpdate(p, Float32Array.of(2), m, v, 1, c);
    adamUpdate(p, Float32Array.of(-1), m, v, 2, c);
    // t=1: m=1, v=1, m̂=2, v̂=4, p=−0.1. t=2: m=0, v=1, m̂=0: p stays −0.1.
    // (then a third with g = 4: m = 2, v = 4.75, m̂ = 2/0.875, v̂ = 4.75/(1 − 0.421875))
    adamUpdate(p, Float32Array.of(4), m, v, 3, c);
    const mh = 2 / 0.875, vh = 4.75 / (1 - 0.421875);
    expect(p[0]).toBeCloseTo(-0.1 - 0.1 * mh / Math.sqrt(vh), 6);
  });
});
