import type { HardwareProfile } from '../cost/profile.js';
import type { Recompute, ZeroStage } from '../lower/plan.js';
import type { Activation, Dtype, ModelKind, Positions } from '../model/spec.js';
import type { AxisRole } from './shape.js';

/** The training engines a plan is exported to, as `--engine` and `--format` spell them. */
export const ENGINES = ['mesh-tf', 't5x', 'maxtext', 'megatron', 'deepspeed', 'torchtitan'] as const;
export type Engine = (typeof ENGINES)[number];

export function isEngine(s: string): s is Engine {
  return (ENGINES as readonly string[]).includes(s);
}

/**
 * What one engine can express, as data: the rules (rules.ts), the search's `--engine` filter,
 * the exports' refusals and the README's table all read this one record. Each field says where
 * in the engine's source it was read (test/fixtures/engines/ holds the keys at that commit).
 */
export interface Capabilities {
  readonly title: string;
  readonly kinds: readonly ModelKind[];
  readonly zero: readonly ZeroStage[];
  readonly recompute: readonly Recompute[];
  /** Recompute only for these model kinds (t5x: only scalable_t5's encoder-decoder has remat_policy). */
  readonly recomputeKinds?: readonly ModelKind[];
  /** `layers` split over a mesh axis (pipeline stages). */
  readonly pipeline: boolean;
  readonly virtualStages: boolean;
  /** `length` split over a mesh axis of its own (context parallelism). */
  readonly context: boolean;
  readonly sequenceParallel: boolean;
  /** A dimension split over several mesh axes. */
  readonly multiAxis: boolean;
  /** Any dimension on any axis, by logical-axis rules (else: the fixed roles of shape.ts). */
  readonly freeLayout: boolean;
  /** A tensor axis may split some of heads/d_ff/vocab and not the others. */
  readonly partialTensor: boolean;
  readonly vocabSplit: boolean;
  /** At most this many mesh axes that do something. */
  readonly maxAxes?: number;
  /** Ranks ordered by role, outer to inner; null: the layout names axes, any order. */
  readonly deviceOrder: readonly AxisRole[] | null;
  readonly activations: readonly Activation[];
  readonly positions: readonly Positions[];
  /** Fewer KV heads than query heads. */
  readonly gqa: boolean;
  readonly dtypes: readonly Dtype[];
  /**
   * ZeRO with length split as the plan prices it: states sharded over the batch and context ranks
   * together (lower.ts zeroMask). Megatron-LM's distributed optimizer shards over dp x cp; MaxText's
   * logical rules put `embed` on fsdp and context alike (src/maxtext/configs/base.yml).
   */
  readonly zeroWithContext: boolean;
  /** Hybrid sharding (--zero-axes) at ZeRO-3: MaxText's fsdp x data axes, torchtitan's HSDP (dp_shard within dp_replicate). */
  readonly hybridZero: boolean;
  /**
   * ZeRO stages at which the engine reduces gradients only once the backward is done (nothing
   * hidden behind it): the search and estimate --engine price those plans with no overlap.
   */
  readonly reduceAfterBackward: readonly ZeroStage[];
  /**
   * What its full recompute runs again (HardwareProfile.fullRecompute): 'needed' where XLA compiles
   * the step and drops the rerun's dead code (JAX's remat, TF's recompute_grad), 'layer' where the
   * whole layer's forward runs again (torch.utils.checkpoint, Megatron-LM's full granularity).
   */
  readonly fullRecompute: 'layer' | 'needed';
  /**
   * Whose kernels run the step (HardwareProfile.kernels): 'fused' where a compiler or fused kernels
   * run it (XLA; Megatron-LM with Transformer Engine and apex), as the presets' fitted rows were run,
   * 'eager' where PyTorch runs the model code op by op (torchtitan without torch.compile, DeepSpeed
   * on a Hugging Face model), priced at the profile's eagerCompute of the fused kernels' speed.
   */
  readonly kernels: 'fused' | 'eager';
  /** Conditions the fields above do not say (checked in rules.ts), for the README. */
  readonly also: readonly string[];
}

