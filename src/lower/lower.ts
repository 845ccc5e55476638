import { InputError } from '../errors.js';
import { formatLayout, graphDims, maskAxes, maskSize, validateLayout, type CompiledLayout, type Layout } from '../layout/layout.js';
import type { Mesh } from '../mesh/mesh.js';
import { DIM_INDEX, DIM_NAMES, minimalRecompute, neededRecompute, OP_CLASS, type Block, type DimName, type Graph, type OpSpec } from '../model/graph.js';
import { DTYPE_BYTES } from '../model/spec.js';
import type { CollectiveKind } from './collectives.js';
import { instantiate } from './instantiate.js';
import { RECOMPUTE, type Plan, type Recompute } from './plan.js';
import type { Program } from './program.js';
import {
  ZERO, lin, linAdd, type BlockRecord, type CollectiveRecord, type CollectiveRole, type GemmShape, type Lin,
  type OpRecord, type SavedByMode, type WeightRecord,
} from './records.js';

/** Non-matmul FLOPs per output element: what the vector units do (memory-bound ops are priced by bytes). */
export const ELEMENT_FLOPS: Record<string, number> = {
  gather: 0, add: 1, layernorm: 8, softmax: 5, causal: 1, dropout: 2, act: 8, swiglu: 6, rotary: 6, rename: 0, xent: 5,
  // route: top-k compares, the running count of each expert's slots, one write per slot (estimate).
  route: 4, regroup: 0,
};

// 16-bit training: 2 (fp16 params) + 2 (fp16 grads) + 12 (fp32 master, momentum, variance).
const MIXED_STATE = Object.freeze({ param: 2, grad: 2, optimizer: 12 });
// fp32 training: 4 + 4 + 8 (momentum, variance): also 16 bytes per parameter.
const FP32_STATE = Object.freeze({ param: 4, grad: 4, optimizer: 8 });

/** Bytes per parameter of model states under mixed precision (ZeRO, Rajbhandari et al. 2020, Sec. 3.1). */
export function stateBytes(dtype: keyof typeof DTYPE_BYTES): { readonly param: number; readonly grad: number; readonly optimizer: number } {
  return DTYPE_BYTES[dtype] === 2 ? MIXED_STATE : FP32_STATE;
}

/** The lowering of one layout (and sequence-parallel choice): every plan on it is priced from these records. */
export interface LayoutLowering {
  readonly graph: Graph;
  readonly mesh: Mesh;
  readonly layout: CompiledLayout;
  readonly sequenceParallel: boolean;
  /** Axes that split heads/d_ff: what sequence parallelism splits `length` over (0 without it). */
  readonly seqMask: number;
  readonly blocks: readonly BlockRecord[];
  /** Forward records, blocks in order. */
  readonly forward: readonly OpRecord[];
  /** Recompute records, in the order the backward runs them (each tagged with its modes). */
  readonly recompute: readonly OpRecord[];
  /** Backward records, blocks in reverse. */
  readonly backward: readonly OpRecord[];
  readonly weights: readonly WeightRecord[];
  /** Saved tensors a block reads but another made (the encoder output), counted once per microbatch. */
  readonly sharedSaved: SavedByMode;
  /** The largest op output: max(perSeq·mb, fixed). */
  readonly largestOutput: Lin;
  /**
   * Per recompute mode, what the backward of one layer rebuilds and holds at once: the largest
   * such set. Full: the layer's saved tensors of mode none; minimal: those less the projection
   * outputs it keeps; none and selective: nothing counted.
   */
  readonly recomputeBuffer: Readonly<Record<Recompute, Lin>>;
  /** The activation that crosses pipeline stages (the layer input), and its bytes. */
  readonly stageMessage: { readonly tensor: string; readonly bytes: Lin } | null;
  /** Tensors sequence parallelism splits over T (their local length is 1/t of the layout's). */
  readonly seqSplit: ReadonlySet<string>;
}

/** What the lowering needs of a graph that no layout changes: computed once per graph. */
interface GraphInfo {
  readonly opDims: Map<OpSpec, DimName[]>;
  readonly outDims: Map<string, Set<DimName>>;
  /** Per einsum (forward) and per (einsum, wrt) (backward): which GEMM part each dimension is. */
  readonly gemmParts: Map<string, [DimName, GemmPart][]>;
  /** The same by part: each part's dimensions as indices into DIM_NAMES (in the parts' order), and which part scales. */
  readonly gemmIndex: Map<string, GemmIndex>;
  readonly weightBlock: Map<string, Block>;
  readonly coreMade: Map<Block, Set<string>>;
  readonly readOutsideCore: Map<Block, Set<string>>;
  /**
   * Intermediates of elementwise chains that never reach HBM: made by a non-matmul op, read by
   * exactly one other non-matmul op, saved by none. Every engine fuses such chains (XLA's loop
   * fusion; Megatron's fused masked softmax and bias-dropout-add kernels).
   */
  readonly fusedAway: Set<string>;
  /** The residual stream: tensors [batch, length, d_model], what sequence parallelism splits over T. */
  readonly residual: ReadonlySet<string>;
  /** Each op's backward record names, `name/dwrt` per input (also its GEMM key). */
  readonly gradNames: Map<OpSpec, readonly string[]>;
  /** Each op's dimensions as indices into DIM_NAMES, and what its hot loops read of the graph (see OpInfo). */
  readonly ops: Map<OpSpec, OpInfo>;
  /** Each tensor's dimensions as indices into DIM_NAMES. */
  readonly tensorDims: Map<string, readonly number[]>;
  /** Per set of free renames (Ctx.aliasKey): each block's saved tensors (blockSaved), worked out for the first layout with that set. */
  readonly saved: Map<string, BlockSaved[]>;
}

/**
 * A block's saved tensors per recompute mode, canonical ids in savedSet's order: those the block
 * makes (own) and those another block made (shared); and its whole set of mode none (layered blocks).
 */
interface BlockSaved {
  readonly own: Readonly<Record<Recompute, readonly string[]>>;
  readonly shared: Readonly<Record<Recompute, readonly string[]>>;
  readonly all: readonly string[];
}

/** A GEMM's dimensions by part, as indices into DIM_NAMES; the part holding batch (or group) scales with the microbatch. */
interface GemmIndex {
  readonly batch: readonly number[];
  readonly m: readonly number[];
  readonly n: readonly number[];
  readonly k: readonly number[];
  readonly scales: GemmShape['scales'];
}

/** An op's dimensions by index (DIM_NAMES order, as opDims lists them) and the lookups its records need, once per graph. */
interface OpInfo {
  readonly dims: readonly number[];
  /** Its dimensions its output lacks (summed over: a partial sum where split). */
  readonly notOut: readonly number[];
  /** Per input: the op's dimensions that input lacks (its gradient's partial sum). */
  readonly notIn: readonly (readonly number[])[];
  /** Whether its output is a routing tensor (no gradient flows back). */
  readonly routing: boolean;
}

const graphInfos = new WeakMap<Graph, GraphInfo>();
const B_DIMS = 'batch,length,d_model';

