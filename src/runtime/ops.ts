import type { DimName } from '../model/graph.js';
import { tf } from './backend.js';
import { align, DROPOUT_KEEP, einsum, gelu, geluGrad, LN_EPS, MASKED, reduceTo, ROTARY_BASE, run, silu, siluGrad, toTensor } from './kernels.js';
import type { OpCtx, OpGen, Reply, Request, SeqShare } from './protocol.js';
import { globalIndices, sizeOf, sliceDim, swap01, uniformAt, type Local } from './shard.js';

/**
 * Forward and backward of every op kind on one device's local blocks, with the gradients derived
 * per op at the mesh level (Mesh-TF style): each op's collectives are exactly those its lowered
 * record lists, yielded in that order.
 */

const asData = (r: Reply) => r as Float32Array;
const asLocal = (r: Reply) => r as Local;

function rowShape(x: Local, k: number): number[] {
  const s = [...x.shape];
  s[k] = 1;
  return s;
}

/** How a rename changes a dimension's layout (ordered axes, as Mesh-TF's shard index reads them). */
export function renameKind(from: readonly string[], to: readonly string[]): 'none' | 'slice' | 'allgather' | 'all-to-all' {
  const prefix = (p: readonly string[], of: readonly string[]) => p.length <= of.length && p.every((a, i) => of[i] === a);
  if (from.length === to.length && prefix(from, to)) return 'none';
  if (prefix(from, to)) return 'slice';
  if (prefix(to, from)) return 'allgather';
  return 'all-to-all';
}

function collIndex(ctx: OpCtx, tensor: string): number {
  return ctx.rec.collectives.findIndex((c) => c.tensor === tensor);
}

function withDims(x: Local, dims: readonly DimName[]): Local {
  return { dims, shape: x.shape, data: x.data };
}

// ---- sequence parallelism ----------------------------------------------------------------------

/** Whether tensor id is scattered along length over T (sequence parallelism). */
function scattered(ctx: OpCtx, id: string): boolean {
  return !!ctx.seq?.has(id);
}

/** This device's block of length without sequence parallelism (the layout's split alone). */
function blockLength(ctx: OpCtx): number {
  return ctx.globalSize('length') / ctx.axesSize(ctx.axes('length'));
}

/** The device's share along dimension k of a block holding its whole block of length there. */
export function seqSlice(x: Local, k: number, seq: SeqShare): Local {
  const n = x.shape[k] / seq.size;
  return sliceDim(x, k, seq.index * n, n);
}

/** This device's share of a block holding its whole block of length (unchanged if it has no length, or holds a share already). */
function share(ctx: OpCtx, x: Local): Local {
  const k = x.dims.indexOf('length');
  if (!ctx.seq || k < 0 || x.shape[k] !== blockLength(ctx)) return x;
  return seqSlice(x, k, ctx.seq);
}

/** A share placed in zeros of the whole block of length: what the other shares' devices contribute to a partial sum over T. */
function unshare(ctx: OpCtx, x: Local): Local {
  const k = x.dims.indexOf('length');
  const L = blockLength(ctx);
  if (!ctx.seq || k < 0 || x.shape[k] === L) return x;
  const outer = sizeOf(x.shape.slice(0, k)), inner = sizeOf(x.shape.slice(k + 1)), n = x.shape[k];
  const data = new Float32Array(outer * L * inner);
  for (let o = 0; o < outer; o++) data.set(x.data.subarray(o * n * inner, (o + 1) * n * inner), (o * L + ctx.seq.index * n) * inner);
  const shape = [...x.shape];
  shape[k] = L;
  return { dims: x.dims, shape, data };
}

/**
 * A scattered tensor gathered over T, as an einsum reads it: through the record's allgather of
 * `tag`, or, where an earlier op of the block gathered it (the lowering gathers once a block pass),
 * that copy. Any other tensor as it is.
 */
