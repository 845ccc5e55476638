import type { DimName, OpSpec } from '../model/graph.js';
import type { LoweredOp } from '../lower/program.js';
import type { Combine } from './ring.js';
import type { Local } from './shard.js';

/**
 * What a device's op asks of the mesh in the middle of its work: the `index`-th collective of its
 * lowered record. The executor runs it over the group and answers with the device's result.
 */
export type Request =
  | { readonly kind: 'allreduce'; readonly index: number; readonly data: Float32Array; readonly combine: Combine }
  | { readonly kind: 'reduce-scatter'; readonly index: number; readonly data: Float32Array }
  | { readonly kind: 'allgather-flat'; readonly index: number; readonly chunk: Float32Array }
  /** Allgather of blocks along dimension k, ranks ordered by `axes` (a layout's order). */
  | { readonly kind: 'allgather'; readonly index: number; readonly local: Local; readonly k: number; readonly axes: readonly string[]; readonly dims: readonly DimName[] }
  /** Re-split dimension k from the ordered axes `from` to `to` within the group of both. */
  | { readonly kind: 'all-to-all'; readonly index: number; readonly local: Local; readonly k: number; readonly from: readonly string[]; readonly to: readonly string[]; readonly dims: readonly DimName[] }
  /**
   * One step of a mixture-of-experts regroup (Mesh-TF moe.py's all-to-alls). `to-experts`: token-side
   * blocks [batch, experts, ..] in, expert-side blocks [experts, group, ..] out, each device keeping
   * its experts of every member's sequences. `to-tokens`, the record's all-to-all: expert-side blocks
   * in, each member's own sequences out as [experts held, batch, ..] ordered by expert; its allgather
   * (experts on axes batch lacks): those in, every expert out, [experts, batch, ..].
   */
  | { readonly kind: 'regroup'; readonly index: number; readonly local: Local; readonly move: 'to-experts' | 'to-tokens' };

export type Reply = Float32Array | Local;

/** One device's execution of one lowered record: yields its collectives, in the record's order. */
export type OpGen = Generator<Request, void, Reply>;

/**
 * Sequence parallelism on a device: the residual stream's tensors ([batch, length, d_model]) are
 * scattered along length over the tensor-parallel axes T, each device holding its share of its
 * block of length (docs/DESIGN.md, lowering rules).
 */
export interface SeqShare {
  /** Whether tensor id is scattered (a residual-stream tensor). */
  has(id: string): boolean;
  /** T as a mask of mesh axes (the lowering's seqMask). */
  readonly mask: number;
  /** T's axes, in mesh order: the order of the shares along length. */
  readonly axes: readonly string[];
  /** Devices in T. */
  readonly size: number;
  /** This device's share. */
  readonly index: number;
}

/** What an op sees of its device. */
export interface OpCtx {
  /** Sequence parallelism's shares, or null without it. */
  readonly seq: SeqShare | null;
  readonly rec: LoweredOp;
  readonly spec: OpSpec;
  /** A forward tensor of the current microbatch and layer (or a weight). */
  get(id: string): Local;
  set(id: string, x: Local): void;
  /** Global offset of this device's block of a dimension (batch: within the step's batch). */
  offset(dim: DimName): number;
  globalSize(dim: DimName): number;
  /** The layout's ordered mesh axes of a dimension. */
  axes(dim: DimName): readonly string[];
  axesSize(axes: readonly string[]): number;
  /** Bitmask of mesh axes given by name. */
  partialMask(axes: readonly string[]): number;
  /** Seed of this op's random draws (dropout) in this step, microbatch and layer. */
  seed(): number;
  /** The gradient of a forward tensor (all its contributions summed; reduced by the gradsum records). */
  gradOut(id: string): Float32Array;
  /** A gradient contribution to `wrt`, partial over the mesh axes `mask` (still to be reduced). */
  contribute(wrt: string, data: Float32Array, mask: number): void;
  /** Sequences × positions of the whole step: the loss is their mean. */
  readonly tokens: number;
  /** Experts each token is routed to (1 for a dense model). */
  readonly topK: number;
}