export type GemmPart = 'batch' | 'm' | 'n' | 'k';

function gemmPartsOf(graph: Graph, a: string, b: string, out: string): [DimName, GemmPart][] {
  const dims = (id: string) => new Set(graph.tensors.get(id)!.dims);
  const A = dims(a), Bd = dims(b), C = dims(out);
  return [...new Set([...A, ...Bd, ...C])].map((d) =>
    [d, A.has(d) && Bd.has(d) && C.has(d) ? 'batch' : A.has(d) && C.has(d) ? 'm' : Bd.has(d) && C.has(d) ? 'n' : 'k']);
}

function graphInfo(graph: Graph): GraphInfo {
  const hit = graphInfos.get(graph);
  if (hit) return hit;
  const opDims = new Map<OpSpec, DimName[]>();
  const outDims = new Map<string, Set<DimName>>();
  const gemmParts = new Map<string, [DimName, GemmPart][]>();
  const weightBlock = new Map<string, Block>();
  const coreMade = new Map<Block, Set<string>>();
  const readOutsideCore = new Map<Block, Set<string>>();
  for (const id of graph.tensors.keys()) outDims.set(id, new Set(graph.tensors.get(id)!.dims));
  for (const b of graph.blocks) {
    coreMade.set(b, new Set(b.ops.filter((o) => o.attentionCore).map((o) => o.output)));
    readOutsideCore.set(b, new Set(b.ops.filter((o) => !o.attentionCore).flatMap((o) => o.inputs)));
    for (const op of b.ops) {
      const s = new Set<DimName>();
      for (const id of [...op.inputs, op.output]) for (const d of graph.tensors.get(id)!.dims) s.add(d);
      opDims.set(op, [...s]);
      for (const id of op.inputs) if (graph.tensors.get(id)!.role === 'weight' && !weightBlock.has(id)) weightBlock.set(id, b);
      if (op.kind !== 'einsum') continue;
      gemmParts.set(op.name, gemmPartsOf(graph, op.inputs[0], op.inputs[1], op.output));
      for (const wrt of op.inputs) gemmParts.set(`${op.name}/d${wrt}`, gemmPartsOf(graph, op.output, op.inputs.find((i) => i !== wrt) ?? wrt, wrt));
    }
  }
  const fusedAway = new Set<string>();
  const fusible = (o: OpSpec) => o.kind !== 'einsum' && o.kind !== 'rename' && o.kind !== 'gather' && o.kind !== 'regroup';
  const readers = new Map<string, OpSpec[]>();
  const saved = new Set<string>();
  for (const b of graph.blocks) for (const op of b.ops) {
    for (const id of op.inputs) {
      const r = readers.get(id);
      if (r) r.push(op);
      else readers.set(id, [op]);
    }
    for (const id of op.saves) saved.add(id);
    if (b.input) saved.add(b.input);
  }
  for (const b of graph.blocks) for (const op of b.ops) {
    const r = readers.get(op.output) ?? [];
    if (fusible(op) && r.length === 1 && fusible(r[0]) && !saved.has(op.output) && graph.tensors.get(op.output)!.role === 'activation') fusedAway.add(op.output);
  }
  const residual = new Set([...graph.tensors].filter(([, t]) => t.dims.join() === B_DIMS).map(([id]) => id));
  const gradNames = new Map<OpSpec, readonly string[]>();
  for (const b of graph.blocks) for (const op of b.ops) gradNames.set(op, op.inputs.map((wrt) => `${op.name}/d${wrt}`));
  const ops = new Map<OpSpec, OpInfo>();
  const indexOf = (ds: readonly DimName[]) => ds.map((d) => DIM_INDEX[d]);
  for (const b of graph.blocks) for (const op of b.ops) {
    const ds = opDims.get(op)!;
    const missing = (id: string) => indexOf(ds.filter((d) => !outDims.get(id)!.has(d)));
    ops.set(op, { dims: indexOf(ds), notOut: missing(op.output), notIn: op.inputs.map(missing), routing: graph.tensors.get(op.output)!.role === 'routing' });
  }
  const tensorDims = new Map<string, readonly number[]>();
  for (const [id, t] of graph.tensors) tensorDims.set(id, indexOf(t.dims));
  const gemmIndex = new Map<string, GemmIndex>();
  for (const [key, parts] of gemmParts) {
    const by: Record<GemmPart, number[]> = { batch: [], m: [], n: [], k: [] };
    let scales: GemmShape['scales'] = null;
    for (const [d, part] of parts) {
      by[part].push(DIM_INDEX[d]);
      if (d === 'batch' || d === 'group') scales = part;
    }
    gemmIndex.set(key, { ...by, scales });
  }
  const info = { opDims, outDims, gemmParts, gemmIndex, weightBlock, coreMade, readOutsideCore, fusedAway, residual, gradNames, ops, tensorDims, saved: new Map() };
  graphInfos.set(graph, info);
  return info;
}

interface Ctx {
  graph: Graph;
  info: GraphInfo;
  mesh: Mesh;
  c: CompiledLayout;
  /** Sequence parallelism's axes (0 without it). */
  T: number;
  tSize: number;
  flash: boolean;
  alias: Map<string, string>;
  weightPartial: Map<string, number>;
  /** Tensors already gathered over T in the current block pass (sequence parallelism). */
  gathered: Set<string>;
  /** tbytes of each tensor, computed once per lowering (its layout and T are fixed). */
  bytesOf: Map<string, Lin>;
  /** elemsLin of each tensor, likewise. */
  elemsOf: Map<string, Lin>;
  /** Each GEMM's local shape (forward, recompute and backward share them). */
  gemms: Map<string, GemmShape>;
  /** lowerRecords: no gradient sums or weight records, so no bookkeeping for them. */
  recordsOnly: boolean;
  /** Which renames are free (aliased), one character each: all the saved sets depend on of the layout. */
  aliasKey: string;
  /** localSize of each dimension and its axes mask, by index into DIM_NAMES. */
  local: Float64Array;
  mask: Int32Array;
}

const NONE_SPLIT: ReadonlySet<string> = new Set();

/** Sequence parallelism splits the residual stream (tensors [batch, length, d_model]) over T. */
function seqSplit(ctx: Ctx, id: string): boolean {
  return ctx.T !== 0 && ctx.info.residual.has(id);
}

/** Local size of a dimension; `batch` per sequence of the local microbatch, `group` per such sequence too. */
function localSize(ctx: Ctx, d: DimName): number {
  return ctx.local[DIM_INDEX[d]];
}

/** Every dimension's local size (localSize) by index, once per lowering. */
function localSizes(graph: Graph, c: CompiledLayout): Float64Array {
  const out = new Float64Array(DIM_NAMES.length);
  for (let i = 0; i < DIM_NAMES.length; i++) {
    const d = DIM_NAMES[i];
    // The expert side holds the sequences of every device its experts' all-to-all reaches.
    out[i] = d === 'batch' ? 1 : d === 'group' ? c.split.batch / c.split.group : graph.dimSizes[d] / c.split[d];
  }
  return out;
}