function* whole(ctx: OpCtx, id: string, x: Local, tag = id): Generator<Request, Local, Reply> {
  if (!scattered(ctx, id)) return x;
  const key = tag === id ? `${id}#T` : `${id}#dT`;
  const i = ctx.rec.collectives.findIndex((c) => c.kind === 'allgather' && c.tensor === tag);
  if (i < 0) return ctx.get(key);
  const full = asLocal(yield { kind: 'allgather', index: i, local: x, k: x.dims.indexOf('length'), axes: ctx.seq!.axes, dims: x.dims });
  ctx.set(key, full);
  return full;
}

/**
 * A residual-stream block [batch, length, ..] summed over T and scattered along length: the
 * `index`-th collective, a flat reduce-scatter over length-major data.
 */
export function* sumScatter(x: Local, index: number): Generator<Request, Local, Reply> {
  if (x.dims[1] !== 'length') throw new Error(`a reduce-scatter along length of [${x.dims.join(', ')}]`);
  const t = swap01(x, [x.dims[1], x.dims[0], ...x.dims.slice(2)]);
  const part = asData(yield { kind: 'reduce-scatter', index, data: t.data });
  const rows = part.length / sizeOf(t.shape.slice(1));
  return swap01({ dims: t.dims, shape: [rows, ...t.shape.slice(1)], data: part }, x.dims);
}

/**
 * An op's output after the record's reductions of it: allreduces, and under sequence parallelism
 * a reduce-scatter over T first; a scattered output no reduction scattered is sliced to this
 * device's share.
 */
function* reduceOut(ctx: OpCtx, x: Local): Generator<Request, Local, Reply> {
  const out = scattered(ctx, ctx.spec.output);
  const T = out ? ctx.seq!.mask : 0;
  let y = x;
  for (let i = 0; i < ctx.rec.collectives.length; i++) {
    const c = ctx.rec.collectives[i];
    if (c.tensor !== ctx.spec.output) continue;
    if (c.kind === 'reduce-scatter') y = yield* sumScatter(y, i);
    else if (c.kind === 'allreduce') {
      // A sum over none of T: its group shares this device's share, so the share alone is summed.
      if (out && !(c.mask & T)) y = share(ctx, y);
      y = { ...y, data: asData(yield { kind: 'allreduce', index: i, data: y.data, combine: 'sum' }) };
    }
  }
  return out ? share(ctx, y) : y;
}

/** Dropout keep-mask of this device's block, drawn from global element indices. */
function dropoutMask(ctx: OpCtx, id: string, x: Local): Local {
  const shareAt = (d: DimName, k: number) => (d === 'length' && scattered(ctx, id) ? ctx.seq!.index * x.shape[k] : 0);
  const idx = globalIndices(x.shape, x.dims.map((d, k) => ctx.offset(d) + shareAt(d, k)), x.dims.map((d) => ctx.globalSize(d)));
  const seed = ctx.seed();
  const data = new Float32Array(idx.length);
  for (let i = 0; i < idx.length; i++) data[i] = uniformAt(seed, idx[i]) < DROPOUT_KEEP ? 1 / DROPOUT_KEEP : 0;
  return { dims: x.dims, shape: x.shape, data };
}

/**
 * Rotate pairs (2i, 2i+1) of d_kv by angle position · base^(−2i/d_kv); sign −1 rotates back. In
 * float32 throughout, as a float32 device computes it (the cosine and sine, each product, the sum):
 * rounded once from float64 instead, a ReLU decoder's weights after two Adam steps differed from
 * the unsplit model's by 7.7e-2 where they differ by 3e-5 in float32 (run --check, 2x2), as units
 * at the ReLU's kink switch and Adam's normalised step turns the difference into a whole step.
 */
