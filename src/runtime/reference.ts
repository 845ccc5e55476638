import type { DimName, Graph } from '../model/graph.js';
import { adamUpdate, type AdamConfig } from './adam.js';
import { tf } from './backend.js';
import { registerReferenceGradients } from './gradients.js';
import { initWeight } from './init.js';
import { align, DROPOUT_KEEP, einsum, gelu, LN_EPS, MASKED, ROTARY_BASE, silu } from './kernels.js';
import { globalIndices, uniformAt } from './shard.js';

/**
 * The unsplit reference: the whole model on global tensors, gradients by tfjs autograd, the same
 * initial weights, data, dropout masks and Adam. It shares no gradient code with the devices, so
 * agreement checks their per-op gradients, collectives, microbatches, ZeRO and pipelines at once.
 */
export interface ReferenceResult {
  readonly losses: number[];
  /** Weight key (`w` or `w@layer`) → global values. */
  readonly params: Map<string, Float32Array>;
}

interface T {
  t: tf.Tensor;
  dims: readonly DimName[];
}

function weightKeys(graph: Graph): { w: string; key: string; layer: number | null }[] {
  const out: { w: string; key: string; layer: number | null }[] = [];
  for (const w of graph.weights) {
    const b = graph.blocks.find((bl) => bl.ops.some((o) => o.inputs.includes(w)))!;
    if (b.layered) for (let l = 0; l < b.repeat; l++) out.push({ w, key: `${w}@${l}`, layer: l });
    else out.push({ w, key: w, layer: null });
  }
  return out;
}

/** A constant copy: the max subtracted for stability carries no gradient (it cancels). */
function detach(t: tf.Tensor): tf.Tensor {
  return tf.tensor(t.dataSync(), t.shape);
}

function seedOf(seed: number, step: number, layer: number | null, op: string): number {
  let h = 2166136261;
  for (let i = 0; i < op.length; i++) h = Math.imul(h ^ op.charCodeAt(i), 16777619) >>> 0;
  return (seed * 7919 + step * 104729 + (layer ?? 0) * 31 + h) >>> 0;
}

/**
 * The 0/1 slot tensor [batch, length, experts, capacity] of a step's routing, on the whole batch:
 * each sequence's first choices take their experts' slots in token order, then the second
 * choices after them, and so on (Mesh-TF moe.py, GShard); a choice past an expert's capacity is dropped.
 * A token's choices are its topK most probable experts, ties to the lower index.
 */
export function slotsOf(probs: tf.Tensor, graph: Graph): Float32Array {
  const p = probs.dataSync();
  const E = graph.dimSizes.expert_unsplit, C = graph.dimSizes.expert_capacity, k = graph.spec.topK ?? 1;
  const [B, L] = probs.shape;
  const out = new Float32Array(B * L * E * C);
  for (let b = 0; b < B; b++) {
    const taken = new Array<number>(E).fill(0);
    const ranked: number[][] = [];
    for (let l = 0; l < L; l++) {
      const row = Array.from({ length: E }, (_, e) => e);
      const at = (b * L + l) * E;
      row.sort((x, y) => p[at + y] - p[at + x] || x - y);
      ranked.push(row);
    }
    for (let r = 0; r < k; r++) {
      for (let l = 0; l < L; l++) {
        const e = ranked[l][r];
        const slot = taken[e]++;
        if (slot < C) out[((b * L + l) * E + e) * C + slot] = 1;
      }
    }
  }
  return out;
}