/** Every dimension's axes mask by index into DIM_NAMES. */
function masksOf(c: CompiledLayout): Int32Array {
  const out = new Int32Array(DIM_NAMES.length);
  for (let i = 0; i < DIM_NAMES.length; i++) out[i] = c.mask[DIM_NAMES[i]];
  return out;
}

/** The axes mask of the dimensions at these indices. */
function indexMask(ctx: Ctx, ds: readonly number[]): number {
  let m = 0;
  for (let i = 0; i < ds.length; i++) m |= ctx.mask[ds[i]];
  return m;
}

/** Whether a tensor's size grows with the microbatch (it has `batch`, or the expert side's `group`). */
function perSequence(dims: readonly DimName[]): boolean {
  return dims.includes('batch') || dims.includes('group');
}

/**
 * The layout with MoE's derived `group` dimension: the expert side's sequences stay split over
 * the batch axes that `experts` does not take; the axes both take are where dispatch and combine
 * run their all-to-alls (Mesh-TF moe.py: batch -> batch_unsplit while experts_unsplit -> experts).
 */
export function withGroup(graph: Graph, mesh: Mesh, c: CompiledLayout): CompiledLayout {
  if (!graphDims(graph).has('group')) return c;
  const mask = { ...c.mask, group: c.mask.batch & ~c.mask.experts };
  const split = { ...c.split, group: maskSize(mesh, mask.group) };
  return { layout: c.layout, mask, split };
}


/** Local bytes of a tensor (as a function of the microbatch), scattered under sequence parallelism. */
function tbytes(ctx: Ctx, id: string): Lin {
  const hit = ctx.bytesOf.get(id);
  if (hit) return hit;
  const t = ctx.graph.tensors.get(id)!;
  let n = t.bytes;
  const ds = ctx.info.tensorDims.get(id)!;
  for (let i = 0; i < ds.length; i++) n *= ctx.local[ds[i]];
  if (seqSplit(ctx, id)) n /= ctx.tSize;
  const b = perSequence(t.dims) ? lin(n, 0) : lin(0, n);
  ctx.bytesOf.set(id, b);
  return b;
}

/** Bytes of the tensor as an einsum reads it: gathered over T under sequence parallelism. */
function fullBytes(ctx: Ctx, id: string): Lin {
  const b = tbytes(ctx, id);
  return seqSplit(ctx, id) ? lin(b.perSeq * ctx.tSize, b.fixed * ctx.tSize) : b;
}

function elemsLin(ctx: Ctx, id: string): Lin {
  const hit = ctx.elemsOf.get(id);
  if (hit) return hit;
  const b = tbytes(ctx, id);
  const w = ctx.graph.tensors.get(id)!.bytes;
  const e = lin(b.perSeq / w, b.fixed / w);
  ctx.elemsOf.set(id, e);
  return e;
}

function scaleLin(l: Lin, k: number): Lin {
  return lin(l.perSeq * k, l.fixed * k);
}

function coll(ctx: Ctx, kind: CollectiveKind, mask: number, tensor: string, bytes: Lin, role: CollectiveRole = 'tensor'): CollectiveRecord {
  return { kind, axes: maskAxes(ctx.mesh, mask), mask, groupSize: maskSize(ctx.mesh, mask), tensor, bytes, role };
}

/**
 * Reduce a partial sum over `mask`: an allreduce. Under sequence parallelism, a sum over all of T
 * is a reduce-scatter over T first; a sum over part of T allreduces the whole block of length, each
 * device then keeping its share; a sum over none of T allreduces the share alone.
 */
function reduce(ctx: Ctx, id: string, mask: number, bytes: Lin): CollectiveRecord[] {
  if (seqSplit(ctx, id) && mask & ctx.T) {
    if ((mask & ctx.T) !== ctx.T) return [coll(ctx, 'allreduce', mask, id, fullBytes(ctx, id))];
    const out = [coll(ctx, 'reduce-scatter', ctx.T, id, fullBytes(ctx, id))];
    if (mask & ~ctx.T) out.push(coll(ctx, 'allreduce', mask & ~ctx.T, id, tbytes(ctx, id)));
    return out;
  }
  return [coll(ctx, 'allreduce', mask, id, bytes)];
}

/** An allgather over T of a sequence-split tensor, once per block pass. */
function gatherOnce(ctx: Ctx, id: string, out: CollectiveRecord[]): void {
  if (!seqSplit(ctx, id) || ctx.gathered.has(id)) return;
  ctx.gathered.add(id);
  out.push(coll(ctx, 'allgather', ctx.T, id, fullBytes(ctx, id)));
}

/** How a rename changes a tensor's layout: nothing, a local slice, an allgather or an all-to-all. */
function renameChange(ctx: Ctx, op: OpSpec): { kind: 'none' | 'slice' | CollectiveKind; mask: number } {
  const from = ctx.c.mask[op.dim!] | (seqSplit(ctx, op.inputs[0]) ? ctx.T : 0);
  const to = ctx.c.mask[op.to!];
  if (from === to) return { kind: 'none', mask: 0 };
  if ((to & from) === from) return { kind: 'slice', mask: 0 };
  if ((from & to) === to) return { kind: 'allgather', mask: from & ~to };
  return { kind: 'all-to-all', mask: from | to };
}

function opDims(ctx: Ctx, op: OpSpec): readonly DimName[] {
  return ctx.info.opDims.get(op)!;
}

function duplication(ctx: Ctx, block: Block, dims: readonly number[]): number {
  let m = indexMask(ctx, dims);
  if (block.layered) m |= ctx.c.mask.layers;
  return ctx.mesh.size / maskSize(ctx.mesh, m);
}

/** The local GEMM of an einsum (forward: its name; backward: name/dwrt), see GemmShape. */
function gemmShape(ctx: Ctx, key: string): GemmShape {
  let g = ctx.gemms.get(key);
  if (!g) {
    // Each part's local size: the product of its dimensions' (GemmIndex), in the parts' order.
    const gi = ctx.info.gemmIndex.get(key)!;
    const local = ctx.local;
    const prod = (ds: readonly number[]) => {
      let x = 1;
      for (let i = 0; i < ds.length; i++) x *= local[ds[i]];
      return x;
    };
    ctx.gemms.set(key, (g = { batch: prod(gi.batch), m: prod(gi.m), n: prod(gi.n), k: prod(gi.k), scales: gi.scales }));
  }
  return g;
}

/** One GEMM the lowering runs for an einsum: its forward, or its backward for one input. */
export interface EinsumPass {
  readonly block: Block;
  readonly op: OpSpec;
  /** Every dimension of the einsum (its FLOPs are 2 × their local sizes × share). */
  readonly dims: readonly DimName[];
  /** The share of the work a fused causal kernel runs (causalShare; else 1). */
  readonly share: number;
  readonly parts: readonly (readonly [DimName, GemmPart])[];
}