export function rotate(x: Local, posOffset: number, kvOffset: number, dKv: number, sign: number): Local {
  const f = Math.fround;
  const [b, L, h, K] = x.shape;
  const out = new Float32Array(x.data.length);
  for (let i0 = 0; i0 < b; i0++)
    for (let l = 0; l < L; l++)
      for (let j = 0; j < h; j++)
        for (let k = 0; k < K; k += 2) {
          const p = (kvOffset + k) / 2;
          const ang = (posOffset + l) * Math.pow(ROTARY_BASE, (-2 * p) / dKv);
          const c = f(Math.cos(ang)), s = f(sign * Math.sin(ang));
          const at = ((i0 * L + l) * h + j) * K + k;
          const e = x.data[at], o = x.data[at + 1];
          out[at] = f(e * c) - f(o * s);
          out[at + 1] = f(e * s) + f(o * c);
        }
  return { dims: x.dims, shape: x.shape, data: out };
}

function* renameForward(ctx: OpCtx, x: Local, back: boolean): Generator<import('./protocol.js').Request, Local, Reply> {
  // Forward: dim → to. Backward: the gradient goes from `to` back to `dim`.
  const from = back ? ctx.spec.to! : ctx.spec.dim!;
  const to = back ? ctx.spec.dim! : ctx.spec.to!;
  const A = ctx.axes(from), B = ctx.axes(to);
  const k = x.dims.indexOf(from);
  const dims = x.dims.map((d) => (d === from ? to : d));
  const kind = renameKind(A, B);
  if (kind === 'none') return withDims(x, dims);
  if (kind === 'slice') return sliceDim(x, k, ctx.offset(to) - ctx.offset(from), ctx.globalSize(to) / ctx.axesSize(B), dims);
  if (kind === 'allgather') return asLocal(yield { kind: 'allgather', index: 0, local: x, k, axes: A.slice(B.length), dims });
  return asLocal(yield { kind: 'all-to-all', index: 0, local: x, k, from: A, to: B, dims });
}

/**
 * Each token's slot in its chosen experts' buffers, from this device's block of the router's
 * probabilities [batch, length, experts]: the sequence's first choices take slots in token order,
 * then its second choices after every kept first choice, and so on (Mesh-TF moe.py, GShard), a
 * choice past the capacity dropped. With length split, the shards' counts per choice are
 * allgathered so that each shard starts where the shards before it end. Returns slot or −1 per
 * (batch, length, expert).
 */
function* routeSlots(ctx: OpCtx, probs: Local): Generator<import('./protocol.js').Request, Int32Array, Reply> {
  const [mb, Ll, E] = probs.shape;
  const k = ctx.topK, C = ctx.globalSize('expert_capacity');
  const choice = new Int32Array(mb * Ll * k); // [b, l, r] -> expert
  const order = Array.from({ length: E }, (_, e) => e);
  for (let t = 0; t < mb * Ll; t++) {
    const row = probs.data.subarray(t * E, (t + 1) * E);
    const best = [...order].sort((x, y) => row[y] - row[x] || x - y);
    for (let r = 0; r < k; r++) choice[t * k + r] = best[r];
  }
  // counts[b][r][e]: this shard's choices of rank r per expert.
  let counts: Float32Array = new Float32Array(mb * k * E);
  for (let b = 0; b < mb; b++) for (let l = 0; l < Ll; l++) for (let r = 0; r < k; r++) counts[(b * k + r) * E + choice[(b * Ll + l) * k + r]]++;
  let shards = 1, own = 0;
  if (ctx.rec.collectives.length) {
    const all = asLocal(yield { kind: 'allgather', index: 0, local: { dims: ['length', 'batch', 'expert_unsplit'], shape: [1, mb, k * E], data: counts }, k: 0, axes: ctx.axes('length'), dims: ['length', 'batch', 'expert_unsplit'] });
    shards = all.shape[0];
    own = ctx.offset('length') / Ll;
    counts = all.data;
  }
  const slots = new Int32Array(mb * Ll * E).fill(-1);
  for (let b = 0; b < mb; b++) {
    const next = new Float64Array(E); // the next free slot of rank r's choices on this shard, per expert
    let base = new Float64Array(E); // where rank r's slots start in the sequence
    for (let r = 0; r < k; r++) {
      const total = new Float64Array(E);
      for (let e = 0; e < E; e++) {
        let before = 0;
        for (let s = 0; s < shards; s++) {
          const c = counts[((s * mb + b) * k + r) * E + e];
          if (s < own) before += c;
          total[e] += c;
        }
        next[e] = base[e] + before;
      }
      for (let l = 0; l < Ll; l++) {
        const e = choice[(b * Ll + l) * k + r];
        const slot = next[e]++;
        if (slot < C) slots[(b * Ll + l) * E + e] = slot;
      }
      base = base.map((x, e) => Math.min(C, x + total[e]));
    }
  }
  return slots;
}

