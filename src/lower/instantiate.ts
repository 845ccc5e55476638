import { maskAxes, maskSize } from '../layout/layout.js';
import { axisIndex } from '../mesh/mesh.js';
import { InputError } from '../errors.js';
import type { LayoutLowering } from './lower.js';
import { stateBytes } from './lower.js';
import { RECOMPUTE_LEVEL, type Plan } from './plan.js';
import type { Collective, LocalTensor, LoweredOp, MemoryBreakdown, Program } from './program.js';
import { sentBytes as sentBytesOf } from './collectives.js';
import { gemmAt, linAt, type CollectiveRecord, type OpRecord } from './records.js';

/** Executions per step of a block's records on one device: layers per stage × microbatches. */
export function blockCount(l: LayoutLowering, layered: boolean, repeat: number, M: number): number {
  return (layered ? repeat / l.layout.split.layers : 1) * M;
}

export function microBatchOf(l: LayoutLowering, plan: Plan): number {
  return l.graph.spec.batch / l.layout.split.batch / plan.microbatches;
}

/**
 * Whether a recompute record runs under a recompute mode; `needed`: full recompute reruns only what
 * the backward reads (HardwareProfile.fullRecompute 'needed', a compiler that drops dead code).
 */
export function recomputes(rec: OpRecord, mode: Plan['recompute'], needed = false): boolean {
  if (rec.recomputeIn === 'always') return true;
  if (needed && rec.unneeded) return false;
  // Each mode runs what the modes before it in RECOMPUTE run, and more.
  return rec.recomputeIn !== undefined && RECOMPUTE_LEVEL[rec.recomputeIn] <= RECOMPUTE_LEVEL[mode];
}

/** A tensor's local shape on one device at microbatch mb (sequence parallelism splits length over T too). */
export function localTensor(l: LayoutLowering, id: string, mb: number): LocalTensor {
  const t = l.graph.tensors.get(id)!;
  const sp = l.seqSplit.has(id) ? maskSize(l.mesh, l.seqMask) : 1;
  const size = (d: (typeof t.dims)[number]) =>
    d === 'batch' ? mb : d === 'group' ? (mb * l.layout.split.batch) / l.layout.split.group : l.graph.dimSizes[d] / l.layout.split[d] / (d === 'length' ? sp : 1);
  return { id, dims: t.dims, shape: t.dims.map(size) };
}

export function collectiveAt(c: CollectiveRecord, mb: number): Collective {
  const bytes = linAt(c.bytes, mb);
  return {
    kind: c.kind, axes: c.axes, mask: c.mask, groupSize: c.groupSize, tensor: c.tensor, bytes,
    sent: sentBytesOf(c.kind, bytes, c.groupSize), overlappable: c.role === 'gradient' || c.role === 'gather', role: c.role,
  };
}

function opAt(l: LayoutLowering, r: OpRecord, mb: number, count: number): LoweredOp {
  return {
    name: r.name, block: r.block, phase: r.phase, kind: r.kind, klass: r.klass,
    inputs: r.inputs.map((t) => localTensor(l, t, mb)), output: localTensor(l, r.output, mb), wrt: r.wrt, partial: r.partial,
    flops: linAt(r.flops, mb), bytes: linAt(r.bytes, mb), gemm: r.gemm ? gemmAt(r.gemm, mb) : null, kernel: r.kernel, duplication: r.duplication, count,
    collectives: r.collectives.map((c) => collectiveAt(c, mb)), model: r.model,
  };
}

/** A weight's local tensor and the names of its strategy ops. */
interface WeightOps {
  readonly tensor: LocalTensor;
  readonly inputs: readonly LocalTensor[];
  readonly sync: string;
  readonly adam: string;
  readonly gather: string;
}

const weightOpsCache = new WeakMap<LayoutLowering, readonly WeightOps[]>();

/** Per weight, once per layout: its local tensor and its ops' names (the strategy's ops read and write them). */
function weightOps(l: LayoutLowering): readonly WeightOps[] {
  let t = weightOpsCache.get(l);
  if (!t) {
    t = l.weights.map((w) => {
      const tensor = localTensor(l, w.id, 1);
      return { tensor, inputs: [tensor], sync: `sync:${w.id}`, adam: `adam:${w.id}`, gather: `gather:${w.id}` };
    });
    weightOpsCache.set(l, t);
  }
  return t;
}