/** Every einsum pass of a step, as lowerLayout emits them (forwardOp, and backwardOp per input a gradient flows to). */
export function einsumPasses(graph: Graph): EinsumPass[] {
  const info = graphInfo(graph);
  const out: EinsumPass[] = [];
  for (const block of graph.blocks) {
    for (const op of block.ops) {
      if (op.kind !== 'einsum') continue;
      const dims = info.opDims.get(op)!;
      const share = causalShare(graph, op);
      out.push({ block, op, dims, share, parts: info.gemmParts.get(op.name)! });
      for (const wrt of op.inputs) if (gradientFlows(graph, op, wrt)) out.push({ block, op, dims, share, parts: info.gemmParts.get(`${op.name}/d${wrt}`)! });
    }
  }
  return out;
}

/** Ops of the fused attention kernel keep only their boundary tensors in HBM (Dao et al. 2022). */
function fusedBytes(ctx: Ctx, block: Block, ids: readonly string[]): Lin {
  const made = ctx.info.coreMade.get(block)!;
  const readOutside = ctx.info.readOutsideCore.get(block)!;
  let sum = ZERO;
  for (const id of ids) {
    const t = ctx.graph.tensors.get(id)!;
    if (t.role === 'mask') continue; // regenerated from the seed
    if (!made.has(id) || readOutside.has(id)) sum = linAdd(sum, tbytes(ctx, id));
  }
  return sum;
}

/** The collectives of a record that has none: one shared empty list (records outlive the lowering). */
const NO_COLLECTIVES: readonly CollectiveRecord[] = Object.freeze([]);

const fused = (ctx: Ctx, op: OpSpec) => ctx.flash && !!op.attentionCore;

// Query and key tiles of a fused attention kernel: FlashAttention-2 runs 128 x 128 blocks at head dimension 128 (Dao 2023, Sec. 3.3).
export const FLASH_BLOCK = 128;

/**
 * The share of an attention core's work a fused causal kernel runs: with the sequence cut into
 * n = ceil(s / FLASH_BLOCK) tiles, it skips the key tiles wholly above the diagonal (Dao 2023,
 * Sec. 3.1.1: causal masking) and runs n(n + 1)/2 of the n² tile pairs, (n + 1)/(2n) of the work.
 * Context parallelism (length split) deals the tiles out evenly, as Megatron-LM's 2 x CP chunks
 * and Llama 3's (Sec. 3.3.2) do. 1 for every other op.
 */
export function causalShare(graph: Graph, op: OpSpec): number {
  if (!op.causalBlocks) return 1;
  const n = Math.ceil(graph.dimSizes.length / FLASH_BLOCK);
  return (n + 1) / (2 * n);
}

/** Local rows of a tensor along d: its elements over d's local size (a statistic per row). */
function rows(ctx: Ctx, id: string, d: DimName): Lin {
  return scaleLin(elemsLin(ctx, id), 1 / (localSize(ctx, d) / (seqSplit(ctx, id) && d === 'length' ? ctx.tSize : 1)));
}

/** The forward of one op on one device: local compute and the collectives the layout forces. */
function forwardOp(ctx: Ctx, block: Block, op: OpSpec, phase: OpRecord['phase'], recomputeIn?: OpRecord['recomputeIn']): OpRecord {
  const dims = opDims(ctx, op);
  const oi = ctx.info.ops.get(op)!;
  const out = op.output;
  const colls: CollectiveRecord[] = [];
  let flops: Lin;
  let bytes = ZERO;
  let gemm: GemmShape | null = null;
  if (op.kind === 'einsum') {
    let f = 2 * causalShare(ctx.graph, op);
    for (let i = 0; i < oi.dims.length; i++) f *= ctx.local[oi.dims[i]];
    flops = perSequence(dims) ? lin(f, 0) : lin(0, f);
    let bs = 0, bf = 0;
    for (const id of op.inputs) {
      gatherOnce(ctx, id, colls);
      const b = fullBytes(ctx, id);
      bs += b.perSeq; bf += b.fixed;
    }
    const ob = fullBytes(ctx, out);
    bytes = lin(bs + ob.perSeq, bf + ob.fixed);
    const partial = indexMask(ctx, oi.notOut);
    if (partial) colls.push(...reduce(ctx, out, partial, tbytes(ctx, out)));
    gemm = gemmShape(ctx, op.name);
  } else {
    // The loss is one number, worked out over every logit.
    flops = scaleLin(elemsLin(ctx, op.kind === 'xent' ? op.inputs[0] : out), ELEMENT_FLOPS[op.kind] * causalShare(ctx.graph, op));
    let bs = 0, bf = 0;
    for (let i = 0; i <= op.inputs.length; i++) {
      const id = i < op.inputs.length ? op.inputs[i] : out;
      if (ctx.info.fusedAway.has(id)) continue;
      const b = tbytes(ctx, id);
      bs += b.perSeq; bf += b.fixed;
    }
    bytes = lin(bs, bf);
    if (op.kind === 'gather') {
      const m = ctx.c.mask.vocab; // each device looks up its own rows: the sum over devices is the lookup
      if (m) colls.push(...reduce(ctx, out, m, tbytes(ctx, out)));
    } else if (op.kind === 'layernorm' || op.kind === 'softmax') {
      const m = ctx.c.mask[op.dim!]; // mean and variance (max and sum) over a split dimension
      if (m) colls.push(coll(ctx, 'allreduce', m, `${out}.stats`, scaleLin(rows(ctx, op.inputs[0], op.dim!), 8)));
    } else if (op.kind === 'xent') {
      const logits = op.inputs[0];
      const m = ctx.c.mask.vocab; // max, sum of exponentials and the target's logit
      if (m) colls.push(coll(ctx, 'allreduce', m, `${out}.stats`, scaleLin(rows(ctx, logits, 'vocab'), 12)));
      const lm = ctx.c.mask.batch | ctx.c.mask.length; // the mean loss, for reporting
      if (lm) colls.push(coll(ctx, 'allreduce', lm, out, lin(0, 4)));
    } else if (op.kind === 'route') {
      // Each expert's slots are numbered along the sequence, first choices before second ones
      // (Mesh-TF moe.py, GShard): with length split, each device needs every shard's counts per
      // choice (an allgather of [batch, topK, experts] int32 counts). The dispatch tensor is cast from combine.
      const m = ctx.c.mask.length;
      const k = ctx.graph.spec.topK ?? 1;
      if (m && op.route === 'combine') colls.push(coll(ctx, 'allgather', m, `${out}.counts`, lin(4 * k * ctx.graph.dimSizes.expert_unsplit * maskSize(ctx.mesh, m), 0)));
    } else if (op.kind === 'regroup') {
      const r = regroupAxes(ctx);
      // Dispatch: the shared axes all-to-all the expert-side buffer; the other expert axes slice locally.
      // Combine: the reverse all-to-all, then an allgather over the expert axes batch lacks.
      if (op.to === 'experts') {
        if (r.a2a) colls.push(coll(ctx, 'all-to-all', r.a2a, out, tbytes(ctx, out)));
      } else {
        if (r.a2a) colls.push(coll(ctx, 'all-to-all', r.a2a, out, tbytes(ctx, op.inputs[0])));
        if (r.slice) colls.push(coll(ctx, 'allgather', r.slice, out, tbytes(ctx, out)));
      }
    } else if (op.kind === 'rename') {
      const ch = renameChange(ctx, op);
      if (ch.kind === 'none') bytes = ZERO;
      if (ch.kind === 'allgather' && ctx.T && ch.mask === ctx.T && seqSplit(ctx, op.inputs[0])) {
        gatherOnce(ctx, op.inputs[0], colls); // sequence parallelism's gather of the norm's output
        bytes = ZERO;
      } else if (ch.kind === 'allgather' || ch.kind === 'all-to-all') {
        colls.push(coll(ctx, ch.kind, ch.mask, out, tbytes(ctx, out)));
      }
    }
  }
  const isFused = fused(ctx, op);
  if (isFused) bytes = fusedBytes(ctx, block, [...op.inputs, out]);
  return {
    name: op.name, block: block.name, phase, kind: op.kind, klass: OP_CLASS[op.kind],
    inputs: op.inputs, output: out,
    flops, bytes, gemm, kernel: isFused ? op.kind === 'einsum' && op.name.endsWith('.qk') : !op.inputs.some((id) => ctx.info.fusedAway.has(id)),
    duplication: duplication(ctx, block, oi.dims), collectives: colls.length ? colls : NO_COLLECTIVES, model: phase === 'forward', layered: block.layered,
    perStage: perStageOf(ctx, block), stage: stageOf(block), recomputeIn,
  };
}