const ALL_DTYPES: readonly Dtype[] = ['bfloat16', 'float16', 'float32'];

export const CAPABILITIES: Record<Engine, Capabilities> = {
  // mesh_tensorflow/transformer: utils.run(mesh_shape, layout_rules), LayerStack.recompute_grads,
  // utils.serialize_num_microbatches; LayoutRules maps a dimension to one mesh axis at most.
  'mesh-tf': {
    title: 'Mesh-TF', kinds: ['decoder', 'encoder-decoder'], zero: [0], recompute: ['none', 'full'], pipeline: false,
    virtualStages: false, context: true, sequenceParallel: false, multiAxis: false, freeLayout: true, partialTensor: true,
    vocabSplit: true, deviceOrder: null, activations: ['relu', 'gelu', 'swiglu'], positions: ['learned'], gqa: true,
    dtypes: ALL_DTYPES, zeroWithContext: false, hybridZero: false, reduceAfterBackward: [], fullRecompute: 'needed', kernels: 'fused',
    also: ['microbatches: tokens per microbatch per replica must divide the per-replica tokens'],
  },
  // t5x/partitioning.py PjitPartitioner (mesh axes replica, data, model; logical_axis_rules),
  // trainer.Trainer.num_microbatches; examples/scalable_t5 T5Config.remat_policy none|minimal|full.
  t5x: {
    title: 't5x', kinds: ['decoder', 'encoder-decoder'], zero: [0, 3], recompute: ['none', 'minimal', 'full'],
    recomputeKinds: ['encoder-decoder'], pipeline: false, virtualStages: false, context: false, sequenceParallel: false,
    multiAxis: true, freeLayout: true, partialTensor: true, vocabSplit: true, maxAxes: 2,
    deviceOrder: ['data', 'tensor'], activations: ['relu', 'gelu', 'swiglu'], positions: ['learned', 'rotary'],
    gqa: false, dtypes: ['bfloat16', 'float32'], zeroWithContext: false, hybridZero: false, reduceAfterBackward: [], fullRecompute: 'needed', kernels: 'fused',
    also: ['ZeRO-3 by a last (embed, data) rule: d_model must stay whole', 'the model axis lies within one slice (ici_mesh_shape)'],
  },
  // src/maxtext/configs/base.yml: mesh_axes, ici_/dcn_*_parallelism, logical_axis_rules,
  // shard_optimizer_over_data (ZeRO-1), fsdp (ZeRO-3), remat_policy, num_pipeline_microbatches/repeats.
  maxtext: {
    title: 'MaxText', kinds: ['decoder'], zero: [0, 1, 3], recompute: ['none', 'selective', 'minimal', 'full'], pipeline: true,
    virtualStages: true, context: true, sequenceParallel: true, multiAxis: true, freeLayout: true, partialTensor: true,
    vocabSplit: true, deviceOrder: null, activations: ['relu', 'gelu', 'swiglu'], positions: ['learned', 'rotary'],
    gqa: true, dtypes: ALL_DTYPES, zeroWithContext: true, hybridZero: true, reduceAfterBackward: [], fullRecompute: 'needed', kernels: 'fused',
    also: ['each axis splits at the slice boundary into ici_* and dcn_* parts', 'num_pipeline_microbatches a multiple of the stages', 'int(devices x per_device_batch_size) sequences per microbatch'],
  },
  // megatron/training/arguments.py: rank order tp-cp-ep-dp-pp (tp innermost); --use-distributed-optimizer,
  // --use-megatron-fsdp with --data-parallel-sharding-strategy; --recompute-granularity.
  megatron: {
    title: 'Megatron-LM', kinds: ['decoder'], zero: [0, 1, 2, 3], recompute: ['none', 'selective', 'full'], pipeline: true,
    virtualStages: true, context: true, sequenceParallel: true, multiAxis: true, freeLayout: false, partialTensor: false,
    vocabSplit: true, deviceOrder: ['pipeline', 'data', 'context', 'tensor'], activations: ['gelu', 'swiglu'],
    positions: ['learned', 'rotary'], gqa: true, dtypes: ALL_DTYPES, zeroWithContext: true, hybridZero: false, reduceAfterBackward: [], fullRecompute: 'layer', kernels: 'fused',
    also: ['context parallelism needs seq_length % (2 x cp) == 0', 'global batch a multiple of micro batch x data-parallel size'],
  },
  // deepspeed/runtime: zero_optimization.stage 0-3, tensor_parallel.autotp_size (AutoTP splits
  // nn.Linear layers), gradient_accumulation_steps; pipelines and recompute live in model code.
  deepspeed: {
    title: 'DeepSpeed', kinds: ['decoder', 'encoder-decoder'], zero: [0, 1, 2, 3], recompute: ['none'], pipeline: false,
    virtualStages: false, context: false, sequenceParallel: false, multiAxis: true, freeLayout: false, partialTensor: false,
    vocabSplit: false, maxAxes: undefined, deviceOrder: ['data', 'tensor'], activations: ['relu', 'gelu', 'swiglu'],
    positions: ['learned', 'rotary'], gqa: true, dtypes: ALL_DTYPES, zeroWithContext: false, hybridZero: false,
    // runtime/engine.py allreduce_gradients: stages 0 and 1 reduce at the accumulation boundary, after the backward.
    reduceAfterBackward: [0, 1], fullRecompute: 'layer', kernels: 'eager',
    also: ['AutoTP: one tensor group that splits heads and d_ff (Linear layers), vocab whole', 'train_batch_size counts every rank, TP ranks included (deepspeedai/DeepSpeed#7298)'],
  },
  // torchtitan/config/configs.py ParallelismConfig (mesh pp, dp_replicate, dp_shard, cp, tp), FSDP2
  // (data_parallel_shard_degree), activation-checkpoint:none|full|selective; models from --module/--config.
  torchtitan: {
    title: 'torchtitan', kinds: ['decoder'], zero: [0, 3], recompute: ['none', 'full'], pipeline: true, virtualStages: true,
    context: false, sequenceParallel: true, multiAxis: true, freeLayout: false, partialTensor: false, vocabSplit: true,
    deviceOrder: ['pipeline', 'data', 'context', 'tensor'], activations: ['swiglu'], positions: ['rotary'], gqa: true,
    dtypes: ['bfloat16', 'float32'], zeroWithContext: false, hybridZero: true, reduceAfterBackward: [], fullRecompute: 'layer', kernels: 'eager',
    also: ['the model is a shipped llama3 or qwen3 flavor (model_spec is off the command line)', 'cp > 1 shards parameters over cp (FSDP), which no plan here does'],
  },
};