const NO_OP_COLLECTIVES: Collective[] = [];

/** One strategy op on a weight (every one is elementwise work on the weight itself). */
function weightOp(w: WeightOps, name: string, block: LoweredOp['block'], phase: LoweredOp['phase'], kind: LoweredOp['kind'], count: number, collectives: Collective[], flops = 0, bytes = 0, duplication = 1): LoweredOp {
  return { name, block, phase, kind, klass: 'elementwise', inputs: w.inputs, output: w.tensor, flops, bytes, gemm: null, kernel: kind === 'adam', duplication, count, collectives, model: true };
}

/**
 * What the strategy adds to a layout's records (DESIGN.md, "optimizer" and "pipeline"): per
 * weight the gradient sync (ZeRO over the axes that split batch), Adam, ZeRO's parameter gathers,
 * and the point-to-point sends between pipeline stages.
 */
export function strategyOps(l: LayoutLowering, plan: Plan): LoweredOp[] {
  const { mesh, layout: c, graph } = l;
  const zm = zeroGroupMask(l, plan);
  const sb = stateBytes(graph.spec.dtype);
  const M = plan.microbatches;
  const ops: LoweredOp[] = [];
  const mk = (kind: Collective['kind'], mask: number, tensor: string, bytes: number, role: Collective['role']): Collective => {
    const groupSize = maskSize(mesh, mask);
    return { kind, axes: maskAxes(mesh, mask), mask, groupSize, tensor, bytes, sent: sentBytesOf(kind, bytes, groupSize), overlappable: role !== 'pipeline', role };
  };
  const named = weightOps(l);
  for (let wi = 0; wi < l.weights.length; wi++) {
    const w = l.weights[wi];
    const perStage = w.perStage;
    const n = w.elems;
    const wo = named[wi];
    const P = w.partial;
    const Z = w.zeroMask & zm;
    const N = maskSize(mesh, Z);
    const zeroMask = plan.zero > 0 ? Z & P : 0;
    const rest = P & ~zeroMask;
    const gradBytes = n * sb.grad;
    const colls: Collective[] = [];
    if (zeroMask) {
      colls.push(mk('reduce-scatter', zeroMask, w.id, gradBytes, 'gradient'));
      if (rest) colls.push(mk('allreduce', rest, w.id, gradBytes / maskSize(mesh, zeroMask), 'gradient'));
    } else if (P) {
      colls.push(mk('allreduce', P, w.id, gradBytes, 'gradient'));
    }
    if (colls.length) {
      // ZeRO-2 and -3 keep only a shard of the gradient: they reduce it after every microbatch.
      ops.push(weightOp(wo, wo.sync, w.block, 'sync', 'sync', perStage * (plan.zero >= 2 && zeroMask ? M : 1), colls));
    }
    const sharded = plan.zero >= 1 && Z !== 0;
    const shard = sharded ? n / N : n;
    ops.push(weightOp(wo, wo.adam, 'optimizer', 'optimizer', 'adam', perStage, NO_OP_COLLECTIVES, 12 * shard, 2 * shard * (sb.param + sb.grad + sb.optimizer), sharded ? 1 : N));
    if (sharded) {
      const gather = [mk('allgather', Z, w.id, n * sb.param, 'gather')];
      // ZeRO-3 gathers each weight before its forward and again before its backward; 1 and 2 after the optimizer.
      if (plan.zero <= 2) ops.push(weightOp(wo, wo.gather, 'optimizer', 'optimizer', 'sync', perStage, gather));
      else ops.push(weightOp(wo, wo.gather, w.block, 'forward', 'sync', 2 * perStage * M, gather));
    }
  }
  // Pipeline: each stage sends its activations forward and their gradients back, per microbatch
  // and per model chunk (interleaving sends V times as often: Narayanan et al. 2021, Sec. 2.2.2).
  if (l.stageMessage) {
    const mb = microBatchOf(l, plan);
    const msg = linAt(l.stageMessage.bytes, mb);
    const lt = localTensor(l, l.stageMessage.tensor, mb);
    const send = (phase: 'forward' | 'backward', name: string): LoweredOp => ({
      name, block: 'decoder', phase, kind: 'send', klass: 'elementwise', inputs: [lt], output: lt, flops: 0, bytes: 0, gemm: null, kernel: false,
      duplication: 1, count: M * plan.virtualStages, model: true,
      collectives: [{ kind: 'send', axes: maskAxes(mesh, c.mask.layers), mask: c.mask.layers, groupSize: 2, tensor: lt.id, bytes: msg, sent: msg, overlappable: false, role: 'pipeline' }],
    });
    ops.push(send('forward', 'pipeline:send-activations'), send('backward', 'pipeline:send-gradients'));
  }
  return ops;
}