const NO_GRAD = new Set(['ids', 'mask', 'stat', 'routing']);

/** Whether the backward of an op computes a gradient for input `wrt` (the dispatch tensor passes none). */
function gradientFlows(graph: Graph, op: OpSpec, wrt: string): boolean {
  return graph.tensors.get(op.output)!.role !== 'routing' && !NO_GRAD.has(graph.tensors.get(wrt)!.role);
}

/** A regroup's axes: those `experts` shares with batch (all-to-all) and those it has alone (slice). */
function regroupAxes(ctx: Ctx): { a2a: number; slice: number } {
  const E = ctx.c.mask.experts, B = ctx.c.mask.batch;
  return { a2a: E & B, slice: E & ~B };
}

/** Which pipeline stage runs a block: every stage its layers, the first the embedding, the last the head. */
function stageOf(block: Block): OpRecord['stage'] {
  return block.layered ? 'all' : block.name === 'embed' ? 'first' : 'last';
}

/** Executions of a block per stage and microbatch: its layers on one stage, else once. */
function perStageOf(ctx: Ctx, block: Block): number {
  return block.layered ? block.repeat / ctx.c.split.layers : 1;
}

/**
 * Backward records of one op, one per differentiable input. Weight gradients' partial-sum axes
 * go to ctx.weightPartial (synced once per step), activation gradients' to `pending` (gradsum).
 * `fwd` is the op's forward record: the backward reads its work (FLOPs, bytes, duplication).
 */
function backwardOp(ctx: Ctx, block: Block, op: OpSpec, fwd: OpRecord, pending: Map<string, Set<number>>, out: OpRecord[]): void {
  const oi = ctx.info.ops.get(op)!;
  if (oi.routing) return; // the dispatch tensor passes no gradient
  const isFused = fused(ctx, op);
  let first = true;
  const names = ctx.info.gradNames.get(op)!;
  for (let wi = 0; wi < op.inputs.length; wi++) {
    const wrt = op.inputs[wi];
    const name = names[wi];
    const ts = ctx.graph.tensors.get(wrt)!;
    if (!gradientFlows(ctx.graph, op, wrt)) continue;
    const colls: CollectiveRecord[] = [];
    let partial = 0;
    // Einsums cost their forward's FLOPs again; other ops an estimate per element of the gradient.
    let flops = op.kind === 'einsum' ? fwd.flops : scaleLin(elemsLin(ctx, wrt), ELEMENT_FLOPS[op.kind] * causalShare(ctx.graph, op));
    let bytes = linAdd(fwd.bytes, tbytes(ctx, op.output));
    let gemm: GemmShape | null = null;
    if (op.kind === 'einsum') {
      const other = op.inputs.find((i) => i !== wrt) ?? wrt;
      gemm = gemmShape(ctx, name);
      // Sequence parallelism: the backward gathers the output's gradient (the reverse of its
      // reduce-scatter) and, for the weight's gradient, the scattered input again.
      if (first && seqSplit(ctx, op.output)) colls.push(coll(ctx, 'allgather', ctx.T, `${op.output}.grad`, fullBytes(ctx, op.output)));
      if (ts.role === 'weight' && seqSplit(ctx, other)) gatherOnce(ctx, other, colls);
    }
    if (op.kind === 'regroup') {
      // The reverse data movement: an all-to-all over the shared axes; dispatch's slice becomes an allgather.
      const r = regroupAxes(ctx);
      const expertSide = op.to === 'experts' ? op.output : wrt;
      if (r.a2a) colls.push(coll(ctx, 'all-to-all', r.a2a, `${wrt}.grad`, tbytes(ctx, expertSide)));
      if (r.slice && op.to === 'experts') colls.push(coll(ctx, 'allgather', r.slice, `${wrt}.grad`, tbytes(ctx, wrt)));
    } else if (op.kind === 'rename') {
      const ch = renameChange(ctx, op);
      // The reverse layout change: an allgather's gradient is a local slice, a slice's an allgather.
      if (ch.kind === 'slice') {
        const m = ctx.c.mask[op.to!] & ~ctx.c.mask[op.dim!];
        colls.push(coll(ctx, 'allgather', m, wrt, tbytes(ctx, wrt)));
      } else if (ch.kind === 'all-to-all') {
        colls.push(coll(ctx, 'all-to-all', ch.mask, wrt, tbytes(ctx, wrt)));
      } else if (ch.kind === 'none' || ctx.alias.has(op.output)) {
        bytes = ZERO;
      }
    } else if (op.kind === 'add' && ts.dims.length === ctx.graph.tensors.get(op.output)!.dims.length) {
      bytes = ZERO; // the gradient passes through unchanged
      flops = ZERO;
    } else {
      // The dimensions the gradient lacks were summed over: split ones leave a partial sum.
      partial |= indexMask(ctx, oi.notIn[wi]);
      if (ctx.T && op.kind !== 'einsum' && ts.role === 'weight' && [op.output, ...op.inputs].some((id) => seqSplit(ctx, id))) {
        if (op.kind === 'gather') {
          // The table's gradient from every position (Megatron-LM's backward of the scatter into the
          // sequence-parallel region): rows split over T need them all, and a table tied to the
          // output projection sums its two gradients over the same axes.
          colls.push(coll(ctx, 'allgather', ctx.T, `${op.output}.grad`, fullBytes(ctx, op.output)));
        } else {
          // A weight read against the scattered sequence (a norm's scale and bias, learned
          // positions): each device sums its own positions, a partial sum over T.
          partial |= ctx.T;
        }
      }
      if (op.kind === 'layernorm' && ts.role === 'activation' && ctx.c.mask.d_model) {
        colls.push(coll(ctx, 'allreduce', ctx.c.mask.d_model, `${wrt}.grad_stats`, scaleLin(elemsLin(ctx, wrt), 8 / localSize(ctx, 'd_model'))));
      }
      if (op.kind === 'softmax' && ctx.c.mask[op.dim!]) {
        colls.push(coll(ctx, 'allreduce', ctx.c.mask[op.dim!], `${wrt}.grad_stats`, scaleLin(elemsLin(ctx, wrt), 4 / localSize(ctx, op.dim!))));
      }
    }
    if (isFused) bytes = fusedBytes(ctx, block, [...op.inputs, op.output, wrt]);
    if (ctx.recordsOnly) {
      // Neither the weights' partial sums nor the gradient sums are kept.
    } else if (ts.role === 'weight') {
      ctx.weightPartial.set(wrt, (ctx.weightPartial.get(wrt) ?? 0) | partial);
    } else {
      const c = canonical(ctx, wrt);
      if (!pending.has(c)) pending.set(c, new Set());
      pending.get(c)!.add(partial);
    }
    out.push({
      name, block: block.name, phase: 'backward', kind: op.kind, klass: OP_CLASS[op.kind],
      inputs: fwd.inputs, output: wrt, wrt, partial: partial ? maskAxes(ctx.mesh, partial) : undefined,
      flops, bytes, gemm, kernel: !isFused || (first && op.name.endsWith('.av')), duplication: fwd.duplication,
      collectives: colls.length ? colls : NO_COLLECTIVES, model: true, layered: block.layered, perStage: fwd.perStage, stage: fwd.stage,
    });
    first = false;
  }
}