/**
 * Engines a benchmark row may name (its `engine` column): every engine a plan exports to, and
 * trainers whose published runs are read but not exported to. llm-foundry: MosaicML's Composer with
 * PyTorch FSDP (torch.utils.checkpoint for activation checkpointing; no torch.compile in its
 * benchmark yamls, scripts/train/benchmarking at 5e85bd62).
 */
export const ROW_ENGINES = [...ENGINES, 'llm-foundry'] as const;
export type RowEngine = (typeof ROW_ENGINES)[number];

export function isRowEngine(s: string): s is RowEngine {
  return (ROW_ENGINES as readonly string[]).includes(s);
}

/** How an engine runs a step, for pricing: what its full recompute reruns and whose kernels run it. */
export type RunSemantics = Pick<Capabilities, 'title' | 'fullRecompute' | 'kernels'>;

const LLM_FOUNDRY: RunSemantics = { title: 'llm-foundry', fullRecompute: 'layer', kernels: 'eager' };

export function runSemantics(engine: RowEngine): RunSemantics {
  return engine === 'llm-foundry' ? LLM_FOUNDRY : CAPABILITIES[engine];
}

/**
 * A profile as the engine runs on it: full recompute reruns what the engine reruns
 * (Capabilities.fullRecompute), whatever the profile assumed; an eager engine's kernels run at the
 * profile's eagerCompute of its (fused) efficiencies. The same object when nothing changes; a
 * profile already eager is not slowed again.
 */