/** Per stage, the local parameters and the same each divided by its ZeRO group; the largest layer block's parameter bytes. */
interface WeightMemory {
  readonly stageParams: { readonly first: number; readonly last: number };
  readonly stageSharded: { readonly first: number; readonly last: number };
  readonly layerParams: number;
}

/**
 * The mesh axes a plan's ZeRO may shard over, as a mask: every axis (each weight then takes the
 * batch axes that do not split it, WeightRecord.zeroMask), or a hybrid plan's `zeroAxes`, which
 * must be axes of the mesh that split `batch`.
 */
export function zeroGroupMask(l: LayoutLowering, plan: Plan): number {
  if (!plan.zeroAxes) return ~0;
  // A search's hybrid plans share one axes list per layout: its mask is looked up once per mesh.
  const hit = zeroMasks.get(plan.zeroAxes);
  if (hit && hit.mesh === l.mesh && (hit.mask & l.layout.mask.batch) === hit.mask) return hit.mask;
  let m = 0;
  for (const name of plan.zeroAxes) {
    const i = axisIndex(l.mesh, name);
    if (i < 0) throw new InputError(`--zero-axes ${name}: the mesh has no axis ${name} (axes: ${l.mesh.axes.map((a) => a.name).join(', ')})`);
    if (!(l.layout.mask.batch & (1 << i))) throw new InputError(`--zero-axes ${name}: ZeRO shards over axes that split batch, and the layout does not split batch on ${name}`);
    m |= 1 << i;
  }
  zeroMasks.set(plan.zeroAxes, { mesh: l.mesh, mask: m });
  return m;
}

const zeroMasks = new WeakMap<readonly string[], { readonly mesh: LayoutLowering['mesh']; readonly mask: number }>();

const weightMemories = new WeakMap<LayoutLowering, WeightMemory>();
const hybridWeightMemories = new WeakMap<LayoutLowering, Map<number, WeightMemory>>();

/** What planMemory takes from a layout's weights alone, once per layout and ZeRO group (WeightRecord.zeroMask). */
function weightMemory(l: LayoutLowering, zm: number): WeightMemory {
  if (zm !== ~0) {
    let byMask = hybridWeightMemories.get(l);
    if (!byMask) hybridWeightMemories.set(l, (byMask = new Map()));
    let m = byMask.get(zm);
    if (!m) byMask.set(zm, (m = weightMemoryOf(l, zm)));
    return m;
  }
  const hit = weightMemories.get(l);
  if (hit) return hit;
  const m = weightMemoryOf(l, zm);
  weightMemories.set(l, m);
  return m;
}

function weightMemoryOf(l: LayoutLowering, zm: number): WeightMemory {
  const stages = l.layout.split.layers;
  const sb = stateBytes(l.graph.spec.dtype);
  const stageParams = { first: 0, last: 0 };
  const stageSharded = { first: 0, last: 0 };
  const byBlock = new Map<string, number>();
  for (const w of l.weights) {
    const z = maskSize(l.mesh, w.zeroMask & zm);
    if (w.stage !== 'last' || stages === 1) { stageParams.first += w.elems * w.perStage; stageSharded.first += (w.elems * w.perStage) / z; }
    if (w.stage !== 'first' || stages === 1) { stageParams.last += w.elems * w.perStage; stageSharded.last += (w.elems * w.perStage) / z; }
    if (w.layered) byBlock.set(w.block, (byBlock.get(w.block) ?? 0) + w.elems);
  }
  let layerParams = 0;
  for (const v of byBlock.values()) layerParams = Math.max(layerParams, v * sb.param);
  return { stageParams, stageSharded, layerParams };
}