/** The expert side's block of the experts this device holds, from a token-side block [batch, experts, ..]. */
function ownExperts(ctx: OpCtx, x: Local, dims: readonly DimName[]): Local {
  const El = ctx.globalSize('experts') / ctx.axesSize(ctx.axes('experts'));
  return swap01(sliceDim(x, 1, ctx.offset('experts'), El), dims);
}

/**
 * A regroup's data movement on block x (the forward's input or the backward's gradient), with
 * the record's collectives in their order: to the expert side (an all-to-all over the axes
 * `experts` shares with batch, else a local slice) or back to the token side (that all-to-all,
 * then an allgather over the expert axes batch lacks).
 */
function* regroupMove(ctx: OpCtx, x: Local, move: 'to-experts' | 'to-tokens', dims: readonly DimName[]): Generator<import('./protocol.js').Request, Local, Reply> {
  if (move === 'to-experts') {
    if (!ctx.rec.collectives.length) return ownExperts(ctx, x, dims);
    return withDims(asLocal(yield { kind: 'regroup', index: 0, local: x, move }), dims);
  }
  let y = x;
  for (let i = 0; i < ctx.rec.collectives.length; i++) y = asLocal(yield { kind: 'regroup', index: i, local: y, move });
  return swap01(y, dims);
}