function canonical(ctx: Ctx, id: string): string {
  let c = id;
  while (ctx.alias.has(c)) c = ctx.alias.get(c)!;
  return c;
}

/** Sum a tensor's gradient contributions, reducing each group of partial sums over its axes once. */
function gradSum(ctx: Ctx, block: Block, id: string, pending: Map<string, Set<number>>, out: OpRecord[]): void {
  const masks = pending.get(id);
  pending.delete(id);
  if (!masks) return;
  const nonzero = [...masks].filter((m) => m !== 0);
  if (nonzero.length === 0 && masks.size <= 1) return;
  const b = tbytes(ctx, id);
  out.push({
    name: `grad:${id}`, block: block.name, phase: 'backward', kind: 'gradsum', klass: 'elementwise',
    inputs: [], output: id, flops: ZERO, bytes: masks.size > 1 ? scaleLin(b, masks.size + 1) : ZERO,
    gemm: null, kernel: true, duplication: 1, model: true, layered: block.layered, perStage: perStageOf(ctx, block), stage: stageOf(block),
    collectives: nonzero.flatMap((m) => reduce(ctx, id, m, b)),
  });
}

/**
 * The lightest recompute mode that runs a layer op's forward again in the backward: the attention
 * core's from selective on (under a fused kernel, whose output is otherwise kept, from minimal on),
 * every other op but the projections from minimal on, the projections only under full.
 */
function recomputedFrom(ctx: Ctx, block: Block, op: OpSpec): 'selective' | 'minimal' | 'full' {
  if (op.attentionCore) return ctx.flash ? 'minimal' : 'selective';
  return minimalRecompute(ctx.graph, block).rerun.has(op) ? 'minimal' : 'full';
}

/** Saved tensors of one block execution under a recompute mode (canonical ids). */
function savedSet(ctx: Ctx, block: Block, mode: Plan['recompute']): Set<string> {
  const saved = new Set<string>();
  if (block.layered && mode === 'full') {
    saved.add(canonical(ctx, block.input!));
    return saved;
  }
  if (block.layered && mode === 'minimal') {
    // The layer input and the projections' outputs the backward needs; the rest is rebuilt from
    // them. What the ops read from outside the layer (an encoder output) stays saved, as in every mode.
    const produced = new Set(block.ops.map((o) => o.output));
    saved.add(canonical(ctx, block.input!));
    for (const id of minimalRecompute(ctx.graph, block).keep) saved.add(canonical(ctx, id));
    for (const op of block.ops) {
      for (const id of [...op.inputs, ...op.saves]) {
        const t = ctx.graph.tensors.get(id)!;
        if (!produced.has(id) && id !== block.input && t.role !== 'weight' && t.role !== 'mask') saved.add(canonical(ctx, id));
      }
    }
    return saved;
  }
  // Selective recompute, and fused attention in any mode, keep the core's inputs, not its insides.
  const coreOnly = block.layered && (mode === 'selective' || ctx.flash);
  const producedInCore = new Set(block.ops.filter((o) => o.attentionCore).map((o) => o.output));
  for (const op of block.ops) {
    if (coreOnly && op.attentionCore) {
      for (const id of op.inputs) if (!producedInCore.has(id) && ctx.graph.tensors.get(id)!.role !== 'weight') saved.add(canonical(ctx, id));
      continue;
    }
    for (const id of op.saves) saved.add(canonical(ctx, id));
  }
  return saved;
}

/** Each block's saved tensors under this lowering's free renames (BlockSaved), worked out once per graph and set of free renames. */
function blockSaved(ctx: Ctx): BlockSaved[] {
  let out = ctx.info.saved.get(ctx.aliasKey);
  if (out) return out;
  const graph = ctx.graph;
  out = graph.blocks.map((b) => {
    // What the block makes: outputs, dropout masks and its input; other saved tensors are shared.
    const produced = new Set(b.ops.map((o) => canonical(ctx, o.output)));
    for (const o of b.ops) for (const id of o.saves) if (graph.tensors.get(id)!.role === 'mask') produced.add(id);
    if (b.input) produced.add(canonical(ctx, b.input));
    const own = {} as Record<Recompute, string[]>;
    const shared = {} as Record<Recompute, string[]>;
    for (const mode of RECOMPUTE) {
      const ids = [...savedSet(ctx, b, b.layered ? mode : 'none')];
      own[mode] = ids.filter((id) => produced.has(id));
      shared[mode] = ids.filter((id) => !produced.has(id));
    }
    return { own, shared, all: b.layered ? [...savedSet(ctx, b, 'none')] : [] };
  });
  ctx.info.saved.set(ctx.aliasKey, out);
  return out;
}

/** Whether a layout can take sequence parallelism on this mesh: null, or why not. */
export function sequenceParallelProblem(graph: Graph, mesh: Mesh, layout: Layout): string | null {
  const sp = sequenceParallelAxes(graph, validateLayout(graph, mesh, layout));
  return 'problem' in sp ? sp.problem : null;
}

/**
 * Sequence parallelism's axes for a layout: those that split heads and d_ff (Megatron's tensor
 * parallel group). Null with the reason when the layout cannot take it.
 */