// The busier stage's memory parts, written by memoryParts: params, gradients, optimizer,
// activations, temporary, total. The search asks for a plan's total about a million times in the
// seven-axis case (bench/search); a breakdown object each time was a tenth of what it allocated.
const PARTS = new Float64Array(6);

/**
 * Memory per device of the busiest stage. 1F1B keeps min(stages, microbatches) microbatches in
 * flight on the first stage (Narayanan et al. 2021, Sec. 2.2.1), times 1 + (p−1)/(p·V) when
 * interleaved (Korthikanti et al. 2022, Sec. 4.2.3); the last stage keeps one. The embedding
 * lives on the first stage, the head on the last.
 */
function memoryParts(l: LayoutLowering, plan: Plan): void {
  const { graph, layout: c } = l;
  const sb = stateBytes(graph.spec.dtype);
  const stages = c.split.layers;
  const mb = microBatchOf(l, plan);
  const V = plan.virtualStages;
  const mode = plan.recompute;
  const { stageParams, stageSharded, layerParams } = weightMemory(l, zeroGroupMask(l, plan));
  let actsFirst = 0, actsLast = 0;
  for (const b of l.blocks) {
    const v = linAt(b.saved[b.layered ? mode : 'none'], mb) * (b.layered ? b.repeat / stages : 1);
    if (b.stage !== 'last' || stages === 1) actsFirst += v;
    if (b.stage !== 'first' || stages === 1) actsLast += v;
  }
  const sharedSaved = linAt(l.sharedSaved[mode], mb);
  actsFirst += sharedSaved;
  actsLast += sharedSaved;
  const inflight = stages > 1 ? Math.min(stages, plan.microbatches) * (V > 1 ? 1 + (stages - 1) / (stages * V) : 1) : 1;
  actsFirst *= inflight;
  const largest = Math.max(l.largestOutput.perSeq * mb, l.largestOutput.fixed);
  const temporary = largest + linAt(l.recomputeBuffer[mode], mb) + (plan.zero >= 3 ? layerParams : 0);
  const firstTotal = stateInto(STATE, 0, plan.zero, sb, stageParams.first, stageSharded.first) + actsFirst + temporary;
  const lastTotal = stateInto(STATE, 3, plan.zero, sb, stageParams.last, stageSharded.last) + actsLast + temporary;
  const busier = lastTotal > firstTotal;
  const at = busier ? 3 : 0;
  PARTS[0] = STATE[at];
  PARTS[1] = STATE[at + 1];
  PARTS[2] = STATE[at + 2];
  PARTS[3] = busier ? actsLast : actsFirst;
  PARTS[4] = temporary;
  PARTS[5] = busier ? lastTotal : firstTotal;
}

// Each stage's parameter, gradient and optimizer bytes (first stage, then last), written by stateInto.
const STATE = new Float64Array(6);

/**
 * Bytes of a stage's parameters, gradients and optimizer state, each sharded from its ZeRO stage on
 * (3, 2, 1), written to out[at..at + 2]; their sum.
 */
function stateInto(out: Float64Array, at: number, zero: number, sb: ReturnType<typeof stateBytes>, all: number, sharded: number): number {
  out[at] = (zero >= 3 ? sharded : all) * sb.param;
  out[at + 1] = (zero >= 2 ? sharded : all) * sb.grad;
  out[at + 2] = (zero >= 1 ? sharded : all) * sb.optimizer;
  return out[at] + out[at + 1] + out[at + 2];
}

/** Memory per device of the busiest stage, by part (memoryParts). */
export function planMemory(l: LayoutLowering, plan: Plan): MemoryBreakdown {
  memoryParts(l, plan);
  return { params: PARTS[0], gradients: PARTS[1], optimizer: PARTS[2], activations: PARTS[3], temporary: PARTS[4], total: PARTS[5] };
}