export function* forward(ctx: OpCtx): OpGen {
  const { spec, rec } = ctx;
  const outDims = rec.output.dims;
  const ins = () => spec.inputs.map((id) => ctx.get(id));
  switch (spec.kind) {
    case 'einsum': {
      const a = yield* whole(ctx, spec.inputs[0], ctx.get(spec.inputs[0]));
      const b = yield* whole(ctx, spec.inputs[1], ctx.get(spec.inputs[1]));
      const out = run(outDims, () => einsum(toTensor(a), a.dims, toTensor(b), b.dims, outDims, true));
      ctx.set(spec.output, yield* reduceOut(ctx, out));
      return;
    }
    case 'gather': {
      const [all, table] = ins();
      // Scattered, and summed over none of T (if at all), each device looks up its own share of the positions.
      const T = ctx.seq?.mask ?? 0;
      const ids = scattered(ctx, spec.output) && rec.collectives.every((c) => !(c.mask & T)) ? share(ctx, all) : all;
      const voff = ctx.offset('vocab');
      const V = table.shape[0];
      const n = ids.data.length;
      // Each device copies the rows of its own vocabulary shard and leaves the others zero: a row copy,
      // what the cost model prices (memory-bound). tfjs-wasm's gather kernel took 8.9 ms for 1024 rows
      // of 256 floats that this copy takes 0.6 ms (this machine, 2026-12-07).
      const d = table.shape[1];
      const rows = new Float32Array(n * d);
      for (let i = 0; i < n; i++) {
        const v = ids.data[i] - voff;
        if (v >= 0 && v < V) rows.set(table.data.subarray(v * d, (v + 1) * d), i * d);
      }
      ctx.set(spec.output, yield* reduceOut(ctx, { dims: outDims, shape: [...ids.shape, d], data: rows }));
      return;
    }
    case 'add': {
      // Into the scattered residual stream, what it adds is read at this device's share (learned positions).
      const [a, b] = ins().map((x) => (scattered(ctx, spec.output) ? share(ctx, x) : x));
      ctx.set(spec.output, run(a.dims, () => tf.add(toTensor(a), align(toTensor(b), b.dims, a.dims))));
      return;
    }
    case 'layernorm': {
      const [x, scale, bias] = ins();
      const k = x.dims.indexOf(spec.dim!);
      const D = ctx.globalSize(spec.dim!);
      const rows = sizeOf(x.shape) / x.shape[k];
      let st = run([], () => { const t = toTensor(x); return tf.stack([tf.sum(t, k), tf.sum(tf.mul(t, t), k)], -1); }).data;
      if (rec.collectives.length) st = asData(yield { kind: 'allreduce', index: 0, data: st, combine: 'sum' });
      const mean = new Float32Array(rows), rstd = new Float32Array(rows);
      for (let r = 0; r < rows; r++) {
        const m = st[2 * r] / D;
        mean[r] = m;
        rstd[r] = 1 / Math.sqrt(Math.max(0, st[2 * r + 1] / D - m * m) + LN_EPS);
      }
      const rs = rowShape(x, k);
      ctx.set(`${spec.output}#mean`, { dims: x.dims, shape: rs, data: mean });
      ctx.set(`${spec.output}#rstd`, { dims: x.dims, shape: rs, data: rstd });
      ctx.set(spec.output, run(x.dims, () => {
        const xh = tf.mul(tf.sub(toTensor(x), tf.tensor(mean, rs)), tf.tensor(rstd, rs));
        return tf.add(tf.mul(xh, align(toTensor(scale), scale.dims, x.dims)), align(toTensor(bias), bias.dims, x.dims));
      }));
      return;
    }
    case 'softmax': {
      const [x] = ins();
      const k = x.dims.indexOf(spec.dim!);
      const rs = rowShape(x, k);
      let st = run([], () => {
        const t = toTensor(x);
        const m = tf.max(t, k, true);
        return tf.stack([tf.reshape(m, [-1]), tf.reshape(tf.sum(tf.exp(tf.sub(t, m)), k), [-1])], -1);
      }).data;
      if (rec.collectives.length) st = asData(yield { kind: 'allreduce', index: 0, data: st, combine: 'softmax' });
      const rows = st.length / 2;
      const M = new Float32Array(rows), S = new Float32Array(rows);
      for (let r = 0; r < rows; r++) {
        M[r] = st[2 * r];
        S[r] = st[2 * r + 1];
      }
      ctx.set(spec.output, run(x.dims, () => tf.div(tf.exp(tf.sub(toTensor(x), tf.tensor(M, rs))), tf.tensor(S, rs))));
      return;
    }
    case 'causal': {
      const [x] = ins();
      const kl = x.dims.indexOf('length'), km = x.dims.indexOf('memory_length');
      const L = x.shape[kl], Mm = x.shape[km];
      const ol = ctx.offset('length'), om = ctx.offset('memory_length');
      const mask = new Float32Array(L * Mm);
      for (let i = 0; i < L; i++) for (let j = 0; j < Mm; j++) mask[i * Mm + j] = om + j > ol + i ? MASKED : 0;
      ctx.set(spec.output, run(x.dims, () => tf.add(toTensor(x), align(tf.tensor2d(mask, [L, Mm]), ['length', 'memory_length'], x.dims))));
      return;
    }
    case 'dropout': {
      const [x] = ins();
      const mask = dropoutMask(ctx, spec.inputs[0], x);
      ctx.set(spec.saves[0], mask);
      ctx.set(spec.output, run(x.dims, () => tf.mul(toTensor(x), toTensor(mask))));
      return;
    }
    case 'act': {
      const [x] = ins();
      ctx.set(spec.output, run(x.dims, () => (spec.activation === 'relu' ? tf.relu(toTensor(x)) : gelu(toTensor(x)))));
      return;
    }
    case 'swiglu': {
      const [g, u] = ins();
      ctx.set(spec.output, run(g.dims, () => tf.mul(silu(toTensor(g)), align(toTensor(u), u.dims, g.dims))));
      return;
    }
    case 'rotary': {
      const [x] = ins();
      ctx.set(spec.output, rotate(x, ctx.offset(x.dims[1]), ctx.offset('d_kv'), ctx.globalSize('d_kv'), 1));
      return;
    }
    case 'rename': {
      const [x] = ins();
      ctx.set(spec.output, yield* renameForward(ctx, x, false));
      return;
    }
    case 'route': {
      const [x] = ins();
      const C = ctx.globalSize('expert_capacity');
      if (spec.route === 'dispatch') {
        ctx.set(spec.output, { dims: outDims, shape: x.shape, data: Float32Array.from(x.data, (v) => (v !== 0 ? 1 : 0)) });
        return;
      }
      const slots = yield* routeSlots(ctx, x);
      const data = new Float32Array(slots.length * C);
      for (let i = 0; i < slots.length; i++) if (slots[i] >= 0) data[i * C + slots[i]] = x.data[i];
      ctx.set(`${spec.output}#slots`, { dims: x.dims, shape: x.shape, data: Float32Array.from(slots) });
      ctx.set(spec.output, { dims: outDims, shape: [...x.shape, C], data });
      return;
    }
    case 'regroup': {
      const [x] = ins();
      ctx.set(spec.output, yield* regroupMove(ctx, x, spec.to === 'experts' ? 'to-experts' : 'to-tokens', outDims));
      return;
    }
    case 'xent': {
      const [logits, targets] = ins();
      const k = logits.dims.indexOf('vocab');
      const voff = ctx.offset('vocab');
      const V = logits.shape[k];
      const tidx = Int32Array.from(targets.data, (v) => v - voff);
      let st = run([], () => {
        const t = toTensor(logits);
        const m = tf.max(t, k, true);
        const s = tf.sum(tf.exp(tf.sub(t, m)), k);
        const hot = align(tf.oneHot(tf.tensor(tidx, targets.shape as number[], 'int32'), V), [...targets.dims, 'vocab'], logits.dims);
        const tl = tf.sum(tf.mul(t, hot), k);
        return tf.stack([tf.reshape(m, [-1]), tf.reshape(s, [-1]), tf.reshape(tl, [-1])], -1);
      }).data;
      const vi = collIndex(ctx, `${spec.output}.stats`);
      if (vi >= 0) st = asData(yield { kind: 'allreduce', index: vi, data: st, combine: 'xent' });
      const rows = st.length / 3;
      const M = new Float32Array(rows), S = new Float32Array(rows);
      let total = 0;
      for (let r = 0; r < rows; r++) {
        M[r] = st[3 * r];
        S[r] = st[3 * r + 1];
        total += Math.log(S[r]) + M[r] - st[3 * r + 2];
      }
      const rs = rowShape(logits, k);
      ctx.set(`${spec.output}#max`, { dims: logits.dims, shape: rs, data: M });
      ctx.set(`${spec.output}#sum`, { dims: logits.dims, shape: rs, data: S });
      let loss: Float32Array = Float32Array.of(total / ctx.tokens);
      const li = collIndex(ctx, spec.output);
      if (li >= 0) loss = asData(yield { kind: 'allreduce', index: li, data: loss, combine: 'sum' });
      ctx.set(spec.output, { dims: [], shape: [], data: loss });
      return;
    }
  }
}