export function sequenceParallelAxes(
  graph: Graph,
  c: { readonly split: Readonly<Pick<Record<DimName, number>, 'heads' | 'd_ff' | 'length'>>; readonly mask: Readonly<Pick<Record<DimName, number>, 'heads' | 'd_ff'>> },
): { mask: number } | { problem: string } {
  const h = c.mask.heads, f = c.mask.d_ff;
  const T = h | f;
  if (!T) return { problem: 'sequence parallelism needs heads or d_ff split on a mesh axis (the tensor-parallel axes)' };
  if (h && f && h !== f) return { problem: 'sequence parallelism needs heads and d_ff on the same axes' };
  // With length split too (context parallelism), sequence parallelism splits each device's share of
  // the sequence further, as Megatron-LM runs --context-parallel-size with --sequence-parallel.
  let t = 1;
  for (const d of ['heads', 'd_ff'] as const) if (c.mask[d]) t = c.split[d];
  const local = graph.dimSizes.length / c.split.length;
  if (local % t !== 0) {
    const of = c.split.length > 1 ? `each device's ${local} of length's ${graph.dimSizes.length}` : `length (${graph.dimSizes.length})`;
    return { problem: `sequence parallelism splits ${of} ${t} ways, which does not divide it` };
  }
  return { mask: T };
}

/**
 * Lower a graph onto a mesh under a layout: the per-device records of one training step, with
 * local shapes, local FLOPs and bytes, collectives and saved tensors, for any microbatch size
 * and recompute mode (DESIGN.md, "Lowering rules").
 */
export function lowerLayout(graph: Graph, mesh: Mesh, layout: Layout | CompiledLayout, opts: { relaxed?: boolean; sequenceParallel?: boolean } = {}): LayoutLowering {
  return lowerCore(graph, mesh, layout, opts, false) as LayoutLowering;
}

/** What a step runs and sends, without what it keeps: the records a work bound walks (src/search/bounds.ts). */
export type LayoutRecords = Pick<LayoutLowering, 'graph' | 'mesh' | 'layout' | 'sequenceParallel' | 'seqMask' | 'forward' | 'recompute' | 'backward'>;

/**
 * The records of lowerLayout and nothing else: the forward records, the backward records but its
 * gradient sums (what they reduce depends on which dimensions share axes, not on the splits alone),
 * and of the recompute records only those every recompute mode runs (a fused attention kernel's);
 * no saved-tensor sets, weights or memory figures (the same code, which skips them).
 */
export function lowerRecords(graph: Graph, mesh: Mesh, layout: Layout | CompiledLayout, opts: { relaxed?: boolean; sequenceParallel?: boolean } = {}): LayoutRecords {
  return lowerCore(graph, mesh, layout, opts, true);
}

/** A lowering's context for a compiled layout (with MoE's group) and sequence parallelism's axes T, its renames' aliases set. */
function makeCtx(graph: Graph, mesh: Mesh, c: CompiledLayout, T: number, recordsOnly: boolean): Ctx {
  const ctx: Ctx = {
    graph, info: graphInfo(graph), mesh, c, T, tSize: T ? maskSize(mesh, T) : 1, flash: graph.spec.flashAttention === true,
    alias: new Map(), weightPartial: new Map(), gathered: new Set(), bytesOf: new Map(), elemsOf: new Map(), gemms: new Map(), recordsOnly,
    aliasKey: '', local: localSizes(graph, c), mask: masksOf(c),
  };
  for (const b of graph.blocks) {
    for (const op of b.ops) {
      if (op.kind !== 'rename') continue;
      const ch = renameChange(ctx, op);
      // A free rename, or sequence parallelism's gather: the gradient flows to the input as it is.
      const free = ch.kind === 'none' || (T && ch.kind === 'allgather' && ch.mask === T && seqSplit(ctx, op.inputs[0]));
      if (free) ctx.alias.set(op.output, op.inputs[0]);
      ctx.aliasKey += free ? '1' : '0';
    }
  }
  return ctx;
}

/**
 * The forward and backward records of the ops off the residual stream that are neither einsums
 * nor renames (softmax, masks, dropout, activations, the loss...), as lowerLayout makes them
 * without sequence parallelism: the same functions on the same context, records only. What they
 * compute depends on nothing but the layout (no other op's record, no tensor sequence parallelism
 * splits), so with sequence parallelism they compute the same. A part of a layout's work that
 * costs a fraction of its lowering (src/search/task.ts opsBound).
 */
export function lowerOffResidual(graph: Graph, mesh: Mesh, layout: CompiledLayout): { forward: OpRecord[]; backward: OpRecord[] } {
  const ctx = makeCtx(graph, mesh, withGroup(graph, mesh, layout), 0, true);
  const forward: OpRecord[] = [];
  const backward: OpRecord[] = [];
  const pending = new Map<string, Set<number>>();
  for (const b of graph.blocks) {
    for (const op of b.ops) {
      if (op.kind === 'einsum' || op.kind === 'rename' || ctx.info.residual.has(op.output) || op.inputs.some((id) => ctx.info.residual.has(id))) continue;
      ctx.gathered = new Set();
      const r = forwardOp(ctx, b, op, 'forward');
      forward.push(r);
      backwardOp(ctx, b, op, r, pending, backward);
    }
  }
  return { forward, backward };
}