function forwardLoss(graph: Graph, vars: Map<string, tf.Variable>, tokens: Int32Array, step: number, seed: number): tf.Scalar {
  const { spec, dimSizes } = graph;
  const B = spec.batch, L = spec.seqLen;
  const ids = new Int32Array(B * L), tgt = new Int32Array(B * L);
  for (let b = 0; b < B; b++) for (let l = 0; l < L; l++) {
    ids[b * L + l] = tokens[b * (L + 1) + l];
    tgt[b * L + l] = tokens[b * (L + 1) + l + 1];
  }
  const outer = new Map<string, T>();
  let loss: tf.Scalar | null = null;
  for (const block of graph.blocks) {
    const layers = block.layered ? block.repeat : 1;
    for (let layer = 0; layer < layers; layer++) {
      const env = new Map<string, T>();
      const L_ = block.layered ? layer : null;
      const get = (id: string): T => {
        const ts = graph.tensors.get(id)!;
        if (ts.role === 'weight') return { t: vars.get(block.layered ? `${id}@${layer}` : id)!, dims: ts.dims };
        if (ts.role === 'ids') return { t: tf.tensor(id === 'targets' ? tgt : ids, [B, L], 'int32'), dims: ts.dims };
        return env.get(id) ?? outer.get(id)!;
      };
      for (const op of block.ops) {
        const ins = op.inputs.map(get);
        const outDims = graph.tensors.get(op.output)!.dims;
        let r: T;
        switch (op.kind) {
          case 'einsum':
            r = { t: einsum(ins[0].t, ins[0].dims, ins[1].t, ins[1].dims, outDims), dims: outDims };
            break;
          case 'gather': {
            const V = dimSizes.vocab;
            const hot = tf.oneHot(tf.reshape(ins[0].t, [-1]), V);
            r = { t: tf.reshape(tf.matMul(hot, ins[1].t), [B, L, ins[1].t.shape[1]!]), dims: outDims };
            break;
          }
          case 'add':
            r = { t: tf.add(ins[0].t, align(ins[1].t, ins[1].dims, ins[0].dims)), dims: ins[0].dims };
            break;
          case 'layernorm': {
            const x = ins[0];
            const k = x.dims.indexOf(op.dim!);
            const mean = tf.mean(x.t, k, true);
            const v = tf.sub(tf.mean(tf.mul(x.t, x.t), k, true), tf.mul(mean, mean));
            const xh = tf.mul(tf.sub(x.t, mean), tf.rsqrt(tf.add(v, LN_EPS)));
            r = { t: tf.add(tf.mul(xh, align(ins[1].t, ins[1].dims, x.dims)), align(ins[2].t, ins[2].dims, x.dims)), dims: x.dims };
            break;
          }
          case 'softmax': {
            const x = ins[0];
            const k = x.dims.indexOf(op.dim!);
            const e = tf.exp(tf.sub(x.t, detach(tf.max(x.t, k, true))));
            r = { t: tf.div(e, tf.sum(e, k, true)), dims: x.dims };
            break;
          }
          case 'causal': {
            const m = new Float32Array(L * L);
            for (let i = 0; i < L; i++) for (let j = 0; j < L; j++) m[i * L + j] = j > i ? MASKED : 0;
            r = { t: tf.add(ins[0].t, align(tf.tensor2d(m, [L, L]), ['length', 'memory_length'], ins[0].dims)), dims: ins[0].dims };
            break;
          }
          case 'dropout': {
            const x = ins[0];
            const shape = x.t.shape;
            const idx = globalIndices(shape, shape.map(() => 0), shape);
            const s = seedOf(seed, step, L_, op.name);
            const m = new Float32Array(idx.length);
            for (let i = 0; i < idx.length; i++) m[i] = uniformAt(s, idx[i]) < DROPOUT_KEEP ? 1 / DROPOUT_KEEP : 0;
            r = { t: tf.mul(x.t, tf.tensor(m, shape)), dims: x.dims };
            break;
          }
          case 'act':
            r = { t: op.activation === 'relu' ? tf.relu(ins[0].t) : gelu(ins[0].t), dims: ins[0].dims };
            break;
          case 'swiglu':
            r = { t: tf.mul(silu(ins[0].t), align(ins[1].t, ins[1].dims, ins[0].dims)), dims: ins[0].dims };
            break;
          case 'rotary': {
            const x = ins[0];
            const [b, Lx, h, K] = x.t.shape;
            const cos = new Float32Array(Lx * K), sin = new Float32Array(Lx * K);
            for (let l = 0; l < Lx; l++) for (let k = 0; k < K; k += 2) {
              const ang = l * Math.pow(ROTARY_BASE, -k / dimSizes.d_kv);
              cos[l * K + k] = cos[l * K + k + 1] = Math.cos(ang);
              sin[l * K + k] = -Math.sin(ang);
              sin[l * K + k + 1] = Math.sin(ang);
            }
            const swapped = tf.reshape(tf.reverse(tf.reshape(x.t, [b, Lx, h, K / 2, 2]), 4), [b, Lx, h, K]);
            const c = tf.reshape(tf.tensor(cos), [1, Lx, 1, K]), s = tf.reshape(tf.tensor(sin), [1, Lx, 1, K]);
            r = { t: tf.add(tf.mul(x.t, c), tf.mul(swapped, s)), dims: x.dims };
            break;
          }
          case 'rename':
            r = { t: ins[0].t, dims: ins[0].dims.map((d) => (d === op.dim ? op.to! : d)) };
            break;
          case 'route':
            // The slots are constants of the step (no gradient flows through the choice of expert):
            // combine = the gate at each kept choice's slot; dispatch = where combine is nonzero.
            if (op.route === 'combine') r = { t: tf.mul(tf.reshape(ins[0].t, [B, L, dimSizes.expert_unsplit, 1]), tf.tensor(slotsOf(ins[0].t, graph), [B, L, dimSizes.expert_unsplit, dimSizes.expert_capacity])), dims: outDims };
            else r = { t: tf.tensor(Float32Array.from(ins[0].t.dataSync(), (v) => (v !== 0 ? 1 : 0)), ins[0].t.shape), dims: outDims };
            break;
          case 'regroup':
            // [batch, expert_unsplit, ..] <-> [experts, group, ..]: the same numbers, first two dims swapped.
            r = { t: tf.transpose(ins[0].t, [1, 0, 2, 3]), dims: outDims };
            break;
          case 'xent': {
            const logp = tf.logSoftmax(ins[0].t);
            const hot = tf.oneHot(tf.tensor(tgt, [B, L], 'int32'), dimSizes.vocab);
            r = { t: tf.neg(tf.div(tf.sum(tf.mul(logp, hot)), B * L)), dims: [] };
            loss = r.t as tf.Scalar;
            break;
          }
        }
        env.set(op.output, r!);
      }
      // A layer's output is the next layer's input (same id); shared blocks publish everything.
      for (const [k, v] of env) outer.set(k, v);
    }
  }
  return loss!;
}

