import { InputError } from '../errors.js';
import { maskAxes, maskSize, validateLayout, type CompiledLayout } from '../layout/layout.js';
import type { Mesh } from '../mesh/mesh.js';
import { OP_CLASS, type Block, type BlockName, type DimName, type Graph, type OpSpec } from '../model/graph.js';
import { DTYPE_BYTES } from '../model/spec.js';
import { sentBytes, type CollectiveKind } from './collectives.js';
import type { Plan } from './plan.js';
import type { Collective, LocalTensor, LoweredOp, MemoryBreakdown, Phase, Program } from './program.js';

/** Non-matmul FLOPs per output element: informational (these ops are priced by bytes moved). */
const ELEMENT_FLOPS: Record<string, number> = {
  gather: 0, add: 1, layernorm: 8, softmax: 5, causal: 1, dropout: 2, act: 8, swiglu: 6, rotary: 6, rename: 0, xent: 5,
};

/** Bytes per parameter of model states under mixed precision (ZeRO, Rajbhandari et al. 2020, Sec. 3.1). */
export function stateBytes(dtype: keyof typeof DTYPE_BYTES): { param: number; grad: number; optimizer: number } {
  // 16-bit training: 2 (fp16 params) + 2 (fp16 grads) + 12 (fp32 master, momentum, variance).
  // fp32 training: 4 + 4 + 8 (momentum, variance): also 16 bytes per parameter.
  return DTYPE_BYTES[dtype] === 2 ? { param: 2, grad: 2, optimizer: 12 } : { param: 4, grad: 4, optimizer: 8 };
}

interface Ctx {
  graph: Graph;
  mesh: Mesh;
  plan: Plan;
  c: CompiledLayout;
  mb: number;
  stages: number;
  ops: LoweredOp[];
  /** Free renames: output id → input id (same buffer). */
  alias: Map<string, string>;
  /** Partial-sum masks of weight gradients, per weight. */
  weightPartial: Map<string, number>;
}

function local(ctx: Ctx, d: DimName): number {
  return d === 'batch' ? ctx.mb : ctx.graph.dimSizes[d] / ctx.c.split[d];
}

function localTensor(ctx: Ctx, id: string): LocalTensor {
  const t = ctx.graph.tensors.get(id)!;
  return { id, dims: t.dims, shape: t.dims.map((d) => local(ctx, d)) };
}

function elems(ctx: Ctx, id: string): number {
  const t = ctx.graph.tensors.get(id)!;
  let n = 1;
  for (const d of t.dims) n *= local(ctx, d);
  return n;
}

function tbytes(ctx: Ctx, id: string): number {
  return elems(ctx, id) * ctx.graph.tensors.get(id)!.bytes;
}

function dimsMask(ctx: Ctx, dims: Iterable<DimName>): number {
  let m = 0;
  for (const d of dims) m |= ctx.c.mask[d];
  return m;
}

function collective(ctx: Ctx, kind: CollectiveKind, mask: number, tensor: string, bytes: number, overlappable = false): Collective {
  const n = maskSize(ctx.mesh, mask);
  return { kind, axes: maskAxes(ctx.mesh, mask), mask, groupSize: n, tensor, bytes, sent: sentBytes(kind, bytes, n), overlappable };
}

/** How a rename changes a tensor's layout: nothing, a local slice, an allgather or an all-to-all. */
function renameChange(ctx: Ctx, op: OpSpec): { kind: 'none' | 'slice' | CollectiveKind; mask: number } {
  const from = ctx.c.mask[op.dim!];
  const to = ctx.c.mask[op.to!];
  if (from === to) return { kind: 'none', mask: 0 };
  if ((to & from) === from) return { kind: 'slice', mask: 0 };
  if ((from & to) === to) return { kind: 'allgather', mask: from & ~to };
  return { kind: 'all-to-all', mask: from | to };
}

function opDims(ctx: Ctx, op: OpSpec): Set<DimName> {
  const s = new Set<DimName>();
  for (const id of [...op.inputs, op.output]) for (const d of ctx.graph.tensors.get(id)!.dims) s.add(d);
  return s;
}

function duplication(ctx: Ctx, block: Block, dims: Set<DimName>): number {
  let m = dimsMask(ctx, dims);
  if (block.layered) m |= ctx.c.mask.layers;
  return ctx.mesh.size / maskSize(ctx.mesh, m);
}

