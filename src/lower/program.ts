import type { CompiledLayout } from '../layout/layout.js';
import type { Mesh } from '../mesh/mesh.js';
import type { BlockName, DimName, Graph, OpClass, OpKind } from '../model/graph.js';
import type { CollectiveKind } from './collectives.js';
import type { LayoutLowering } from './lower.js';
import type { Plan } from './plan.js';
import type { CollectiveRole, GemmShape } from './records.js';

export type Phase = 'forward' | 'backward' | 'recompute' | 'sync' | 'optimizer';

/** One collective of a lowered op, per device. */
export interface Collective {
  readonly kind: CollectiveKind;
  /** Mesh axes it runs over (their product is the group size). */
  readonly axes: readonly string[];
  /** Bitmask of those axes (bit i = mesh axis i). */
  readonly mask: number;
  readonly groupSize: number;
  /** The tensor whose (local) buffer it moves. */
  readonly tensor: string;
  /** Buffer bytes per device (see collectives.ts). */
  readonly bytes: number;
  /** Bytes each device sends, once. */
  readonly sent: number;
  /** May run behind compute (gradient sync, ZeRO-3 prefetch); otherwise it blocks. */
  readonly overlappable: boolean;
  /** What it is for, which decides how engines overlap it. */
  readonly role: CollectiveRole;
}

export interface LocalTensor {
  readonly id: string;
  readonly dims: readonly DimName[];
  /** Local (per-device) size of each dimension, in the order of dims. */
  readonly shape: readonly number[];
}

/** One op of the per-device program. Layer ops appear once, with `count` executions per step. */
export interface LoweredOp {
  readonly name: string;
  readonly block: BlockName | 'optimizer';
  readonly phase: Phase;
  /** The forward kind; backward ops keep their forward op's kind and name the input in `wrt`. */
  readonly kind: OpKind | 'gradsum' | 'adam' | 'sync' | 'send';
  readonly klass: OpClass;
  /** Forward: the op's inputs. Backward: the forward op's inputs, with `wrt` the one differentiated. */
  readonly inputs: readonly LocalTensor[];
  readonly output: LocalTensor;
  readonly wrt?: string;
  /** Mesh axes over which this op's output is a partial sum still to be reduced (by a gradsum or sync). */
  readonly partial?: readonly string[];
  /** Local FLOPs of one execution: 2·Π local sizes for einsums, an estimate per element otherwise. */
  readonly flops: number;
  /** Local memory traffic of one execution, bytes (what elementwise ops are priced by). */
  readonly bytes: number;
  /** Einsums: the local GEMM at mb = 1 (see records.ts), which sets its efficiency. */
  readonly gemm: GemmShape | null;
  /** Whether it launches a kernel of its own (fused ops do not). */
  readonly kernel: boolean;
  /** Devices that compute the same thing (axes that split none of the op's dimensions). */
  readonly duplication: number;
  /** Executions per step on one device (layers per stage × microbatches). */
  readonly count: number;
  /** Collectives after the compute, each run `count` times unless it says otherwise. */
  readonly collectives: readonly Collective[];
  /** For matmuls: whether the op is part of the model FLOPs (false for recompute). */
  readonly model: boolean;
}

export interface MemoryBreakdown {
  readonly params: number;
  readonly gradients: number;
  readonly optimizer: number;
  readonly activations: number;
  readonly temporary: number;
  readonly total: number;
}

/** What lower(graph, mesh, plan) produces: the per-device program of one training step. */
export interface Program {
  readonly graph: Graph;
  readonly mesh: Mesh;
  readonly plan: Plan;
  readonly layout: CompiledLayout;
  /** The layout's records this program was instantiated from (what the cost model prices). */
  readonly lowering: LayoutLowering;
  readonly ops: readonly LoweredOp[];
  /** Sequences per microbatch on one device. */
  readonly microBatch: number;
  /** Pipeline stages (product of the axes of `layers`), 1 without a pipeline. */
  readonly stages: number;
  /** Devices that hold a copy of each weight shard and share the batch: ZeRO's N. */
  readonly dataParallel: number;
  /** Parameters held per device (before ZeRO), elements. */
  readonly localParams: number;
  /** Saved activation bytes of one execution of each block, per microbatch. */
  readonly savedBytes: Readonly<Partial<Record<BlockName, number>>>;
  readonly memory: MemoryBreakdown;
  readonly flops: {
    /** Global matmul FLOPs of a step without recompute (what MFU counts). */
    readonly modelPerStep: number;
    /** Global matmul FLOPs of a step as executed (with recompute). */
    readonly matmulPerStep: number;
    /** Matmul FLOPs one device executes per step. */
    readonly perDevice: number;
  };
}