function lowerCore(graph: Graph, mesh: Mesh, layout: Layout | CompiledLayout, opts: { relaxed?: boolean; sequenceParallel?: boolean }, recordsOnly: boolean): LayoutLowering | LayoutRecords {
  const c = withGroup(graph, mesh, 'split' in layout ? (layout as CompiledLayout) : validateLayout(graph, mesh, layout as Layout, opts.relaxed));
  let T = 0;
  if (opts.sequenceParallel) {
    const sp = sequenceParallelAxes(graph, c);
    if ('problem' in sp) throw new InputError(`${formatLayout(c.layout) || '(replicated)'}: ${sp.problem}`);
    T = sp.mask;
  }
  const ctx = makeCtx(graph, mesh, c, T, recordsOnly);

  const forward: OpRecord[] = [];
  const forwardOf = new Map<OpSpec, OpRecord>();
  const blocks: BlockRecord[] = [];
  const shared: Record<Recompute, Map<string, Lin>> = { none: new Map(), selective: new Map(), minimal: new Map(), full: new Map() };
  let maxPerSeq = 0, maxFixed = 0, bufferPerSeq = 0, minimalBufferPerSeq = 0;
  const saved = recordsOnly ? [] : blockSaved(ctx);
  for (let bi = 0; bi < graph.blocks.length; bi++) {
    const b = graph.blocks[bi];
    ctx.gathered = new Set();
    for (const op of b.ops) {
      const r = forwardOp(ctx, b, op, 'forward');
      forward.push(r);
      forwardOf.set(op, r);
      const ob = tbytes(ctx, op.output);
      maxPerSeq = Math.max(maxPerSeq, ob.perSeq);
      maxFixed = Math.max(maxFixed, ob.fixed);
    }
    if (recordsOnly) continue;
    const bs = saved[bi];
    const own = {} as Record<Recompute, Lin>;
    for (const mode of RECOMPUTE) {
      let sum = ZERO;
      for (const id of bs.own[mode]) sum = linAdd(sum, tbytes(ctx, id));
      for (const id of bs.shared[mode]) shared[mode].set(id, tbytes(ctx, id));
      own[mode] = sum;
    }
    if (b.layered) {
      let all = ZERO;
      for (const id of bs.all) all = linAdd(all, tbytes(ctx, id));
      bufferPerSeq = Math.max(bufferPerSeq, all.perSeq);
      // The block's own tensors of mode none that minimal rebuilds (what other blocks made stays saved).
      minimalBufferPerSeq = Math.max(minimalBufferPerSeq, own.none.perSeq - own.minimal.perSeq);
    }
    blocks.push({ name: b.name, layered: b.layered, repeat: b.repeat, stage: stageOf(b), saved: own });
  }

  // Backward, blocks in reverse; the recompute of the forward (or of the attention core) first.
  const recompute: OpRecord[] = [];
  const backward: OpRecord[] = [];
  const pending = new Map<string, Set<number>>();
  for (let bi = graph.blocks.length - 1; bi >= 0; bi--) {
    const b = graph.blocks[bi];
    if (b.layered) {
      // A recompute runs the block's forward again, ops and collectives alike: its records are the forward's.
      if (!recordsOnly) {
        const needed = neededRecompute(graph, b);
        for (const op of b.ops) {
          const recomputeIn = recomputedFrom(ctx, b, op);
          // Lighter modes rerun only what the backward reads (minimal's rerun set lies within the needed one).
          const unneeded = recomputeIn === 'full' && !needed.has(op);
          recompute.push(recomputeRecord(forwardOf.get(op)!, recomputeIn, unneeded));
        }
      }
      if (ctx.flash) {
        // The fused kernel's backward recomputes QKᵀ and the softmax, in every mode (Dao et al. 2022, Sec. 3.1).
        ctx.gathered = new Set();
        for (const op of b.ops) if (op.attentionCore && !op.name.endsWith('.av')) recompute.push(forwardOp(ctx, b, op, 'recompute', 'always'));
      }
    }
    ctx.gathered = new Set();
    for (let oi = b.ops.length - 1; oi >= 0; oi--) {
      const op = b.ops[oi];
      if (!recordsOnly) gradSum(ctx, b, canonical(ctx, op.output), pending, backward);
      backwardOp(ctx, b, op, forwardOf.get(op)!, pending, backward);
    }
    if (!recordsOnly) for (const id of [...pending.keys()]) gradSum(ctx, b, id, pending, backward);
  }

  if (recordsOnly) return { graph, mesh, layout: c, sequenceParallel: T !== 0, seqMask: T, forward, recompute, backward };
  const weights: WeightRecord[] = graph.weights.map((w) => {
    const b = ctx.info.weightBlock.get(w)!;
    return {
      id: w, block: b.name, layered: b.layered, elems: elemsLin(ctx, w).fixed, partial: ctx.weightPartial.get(w) ?? 0,
      // ZeRO shards a weight over the batch axes that do not split it already (experts' weights: those
      // experts leaves), and over the length axes (context parallelism) its gradient is a partial sum over:
      // their devices hold the same weight and reduce its gradient too, as Megatron-LM's distributed
      // optimizer shards over data x context parallel ranks. (MoE's expert weights work on the expert
      // side, past the dispatch's sum over length: every length shard holds their whole gradient.)
      zeroMask: (c.mask.batch | (c.mask.length & (ctx.weightPartial.get(w) ?? 0))) & ~indexMask(ctx, ctx.info.tensorDims.get(w)!),
      perStage: perStageOf(ctx, b), stage: stageOf(b),
    };
  });

  const sum = (m: Map<string, Lin>) => [...m.values()].reduce(linAdd, ZERO);
  const firstLayered = graph.blocks.find((b) => b.layered)!;
  return {
    graph, mesh, layout: c, sequenceParallel: T !== 0, seqMask: T, blocks, forward, recompute, backward, weights,
    sharedSaved: { none: sum(shared.none), selective: sum(shared.selective), minimal: sum(shared.minimal), full: sum(shared.full) },
    largestOutput: lin(maxPerSeq, maxFixed),
    recomputeBuffer: { none: ZERO, selective: ZERO, minimal: lin(minimalBufferPerSeq, 0), full: lin(bufferPerSeq, 0) },
    stageMessage: c.split.layers > 1 ? { tensor: firstLayered.input!, bytes: tbytes(ctx, firstLayered.input!) } : null,
    seqSplit: T ? ctx.info.residual : NONE_SPLIT,
  };
}

/**
 * A forward record run again in the backward: { ...r, phase: 'recompute', model: false, recomputeIn, unneeded if so },
 * written out (the spread of a whole record cost a quarter of lowerCore's own time).
 */
function recomputeRecord(r: OpRecord, recomputeIn: NonNullable<OpRecord['recomputeIn']>, unneeded: boolean): OpRecord {
  const out = {
    name: r.name, block: r.block, phase: 'recompute' as const, kind: r.kind, klass: r.klass, inputs: r.inputs, output: r.output,
    flops: r.flops, bytes: r.bytes, gemm: r.gemm, kernel: r.kernel, duplication: r.duplication, collectives: r.collectives, model: false,
    layered: r.layered, perStage: r.perStage, stage: r.stage, recomputeIn,
  };
  return unneeded ? { ...out, unneeded } : out;
}

/** Why a plan's strategy does not fit its layout (microbatches, virtual stages), or null. */
export function strategyProblem(graph: Graph, c: CompiledLayout, plan: Plan): string | null {
  const perReplica = graph.spec.batch / c.split.batch;
  if (perReplica % plan.microbatches !== 0) {
    return `${plan.microbatches} microbatches do not divide the per-replica batch of ${perReplica} sequences (batch ${graph.spec.batch} over ${c.split.batch} replicas)`;
  }
  const V = plan.virtualStages;
  if (V > 1) {
    const p = c.split.layers;
    if (p <= 1) return `--virtual-stages ${V} needs a pipeline (layers on a mesh axis)`;
    if (graph.dimSizes.layers % (p * V) !== 0) return `${graph.dimSizes.layers} layers do not split into ${p} stages of ${V} virtual stages`;
    if (plan.microbatches % p !== 0) return `the interleaved schedule needs microbatches (${plan.microbatches}) divisible by the ${p} pipeline stages`;
  }
  return null;
}

/**
 * Lower a graph onto a mesh under a plan: the per-device program of one training step
 * (DESIGN.md, "Lowering rules"), the records of its layout instantiated for the plan.
 */
export function lower(graph: Graph, mesh: Mesh, plan: Plan, opts: { relaxed?: boolean } = {}): Program {
  const lowering = lowerLayout(graph, mesh, plan.layout, { relaxed: opts.relaxed, sequenceParallel: plan.sequenceParallel });
  const problem = strategyProblem(graph, lowering.layout, plan);
  if (problem && !opts.relaxed) throw new InputError(problem);
  return instantiate(lowering, plan);
}