/** The forward of one op on one device: local compute and the collectives the layout forces. */
function forwardOp(ctx: Ctx, block: Block, op: OpSpec, phase: Phase, count: number): LoweredOp {
  const dims = opDims(ctx, op);
  const out = op.output;
  const colls: Collective[] = [];
  let flops: number;
  const ioBytes = op.inputs.reduce((s, id) => s + tbytes(ctx, id), 0) + tbytes(ctx, out);
  const rowsOf = (id: string, d: DimName) => elems(ctx, id) / local(ctx, d);
  if (op.kind === 'einsum') {
    flops = 2;
    for (const d of dims) flops *= local(ctx, d);
    const outDims = new Set(ctx.graph.tensors.get(out)!.dims);
    const contracted = [...dims].filter((d) => !outDims.has(d));
    const partial = dimsMask(ctx, contracted);
    if (partial) colls.push(collective(ctx, 'allreduce', partial, out, tbytes(ctx, out)));
  } else {
    flops = ELEMENT_FLOPS[op.kind] * elems(ctx, out);
    if (op.kind === 'gather') {
      const m = ctx.c.mask.vocab; // each device looks up its own rows: the sum over devices is the lookup
      if (m) colls.push(collective(ctx, 'allreduce', m, out, tbytes(ctx, out)));
    } else if (op.kind === 'layernorm' || op.kind === 'softmax') {
      const m = ctx.c.mask[op.dim!]; // mean and variance (max and sum) over a split dimension
      if (m) colls.push(collective(ctx, 'allreduce', m, `${out}.stats`, 2 * 4 * rowsOf(op.inputs[0], op.dim!)));
    } else if (op.kind === 'xent') {
      const logits = op.inputs[0];
      const m = ctx.c.mask.vocab; // max, sum of exponentials and the target's logit
      if (m) colls.push(collective(ctx, 'allreduce', m, `${out}.stats`, 3 * 4 * rowsOf(logits, 'vocab')));
      const lm = ctx.c.mask.batch | ctx.c.mask.length; // the mean loss, for reporting
      if (lm) colls.push(collective(ctx, 'allreduce', lm, out, 4));
    } else if (op.kind === 'rename') {
      const ch = renameChange(ctx, op);
      if (ch.kind === 'allgather' || ch.kind === 'all-to-all') colls.push(collective(ctx, ch.kind, ch.mask, out, tbytes(ctx, out)));
    }
  }
  const free = op.kind === 'rename' && renameChange(ctx, op).kind === 'none';
  return {
    name: op.name, block: block.name, phase, kind: op.kind, klass: OP_CLASS[op.kind],
    inputs: op.inputs.map((id) => localTensor(ctx, id)), output: localTensor(ctx, out),
    flops, bytes: free ? 0 : ioBytes, duplication: duplication(ctx, block, dims), count, collectives: colls,
    model: phase === 'forward',
  };
}

const NO_GRAD = new Set(['ids', 'mask', 'stat']);

/**
 * Backward records of one op, one per differentiable input. Weight gradients' partial-sum axes
 * go to ctx.weightPartial (synced once per step), activation gradients' to `pending` (gradsum).
 */