export function asRunBy<P extends Pick<HardwareProfile, 'fullRecompute' | 'kernels' | 'eagerCompute' | 'efficiency' | 'sources'>>(engine: RowEngine, profile: P): P {
  const c = runSemantics(engine);
  let out = profile;
  if ((profile.fullRecompute ?? 'layer') !== c.fullRecompute) {
    const why = c.fullRecompute === 'needed' ? 'XLA drops what the backward does not read' : 'the whole layer runs again';
    out = { ...out, fullRecompute: c.fullRecompute, sources: { ...out.sources, fullRecompute: `${c.title}'s full recompute: ${why}` } };
  }
  const f = profile.eagerCompute ?? 1;
  if (c.kernels === 'eager' && (profile.kernels ?? 'fused') === 'fused' && f !== 1) {
    const e = profile.efficiency;
    out = {
      ...out, kernels: 'eager',
      efficiency: Object.fromEntries(Object.entries(e).map(([k, v]) => [k, v * f])) as P['efficiency'],
      sources: { ...out.sources, kernels: `${c.title} runs eager PyTorch kernels: the efficiencies times eagerCompute ${f}` },
    };
  }
  return out;
}

/**
 * A model torchtitan ships: the `--module` package, the config_registry function (`--config`) and
 * the flavor it builds, with that flavor's dimensions (test/fixtures/engines/torchtitan.json).
 * MoE flavors carry their experts; their dense FFN is unused (every layer is MoE).
 */
export interface TorchtitanModel {
  readonly module: string;
  readonly flavor: string;
  readonly config: string;
  readonly dim: number;
  readonly layers: number;
  readonly heads: number;
  readonly kvHeads: number;
  /** Channels per head: dim / heads for llama3, an explicit head_dim for qwen3. */
  readonly headDim: number;
  readonly ffn?: number;
  readonly vocab: number;
  readonly tied: boolean;
  readonly moe?: { readonly experts: number; readonly topK: number; readonly hidden: number };
}

/** compute_ffn_hidden_dim(dim, multiple_of, ffn_dim_multiplier): int(8·dim/3) × multiplier, rounded up. */
export function llama3Ffn(dim: number, multipleOf: number, multiplier: number | null): number {
  let h = Math.trunc((2 * 4 * dim) / 3);
  if (multiplier !== null) h = Math.trunc(multiplier * h);
  return multipleOf * Math.ceil(h / multipleOf);
}

const LLAMA3 = 'torchtitan.models.llama3';
const QWEN3 = 'torchtitan.models.qwen3';

export const TORCHTITAN_MODELS: readonly TorchtitanModel[] = [
  { module: LLAMA3, flavor: '8B', config: 'llama3_8b', dim: 4096, layers: 32, heads: 32, kvHeads: 8, headDim: 128, ffn: llama3Ffn(4096, 1024, 1.3), vocab: 128256, tied: false },
  { module: LLAMA3, flavor: '70B', config: 'llama3_70b', dim: 8192, layers: 80, heads: 64, kvHeads: 8, headDim: 128, ffn: llama3Ffn(8192, 4096, 1.3), vocab: 128256, tied: false },
  { module: LLAMA3, flavor: '405B', config: 'llama3_405b', dim: 16384, layers: 126, heads: 128, kvHeads: 8, headDim: 128, ffn: llama3Ffn(16384, 4096, 1.2), vocab: 128256, tied: false },
  // qwen3/__init__.py _30b_a3b (config qwen3_30b_a3b): 128 experts of hidden 768, top 8, on every layer, no shared expert.
  { module: QWEN3, flavor: '30B-A3B', config: 'qwen3_30b_a3b', dim: 2048, layers: 48, heads: 32, kvHeads: 4, headDim: 128, vocab: 151936, tied: false, moe: { experts: 128, topK: 8, hidden: 768 } },
];
