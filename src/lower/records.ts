import type { BlockName, OpClass, OpKind } from '../model/graph.js';
import type { CollectiveKind } from './collectives.js';
import type { Recompute } from './plan.js';
import type { Phase } from './program.js';

/**
 * What the lowering of one layout produces, once: compact records whose every size is a linear
 * function of the microbatch size. A tensor either has `batch` (its bytes scale with the local
 * microbatch) or not (weights), so each quantity is perSeq·mb + fixed. `lower()` instantiates the
 * records for one plan (microbatches, recompute, ZeRO, stages) and the cost model prices the same
 * records directly: one set of lowering rules for the estimate, the search and the runtime.
 */
export interface Lin {
  readonly perSeq: number;
  readonly fixed: number;
}

export const lin = (perSeq: number, fixed: number): Lin => ({ perSeq, fixed });
export const linAt = (l: Lin, mb: number): number => l.perSeq * mb + l.fixed;
export const linAdd = (a: Lin, b: Lin): Lin => ({ perSeq: a.perSeq + b.perSeq, fixed: a.fixed + b.fixed });
export const linScale = (a: Lin, k: number): Lin => ({ perSeq: a.perSeq * k, fixed: a.fixed * k });
export const ZERO: Lin = { perSeq: 0, fixed: 0 };

/**
 * The local GEMM of an einsum, as the hardware runs it: `batch` dims in both inputs and the
 * output, `m` in the first input and the output, `n` in the second and the output, `k` contracted.
 * Sizes at a microbatch of one sequence; `scales` says which of them grows with the microbatch.
 */
export interface GemmShape {
  readonly batch: number;
  readonly m: number;
  readonly n: number;
  readonly k: number;
  readonly scales: 'batch' | 'm' | 'n' | 'k' | null;
}

/** The GEMM at microbatch mb, as concrete sizes. */
export function gemmAt(g: GemmShape, mb: number): GemmShape {
  return {
    batch: g.scales === 'batch' ? g.batch * mb : g.batch,
    m: g.scales === 'm' ? g.m * mb : g.m,
    n: g.scales === 'n' ? g.n * mb : g.n,
    k: g.scales === 'k' ? g.k * mb : g.k,
    scales: null,
  };
}

/** What a collective is for: how engines overlap it depends on that (issue 9, item 4). */
export type CollectiveRole =
  | 'tensor'    // partial sums and layout changes inside the layer: blocking unless the engine overlaps them
  | 'gradient'  // data-parallel gradient reduction: overlaps the backward, all but the last bucket
  | 'gather'    // ZeRO parameter allgathers: overlap the neighbouring layer's compute
  | 'pipeline'; // activations and their gradients between stages

export interface CollectiveRecord {
  readonly kind: CollectiveKind;
  readonly axes: readonly string[];
  readonly mask: number;
  readonly groupSize: number;
  readonly tensor: string;
  /** Buffer bytes per device (see collectives.ts). */
  readonly bytes: Lin;
  readonly role: CollectiveRole;
}


/** One op of a layer block (or of the embedding, head): forward, backward or recompute. */
export interface OpRecord {
  readonly name: string;
  readonly block: BlockName;
  readonly phase: Extract<Phase, 'forward' | 'backward' | 'recompute'>;
  readonly kind: OpKind | 'gradsum';
  readonly klass: OpClass;
  /** Tensor ids: the op's inputs (for a backward record, its forward's inputs) and what it writes. */
  readonly inputs: readonly string[];
  readonly output: string;
  readonly wrt?: string;
  readonly partial?: readonly string[];
  readonly flops: Lin;
  /** HBM traffic of one execution (0 for a free rename or a fused-away intermediate). */
  readonly bytes: Lin;
  readonly gemm: GemmShape | null;
  /** Whether the op launches a kernel of its own (ops fused into a neighbour do not). */
  readonly kernel: boolean;
  readonly duplication: number;
  readonly collectives: readonly CollectiveRecord[];
  /** Part of the model FLOPs (false for recompute). */
  readonly model: boolean;
  /** Runs once per layer of its block (the block is layered). */
  readonly layered: boolean;
  /** Executions per microbatch on one device: the block's layers per pipeline stage (1 outside layers). */
  readonly perStage: number;
  /** Which pipeline stage runs it. */
  readonly stage: 'first' | 'last' | 'all';
  /**
   * Recompute records: the lightest recompute mode that runs it (every heavier mode does too, as
   * RECOMPUTE orders them); 'always': a fused attention kernel's own recompute, in every mode.
   */
  readonly recomputeIn?: 'selective' | 'minimal' | 'full' | 'always';
  /**
   * A full-recompute record whose output the backward never reads, nor anything rebuilt from it
   * (model/graph.ts neededRecompute): run again only where the engine reruns whole layers
   * (HardwareProfile.fullRecompute 'layer'), not where its compiler drops dead code ('needed').
   */
  readonly unneeded?: boolean;
}

/** A weight after the layout: its local elements and the axes its gradient is a partial sum over. */
export interface WeightRecord {
  readonly id: string;
  readonly block: BlockName;
  readonly layered: boolean;
  /** Local elements of one layer's weight. */
  readonly elems: number;
  /** Partial-sum mask of its gradient (bit i = mesh axis i). */
  readonly partial: number;
  /** The batch axes ZeRO shards its states over: those of batch that split none of its dimensions. */
  readonly zeroMask: number;
  /** Layers of its block on one pipeline stage (1 for the embedding and head). */
  readonly perStage: number;
  readonly stage: 'first' | 'last' | 'all';
}

/** Saved activations of one execution of a block, per recompute mode. */
export type SavedByMode = Readonly<Record<Recompute, Lin>>;

export interface BlockRecord {
  readonly name: BlockName;
  readonly layered: boolean;
  readonly repeat: number;
  /** Which pipeline stage runs it: the embedding the first, the head the last, layers all. */
  readonly stage: 'first' | 'last' | 'all';
  readonly saved: SavedByMode;
}