function backwardOp(ctx: Ctx, block: Block, op: OpSpec, count: number, pending: Map<string, Set<number>>): void {
  const dims = opDims(ctx, op);
  const fwd = forwardOp(ctx, block, op, 'backward', count);
  for (const wrt of op.inputs) {
    const ts = ctx.graph.tensors.get(wrt)!;
    if (NO_GRAD.has(ts.role)) continue;
    const wrtDims = new Set(ts.dims);
    const colls: Collective[] = [];
    let partial = 0;
    // Einsums cost their forward's FLOPs again; other ops an estimate per element of the gradient.
    let flops = op.kind === 'einsum' ? fwd.flops : ELEMENT_FLOPS[op.kind] * elems(ctx, wrt);
    let bytes = fwd.bytes + tbytes(ctx, op.output);
    if (op.kind === 'rename') {
      const ch = renameChange(ctx, op);
      // The reverse layout change: an allgather's gradient is a local slice, a slice's an allgather.
      if (ch.kind === 'slice') {
        const m = ctx.c.mask[op.to!] & ~ctx.c.mask[op.dim!];
        colls.push(collective(ctx, 'allgather', m, wrt, tbytes(ctx, wrt)));
      } else if (ch.kind === 'all-to-all') {
        colls.push(collective(ctx, 'all-to-all', ch.mask, wrt, tbytes(ctx, wrt)));
      } else if (ch.kind === 'none') {
        bytes = 0;
      }
    } else if (op.kind === 'add' && ts.dims.length === ctx.graph.tensors.get(op.output)!.dims.length) {
      bytes = 0; // the gradient passes through unchanged
      flops = 0;
    } else {
      // The dimensions the gradient lacks were summed over: split ones leave a partial sum.
      for (const d of dims) if (!wrtDims.has(d)) partial |= ctx.c.mask[d];
      if (op.kind === 'layernorm' && ts.role === 'activation' && ctx.c.mask.d_model) {
        colls.push(collective(ctx, 'allreduce', ctx.c.mask.d_model, `${wrt}.grad_stats`, 2 * 4 * (elems(ctx, wrt) / local(ctx, 'd_model'))));
      }
      if (op.kind === 'softmax' && ctx.c.mask[op.dim!]) {
        colls.push(collective(ctx, 'allreduce', ctx.c.mask[op.dim!], `${wrt}.grad_stats`, 4 * (elems(ctx, wrt) / local(ctx, op.dim!))));
      }
    }
    if (ts.role === 'weight') {
      ctx.weightPartial.set(wrt, (ctx.weightPartial.get(wrt) ?? 0) | partial);
    } else {
      const c = canonical(ctx, wrt);
      if (!pending.has(c)) pending.set(c, new Set());
      pending.get(c)!.add(partial);
    }
    ctx.ops.push({
      name: `${op.name}/d${wrt}`, block: block.name, phase: 'backward', kind: op.kind, klass: OP_CLASS[op.kind],
      inputs: fwd.inputs, output: localTensor(ctx, wrt), wrt, partial: partial ? maskAxes(ctx.mesh, partial) : undefined,
      flops, bytes, duplication: fwd.duplication, count, collectives: colls, model: true,
    });
  }
}

function canonical(ctx: Ctx, id: string): string {
  let c = id;
  while (ctx.alias.has(c)) c = ctx.alias.get(c)!;
  return c;
}

/** Sum a tensor's gradient contributions, reducing each group of partial sums over its axes once. */
function gradSum(ctx: Ctx, block: Block, id: string, pending: Map<string, Set<number>>, count: number): void {
  const masks = pending.get(id);
  pending.delete(id);
  if (!masks) return;
  const reduce = [...masks].filter((m) => m !== 0);
  if (reduce.length === 0 && masks.size <= 1) return;
  ctx.ops.push({
    name: `grad:${id}`, block: block.name, phase: 'backward', kind: 'gradsum', klass: 'elementwise',
    inputs: [], output: localTensor(ctx, id), flops: 0, bytes: masks.size > 1 ? (masks.size + 1) * tbytes(ctx, id) : 0,
    duplication: 1, count, model: true,
    collectives: reduce.map((m) => collective(ctx, 'allreduce', m, id, tbytes(ctx, id))),
  });
}

/** Saved tensors of one block execution under a recompute mode (canonical ids). */
function savedSet(ctx: Ctx, block: Block, mode: Plan['recompute']): Set<string> {
  const saved = new Set<string>();
  if (block.layered && mode === 'full') {
    saved.add(canonical(ctx, block.input!));
    return saved;
  }
  const producedInCore = new Set(block.ops.filter((o) => o.attentionCore).map((o) => o.output));
  for (const op of block.ops) {
    if (block.layered && mode === 'selective' && op.attentionCore) {
      for (const id of op.inputs) if (!producedInCore.has(id) && ctx.graph.tensors.get(id)!.role !== 'weight') saved.add(canonical(ctx, id));
      continue;
    }
    for (const id of op.saves) saved.add(canonical(ctx, id));
  }
  return saved;
}

/**
 * Lower a graph onto a mesh under a plan: the per-device program of one training step, with
 * local shapes, local FLOPs, collectives and saved tensors (DESIGN.md, "Lowering rules").
 */
