import type { DimName } from '../model/graph.js';
import { tf } from './backend.js';
import type { Local } from './shard.js';

/**
 * Named-dimension kernels on tfjs tensors. The same functions serve the devices (on local
 * blocks) and the reference run (on global tensors, under tfjs autograd).
 */
type Dims = readonly DimName[];

export function toTensor(x: Local): tf.Tensor {
  return tf.tensor(x.data, [...x.shape], 'float32');
}

/** Run a tfjs computation and bring its result back as a device-local block. */
export function run(dims: Dims, f: () => tf.Tensor): Local {
  const t = tf.tidy(f);
  const data = t.dataSync() as Float32Array;
  const shape = t.shape;
  t.dispose();
  return { dims, shape, data: data instanceof Float32Array ? data : Float32Array.from(data) };
}

/** Sum out the dimensions of x not in keep; returns the tensor and its remaining dims (x's order). */
function sumOut(x: tf.Tensor, dims: Dims, keep: (d: DimName) => boolean): [tf.Tensor, DimName[]] {
  const axes: number[] = [];
  const rest: DimName[] = [];
  dims.forEach((d, i) => (keep(d) ? rest.push(d) : axes.push(i)));
  return [axes.length ? tf.sum(x, axes) : x, rest];
}

function transposeTo(x: tf.Tensor, dims: Dims, order: Dims): tf.Tensor {
  const perm = order.map((d) => dims.indexOf(d));
  return perm.every((p, i) => p === i) ? x : tf.transpose(x, perm);
}

/**
 * Einsum of two named tensors: output = Σ over dims not in outDims of a·b (dims matched by name).
 * `loopBatch` runs a batched product as one 2-D matMul per batch entry: tfjs-wasm's batched
 * matMul is its slow path (measured on this machine, 2026-12-05: 32 blocks of 128x64x128 take
 * 30 ms batched, 5.7 ms as 2-D products), and slicing a tensor costs more than the product, so
 * the blocks are cut from the data.
 * Only the devices use it: it reads data back, which tfjs autograd (the reference run) cannot follow.
 */
export function einsum(a: tf.Tensor, aDims: Dims, b: tf.Tensor, bDims: Dims, outDims: Dims, loopBatch = false): tf.Tensor {
  let [a1, ad] = sumOut(a, aDims, (d) => bDims.includes(d) || outDims.includes(d));
  let [b1, bd] = sumOut(b, bDims, (d) => ad.includes(d) || outDims.includes(d));
  const batch = outDims.filter((d) => ad.includes(d) && bd.includes(d));
  const fa = outDims.filter((d) => ad.includes(d) && !bd.includes(d));
  const fb = outDims.filter((d) => bd.includes(d) && !ad.includes(d));
  const con = ad.filter((d) => bd.includes(d) && !outDims.includes(d));
  const size = (x: tf.Tensor, dims: Dims, ds: Dims) => ds.reduce((s, d) => s * x.shape[dims.indexOf(d)], 1);
  const sizes = (x: tf.Tensor, dims: Dims, ds: Dims) => ds.map((d) => x.shape[dims.indexOf(d)]);
  const B = size(a1, ad, batch), FA = size(a1, ad, fa), FB = size(b1, bd, fb), C = size(a1, ad, con);
  const outShape = [...sizes(a1, ad, batch), ...sizes(a1, ad, fa), ...sizes(b1, bd, fb)];
  a1 = tf.reshape(transposeTo(a1, ad, [...batch, ...fa, ...con]), [B, FA, C]);
  b1 = tf.reshape(transposeTo(b1, bd, [...batch, ...con, ...fb]), [B, C, FB]);
  const r = tf.reshape(loopBatch && B > 1 ? loopMatMul(a1, b1, B, FA, C, FB) : tf.matMul(a1, b1), outShape);
  return transposeTo(r, [...batch, ...fa, ...fb], outDims);
}

/** [B, m, k] × [B, k, n] as B 2-D products on blocks of the operands' data. */
function loopMatMul(a: tf.Tensor, b: tf.Tensor, B: number, m: number, k: number, n: number): tf.Tensor {
  const ad = a.dataSync() as Float32Array, bd = b.dataSync() as Float32Array;
  const out: tf.Tensor[] = [];
  for (let i = 0; i < B; i++) {
    out.push(tf.matMul(tf.tensor2d(ad.subarray(i * m * k, (i + 1) * m * k), [m, k]), tf.tensor2d(bd.subarray(i * k * n, (i + 1) * k * n), [k, n])));
  }
  return tf.stack(out);
}

/** Reshape/transpose x (dims a subset of target's) so that it broadcasts against target dims. */
export function align(x: tf.Tensor, dims: Dims, target: Dims): tf.Tensor {
  const order = target.filter((d) => dims.includes(d));
  const t = transposeTo(x, dims, order);
  const shape = target.map((d) => (dims.includes(d) ? x.shape[dims.indexOf(d)] : 1));
  return tf.reshape(t, shape);
}

/** Sum x over the dims not in `to`, returned in `to`'s order. */
export function reduceTo(x: tf.Tensor, dims: Dims, to: Dims): tf.Tensor {
  const [s, rest] = sumOut(x, dims, (d) => to.includes(d));
  return transposeTo(s, rest, to);
}

const GELU_C = Math.sqrt(2 / Math.PI);

/**
 * GELU, tanh approximation (Hendrycks and Gimpel 2016), written x·σ(2u) = ½x(1 + tanh u): the
 * same function, but a dead unit's tiny output keeps its relative precision in fp32 (1 + tanh u
 * cancels), which keeps its weight gradient comparable across layouts.
 */
export function gelu(x: tf.Tensor): tf.Tensor {
  return tf.mul(x, tf.sigmoid(tf.mul(2 * GELU_C, tf.add(x, tf.mul(0.044715, tf.mul(x, tf.mul(x, x)))))));
}

/** d gelu(x) / dx = s + x·s(1 − s)·2u′, with s = σ(2u). */
export function geluGrad(x: tf.Tensor): tf.Tensor {
  const x2 = tf.mul(x, x);
  const s = tf.sigmoid(tf.mul(2 * GELU_C, tf.add(x, tf.mul(0.044715, tf.mul(x2, x)))));
  const du = tf.mul(2 * GELU_C, tf.add(1, tf.mul(3 * 0.044715, x2)));
  return tf.add(s, tf.mul(tf.mul(x, tf.mul(s, tf.sub(1, s))), du));
}

export function silu(x: tf.Tensor): tf.Tensor {
  return tf.mul(x, tf.sigmoid(x));
}

export function siluGrad(x: tf.Tensor): tf.Tensor {
  const s = tf.sigmoid(x);
  return tf.mul(s, tf.add(1, tf.mul(x, tf.sub(1, s))));
}

/** Added to masked attention logits: finite, so a row wholly masked on one device stays a number. */
export const MASKED = -1e9;
export const LN_EPS = 1e-5;
export const DROPOUT_KEEP = 0.9;
export const ROTARY_BASE = 10000;