function maskOf(ctx: OpCtx): number {
  return ctx.partialMask(ctx.rec.partial ?? []);
}

export function* backward(ctx: OpCtx): OpGen {
  const { spec, rec } = ctx;
  const wrt = rec.wrt!;
  const out = rec.output; // the gradient's shape: the input differentiated
  const outDims = ctx.get(spec.output).dims;
  if (spec.kind === 'rename' && renameKind(ctx.axes(spec.dim!), ctx.axes(spec.to!)) === 'none') return; // same buffer
  const dyData = ctx.gradOut(spec.output);
  const fwdOut = ctx.get(spec.output);
  const dy: Local = { dims: fwdOut.dims, shape: fwdOut.shape, data: dyData };
  const give = (x: Local) => ctx.contribute(wrt, x.data, maskOf(ctx));
  const wrtDims = out.dims;
  switch (spec.kind) {
    case 'einsum': {
      const other = spec.inputs[0] === wrt ? spec.inputs[1] : spec.inputs[0];
      // Sequence parallelism: the output's gradient gathered (the reverse of its reduce-scatter),
      // and the scattered input again for the weight's gradient.
      const g = yield* whole(ctx, spec.output, dy, `${spec.output}.grad`);
      const b = yield* whole(ctx, other, ctx.get(other));
      give(run(wrtDims, () => einsum(toTensor(g), outDims, toTensor(b), b.dims, wrtDims, true)));
      return;
    }
    case 'gather': {
      const [ids, table] = spec.inputs.map((id) => ctx.get(id));
      // Scattered, every position's gradient gathered first (the record's allgather).
      const full = yield* whole(ctx, spec.output, dy, `${spec.output}.grad`);
      const voff = ctx.offset('vocab');
      const V = table.shape[0];
      const n = ids.data.length;
      const idx = Int32Array.from(ids.data, (v) => v - voff);
      // A scatter-add of dy's rows into the table's: what the cost model prices (memory-bound), where
      // a one-hot product would be a V x n x d GEMM.
      const d = table.shape[1];
      give({ dims: wrtDims, shape: [V, d], data: scatterAddRows(idx, n, full.data, V, d) });
      return;
    }
    case 'add': {
      const x = ctx.get(wrt);
      if (x.dims.length === dy.dims.length) give({ ...dy, dims: x.dims });
      // Learned positions read at this device's share: the gradient of the others' rows is theirs (a partial sum over T).
      else give(unshare(ctx, run(x.dims, () => reduceTo(toTensor(dy), dy.dims, x.dims))));
      return;
    }
    case 'layernorm': {
      const [x, scale] = spec.inputs.map((id) => ctx.get(id));
      const mean = ctx.get(`${spec.output}#mean`), rstd = ctx.get(`${spec.output}#rstd`);
      const k = x.dims.indexOf(spec.dim!);
      const xhat = () => tf.mul(tf.sub(toTensor(x), toTensor(mean)), toTensor(rstd));
      if (wrt === spec.inputs[1]) {
        give(run(wrtDims, () => reduceTo(tf.mul(toTensor(dy), xhat()), x.dims, wrtDims)));
        return;
      }
      if (wrt === spec.inputs[2]) {
        give(run(wrtDims, () => reduceTo(toTensor(dy), x.dims, wrtDims)));
        return;
      }
      const D = ctx.globalSize(spec.dim!);
      const g = () => tf.mul(toTensor(dy), align(toTensor(scale), scale.dims, x.dims));
      let st = run([], () => { const gg = g(); return tf.stack([tf.sum(gg, k), tf.sum(tf.mul(gg, xhat()), k)], -1); }).data;
      if (rec.collectives.length) st = asData(yield { kind: 'allreduce', index: 0, data: st, combine: 'sum' });
      const rows = st.length / 2;
      const a = new Float32Array(rows), c = new Float32Array(rows);
      for (let r = 0; r < rows; r++) {
        a[r] = st[2 * r] / D;
        c[r] = st[2 * r + 1] / D;
      }
      give(run(x.dims, () => tf.mul(toTensor(rstd), tf.sub(tf.sub(g(), tf.tensor(a, mean.shape as number[])), tf.mul(xhat(), tf.tensor(c, mean.shape as number[]))))));
      return;
    }
    case 'softmax': {
      const p = fwdOut;
      const k = p.dims.indexOf(spec.dim!);
      const rs = rowShape(p, k);
      let s = run([], () => tf.reshape(tf.sum(tf.mul(toTensor(dy), toTensor(p)), k), [-1])).data;
      if (rec.collectives.length) s = asData(yield { kind: 'allreduce', index: 0, data: s, combine: 'sum' });
      give(run(p.dims, () => tf.mul(toTensor(p), tf.sub(toTensor(dy), tf.tensor(s, rs)))));
      return;
    }
    case 'causal':
      give(dy);
      return;
    case 'dropout': {
      const mask = ctx.get(spec.saves[0]);
      give(run(dy.dims, () => tf.mul(toTensor(dy), toTensor(mask))));
      return;
    }
    case 'act': {
      const h = ctx.get(spec.inputs[0]);
      give(run(h.dims, () => tf.mul(toTensor(dy), spec.activation === 'relu' ? tf.step(toTensor(h)) : geluGrad(toTensor(h)))));
      return;
    }
    case 'swiglu': {
      const [g, u] = spec.inputs.map((id) => ctx.get(id));
      if (wrt === spec.inputs[0]) give(run(g.dims, () => tf.mul(tf.mul(toTensor(dy), align(toTensor(u), u.dims, g.dims)), siluGrad(toTensor(g)))));
      else give(run(u.dims, () => reduceTo(tf.mul(toTensor(dy), silu(toTensor(g))), g.dims, u.dims)));
      return;
    }
    case 'rotary': {
      give(rotate(dy, ctx.offset(dy.dims[1]), ctx.offset('d_kv'), ctx.globalSize('d_kv'), -1));
      return;
    }
    case 'rename': {
      give(yield* renameForward(ctx, dy, true));
      return;
    }
    case 'route': {
      // Only combine has a backward: the gate's gradient is its slot's (a dropped choice has none).
      const slots = ctx.get(`${spec.output}#slots`).data;
      const C = ctx.globalSize('expert_capacity');
      const g = new Float32Array(slots.length);
      for (let i = 0; i < slots.length; i++) if (slots[i] >= 0) g[i] = dyData[i * C + slots[i]];
      give({ dims: wrtDims, shape: ctx.get(wrt).shape, data: g });
      return;
    }
    case 'regroup': {
      give(yield* regroupMove(ctx, dy, spec.to === 'experts' ? 'to-tokens' : 'to-experts', wrtDims));
      return;
    }
    case 'xent': {
      const [logits, targets] = spec.inputs.map((id) => ctx.get(id));
      const k = logits.dims.indexOf('vocab');
      const V = logits.shape[k];
      const M = ctx.get(`${spec.output}#max`), S = ctx.get(`${spec.output}#sum`);
      const tidx = Int32Array.from(targets.data, (v) => v - ctx.offset('vocab'));
      const scale = dyData[0] / ctx.tokens;
      give(run(logits.dims, () => {
        const p = tf.div(tf.exp(tf.sub(toTensor(logits), toTensor(M))), toTensor(S));
        const hot = align(tf.oneHot(tf.tensor(tidx, targets.shape as number[], 'int32'), V), [...targets.dims, 'vocab'], logits.dims);
        return tf.mul(tf.sub(p, hot), scale);
      }));
      return;
    }
  }
}

/**
 * The rows of `src` added into a [V, d] table at rows idx (those outside 0..V−1 skipped), in token
 * order. A function of its own: inside the large backward generator the loop ran unoptimised,
 * 5.5 ms for 512 rows of 256 floats per step (run --json, 2x2 small, 2026-12-07).
 */
function scatterAddRows(idx: Int32Array, n: number, src: Float32Array, V: number, d: number): Float32Array {
  const grad = new Float32Array(V * d);
  for (let t = 0; t < n; t++) {
    const v = idx[t];
    if (v < 0 || v >= V) continue;
    const at = v * d, from = t * d;
    for (let j = 0; j < d; j++) grad[at + j] += src[from + j];
  }
  return grad;
}