/** Train the unsplit model for `batches.length` steps; returns each step's loss and the final weights. */
export function runReference(graph: Graph, batches: Int32Array[], seed: number, adam: AdamConfig): ReferenceResult {
  registerReferenceGradients();
  const keys = weightKeys(graph);
  const params = new Map<string, Float32Array>();
  const state = new Map<string, { m: Float32Array; v: Float32Array }>();
  for (const { w, key, layer } of keys) {
    const shape = graph.tensors.get(w)!.dims.map((d) => graph.dimSizes[d]);
    const p = initWeight(graph, w, layer, seed, shape, shape.map(() => 0));
    params.set(key, p);
    state.set(key, { m: new Float32Array(p.length), v: new Float32Array(p.length) });
  }
  const losses: number[] = [];
  batches.forEach((tokens, step) => {
    const vars = new Map<string, tf.Variable>();
    for (const { w, key } of keys) {
      const shape = graph.tensors.get(w)!.dims.map((d) => graph.dimSizes[d]);
      vars.set(key, tf.variable(tf.tensor(params.get(key)!, shape), true, `ref_${key}_${step}_${Math.random()}`));
    }
    const { value, grads } = tf.variableGrads(() => forwardLoss(graph, vars, tokens, step, seed), [...vars.values()]);
    losses.push(value.dataSync()[0]);
    for (const { key } of keys) {
      const g = grads[vars.get(key)!.name];
      const gd = g ? (g.dataSync() as Float32Array) : new Float32Array(params.get(key)!.length);
      const s = state.get(key)!;
      adamUpdate(params.get(key)!, gd, s.m, s.v, step + 1, adam);
    }
    value.dispose();
    for (const g of Object.values(grads)) g.dispose();
    for (const v of vars.values()) v.dispose();
  });
  return { losses, params };
}