/** planMemory's total alone, with nothing allocated. */
export function planMemoryTotal(l: LayoutLowering, plan: Plan): number {
  memoryParts(l, plan);
  return PARTS[5];
}

/**
 * The records `pick` keeps, in program order, each with its executions per step: the forward, then
 * block by block in reverse each layer block's recompute and its backward.
 */
function eachRecord(l: LayoutLowering, plan: Plan, pick: (r: OpRecord) => boolean, f: (r: OpRecord, count: number) => void): void {
  const { records, repeats } = programOrder(l);
  for (let i = 0; i < records.length; i++) {
    const r = records[i];
    if (pick(r)) f(r, blockCount(l, r.layered, repeats[i], plan.microbatches));
  }
}

const programOrders = new WeakMap<LayoutLowering, { records: readonly OpRecord[]; repeats: readonly number[] }>();

/**
 * A layout's records in program order (eachRecord's), each with its block's repeat, once per
 * lowering: every estimate of a plan reads them (recordFlops) and the order depends on no strategy.
 */
function programOrder(l: LayoutLowering): { records: readonly OpRecord[]; repeats: readonly number[] } {
  let o = programOrders.get(l);
  if (!o) {
    const records: OpRecord[] = [];
    const repeats: number[] = [];
    const repeatOf = (r: OpRecord) => l.blocks.find((b) => b.name === r.block)!.repeat;
    const add = (r: OpRecord) => { records.push(r); repeats.push(repeatOf(r)); };
    for (const r of l.forward) add(r);
    for (const b of [...l.blocks].reverse()) {
      for (const r of l.recompute) if (r.block === b.name) add(r);
      for (const r of l.backward) if (r.block === b.name) add(r);
    }
    programOrders.set(l, (o = { records, repeats }));
  }
  return o;
}

/** The records a plan runs: every forward and backward record, and the recompute its mode runs. */
export const runsIn = (plan: Plan) => (r: OpRecord): boolean => r.phase !== 'recompute' || recomputes(r, plan.recompute);

/**
 * Matmul FLOPs of the records `pick` keeps (the strategy's ops are elementwise): per device, over
 * the mesh, and over the mesh less recompute (the model's).
 */
export function recordFlops(l: LayoutLowering, plan: Plan, pick: (r: OpRecord) => boolean): Program['flops'] {
  const mb = microBatchOf(l, plan);
  let modelPerStep = 0, matmulPerStep = 0, perDevice = 0;
  eachRecord(l, plan, pick, (r, count) => {
    if (r.klass !== 'matmul') return;
    const dev = linAt(r.flops, mb) * count;
    perDevice += dev;
    const global = (dev * l.mesh.size) / r.duplication;
    matmulPerStep += global;
    if (r.model) modelPerStep += global;
  });
  return { modelPerStep, matmulPerStep, perDevice };
}

/**
 * The per-device program of one plan: the layout's records at the plan's microbatch size, with its
 * strategy. Its ops are built when first read (the runtime reads them; pricing reads the records).
 */
export function instantiate(l: LayoutLowering, plan: Plan): Program {
  const { graph, mesh, layout: c } = l;
  const mb = microBatchOf(l, plan);
  const runs = runsIn(plan);
  let ops: LoweredOp[] | undefined;
  const build = (): LoweredOp[] => {
    const out: LoweredOp[] = [];
    eachRecord(l, plan, runs, (r, count) => out.push(opAt(l, r, mb, count)));
    out.push(...strategyOps(l, plan));
    return out;
  };
  let localParams = 0;
  for (const w of l.weights) localParams += w.elems * w.perStage;
  const savedBytes: Program['savedBytes'] = {};
  for (const b of l.blocks) (savedBytes as Record<string, number>)[b.name] = linAt(b.saved[b.layered ? plan.recompute : 'none'], mb);
  return {
    graph, mesh, plan, layout: c, lowering: l, get ops() { return (ops ??= build()); }, microBatch: mb, stages: c.split.layers, dataParallel: c.split.batch,
    localParams, savedBytes, memory: planMemory(l, plan), flops: recordFlops(l, plan, runs),
  };
}