export function lower(graph: Graph, mesh: Mesh, plan: Plan, opts: { relaxed?: boolean } = {}): Program {
  const c = validateLayout(graph, mesh, plan.layout, opts.relaxed);
  const stages = c.split.layers;
  const dataParallel = c.split.batch;
  const perReplica = graph.spec.batch / dataParallel;
  const M = plan.microbatches;
  if (perReplica % M !== 0 && !opts.relaxed) {
    throw new InputError(`${M} microbatches do not divide the per-replica batch of ${perReplica} sequences (batch ${graph.spec.batch} over ${dataParallel} replicas)`);
  }
  const ctx: Ctx = { graph, mesh, plan, c, mb: perReplica / M, stages, ops: [], alias: new Map(), weightPartial: new Map() };
  for (const b of graph.blocks) for (const op of b.ops) if (op.kind === 'rename' && renameChange(ctx, op).kind === 'none') ctx.alias.set(op.output, op.inputs[0]);

  const savedBytes: Partial<Record<BlockName, number>> = {};
  const sharedSaved = new Map<string, number>();
  let temporary = 0;
  let recomputeBuffer = 0;
  const blockCount = (b: Block) => (b.layered ? b.repeat / stages : 1) * M;

  // Forward, block by block (a layer block once, run blockCount times).
  for (const b of graph.blocks) {
    for (const op of b.ops) {
      const rec = forwardOp(ctx, b, op, 'forward', blockCount(b));
      ctx.ops.push(rec);
      temporary = Math.max(temporary, tbytes(ctx, op.output));
    }
    // What the block makes: outputs, dropout masks and its input; other saved tensors are shared.
    const produced = new Set(b.ops.map((o) => canonical(ctx, o.output)));
    for (const o of b.ops) for (const id of o.saves) if (graph.tensors.get(id)!.role === 'mask') produced.add(id);
    if (b.input) produced.add(canonical(ctx, b.input));
    let own = 0;
    for (const id of savedSet(ctx, b, b.layered ? plan.recompute : 'none')) {
      if (produced.has(id)) own += tbytes(ctx, id);
      else sharedSaved.set(id, tbytes(ctx, id));
    }
    savedBytes[b.name] = own;
    if (b.layered && plan.recompute === 'full') {
      let all = 0;
      for (const id of savedSet(ctx, b, 'none')) all += tbytes(ctx, id);
      recomputeBuffer = Math.max(recomputeBuffer, all);
    }
  }

  // Backward, blocks in reverse; a recompute of the forward (or of the attention core) first.
  const pending = new Map<string, Set<number>>();
  for (let bi = graph.blocks.length - 1; bi >= 0; bi--) {
    const b = graph.blocks[bi];
    const count = blockCount(b);
    if (b.layered && plan.recompute !== 'none') {
      for (const op of b.ops) {
        if (plan.recompute === 'selective' && !op.attentionCore) continue;
        ctx.ops.push(forwardOp(ctx, b, op, 'recompute', count));
      }
    }
    for (let oi = b.ops.length - 1; oi >= 0; oi--) {
      const op = b.ops[oi];
      gradSum(ctx, b, canonical(ctx, op.output), pending, count);
      backwardOp(ctx, b, op, count, pending);
    }
    for (const id of [...pending.keys()]) gradSum(ctx, b, id, pending, count);
  }

  // Gradient sync and the optimizer, per weight (ZeRO over the axes that split batch).
  const sb = stateBytes(graph.spec.dtype);
  const Z = c.mask.batch;
  const N = dataParallel;
  let localParams = 0;
  let layerParamBytes = 0;
  const layerParams = new Map<BlockName, number>();
  for (const w of graph.weights) {
    const b = graph.blocks.find((bl) => bl.ops.some((o) => o.inputs.includes(w)))!;
    const perStage = b.layered ? b.repeat / stages : 1;
    const n = elems(ctx, w);
    localParams += n * perStage;
    if (b.layered) layerParams.set(b.name, (layerParams.get(b.name) ?? 0) + n);
    const P = ctx.weightPartial.get(w) ?? 0;
    const zeroMask = plan.zero > 0 ? Z & P : 0;
    const rest = P & ~zeroMask;
    const gradBytes = n * sb.grad;
    const colls: Collective[] = [];
    if (zeroMask) {
      colls.push(collective(ctx, 'reduce-scatter', zeroMask, w, gradBytes, true));
      if (rest) colls.push(collective(ctx, 'allreduce', rest, w, gradBytes / maskSize(mesh, zeroMask), true));
    } else if (P) {
      colls.push(collective(ctx, 'allreduce', P, w, gradBytes, true));
    }
    const wt = localTensor(ctx, w);
    if (colls.length) {
      // ZeRO-2 and -3 keep only a shard of the gradient: they reduce it after every microbatch.
      const syncCount = perStage * (plan.zero >= 2 && zeroMask ? M : 1);
      ctx.ops.push({ name: `sync:${w}`, block: b.name, phase: 'sync', kind: 'sync', klass: 'elementwise', inputs: [wt], output: wt, flops: 0, bytes: 0, duplication: 1, count: syncCount, collectives: colls, model: true });
    }
    const shard = plan.zero >= 1 && Z ? n / N : n;
    ctx.ops.push({
      name: `adam:${w}`, block: 'optimizer', phase: 'optimizer', kind: 'adam', klass: 'elementwise', inputs: [wt], output: wt,
      flops: 12 * shard, bytes: 2 * shard * (sb.param + sb.grad + sb.optimizer), duplication: plan.zero >= 1 && Z ? 1 : N, count: perStage,
      collectives: [], model: true,
    });
    if (plan.zero >= 1 && Z) {
      const paramBytes = n * sb.param;
      if (plan.zero <= 2) {
        ctx.ops.push({ name: `gather:${w}`, block: 'optimizer', phase: 'optimizer', kind: 'sync', klass: 'elementwise', inputs: [wt], output: wt, flops: 0, bytes: 0, duplication: 1, count: perStage, collectives: [collective(ctx, 'allgather', Z, w, paramBytes, true)], model: true });
      } else {
        // ZeRO-3 gathers each weight before its forward and again before its backward.
        ctx.ops.push({ name: `gather:${w}`, block: b.name, phase: 'forward', kind: 'sync', klass: 'elementwise', inputs: [wt], output: wt, flops: 0, bytes: 0, duplication: 1, count: 2 * perStage * M, collectives: [collective(ctx, 'allgather', Z, w, paramBytes, true)], model: true });
      }
    }
  }
  for (const v of layerParams.values()) layerParamBytes = Math.max(layerParamBytes, v * sb.param);

  // Pipeline: each stage sends its activations forward and their gradients back, per microbatch.
  if (stages > 1) {
    const x = graph.blocks.find((b) => b.layered)!.input!;
    const msg = tbytes(ctx, x);
    const lt = localTensor(ctx, x);
    const send = (phase: Phase, name: string): LoweredOp => ({
      name, block: 'decoder', phase, kind: 'send', klass: 'elementwise', inputs: [lt], output: lt, flops: 0, bytes: 0, duplication: 1, count: M,
      collectives: [{ kind: 'send', axes: maskAxes(mesh, c.mask.layers), mask: c.mask.layers, groupSize: 2, tensor: x, bytes: msg, sent: msg, overlappable: false }],
      model: true,
    });
    ctx.ops.push(send('forward', 'pipeline:send-activations'), send('backward', 'pipeline:send-gradients'));
  }

  // Memory per device (the busiest stage: 1F1B keeps `stages` microbatches in flight on the first).
  const inflight = stages > 1 ? Math.min(stages, M) : 1;
  let act = 0;
  for (const b of graph.blocks) act += (savedBytes[b.name] ?? 0) * (b.layered ? b.repeat / stages : 1);
  for (const v of sharedSaved.values()) act += v;
  act *= inflight;
  const zeroN = Z ? N : 1;
  const params = plan.zero >= 3 ? (localParams * sb.param) / zeroN : localParams * sb.param;
  const gradients = plan.zero >= 2 ? (localParams * sb.grad) / zeroN : localParams * sb.grad;
  const optimizer = plan.zero >= 1 ? (localParams * sb.optimizer) / zeroN : localParams * sb.optimizer;
  temporary += recomputeBuffer + (plan.zero >= 3 ? layerParamBytes : 0);
  const memory: MemoryBreakdown = {
    params, gradients, optimizer, activations: act, temporary,
    total: params + gradients + optimizer + act + temporary,
  };

  let modelPerStep = 0, matmulPerStep = 0, perDevice = 0;
  for (const op of ctx.ops) {
    if (op.klass !== 'matmul') continue;
    const dev = op.flops * op.count;
    perDevice += dev;
    const global = (dev * mesh.size) / op.duplication;
    matmulPerStep += global;
    if (op.model) modelPerStep += global;
  }

  return {
    graph, mesh, plan, layout: c, ops: ctx.ops, microBatch: ctx.mb, stages, dataParallel,
    localParams, savedBytes, memory, flops: { modelPerStep, matmulPerStep, perDevice },
  };
}
