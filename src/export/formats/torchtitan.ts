import { torchtitanModel } from '../../engine/index.js';
import { analyse, argsText, header } from '../analysis.js';
import type { ExportInput, ExportOutput } from '../target.js';

/**
 * torchtitan: `--module/--config` name the shipped config function (llama3, or qwen3 for MoE)
 * whose model has the plan's dimensions (model_spec is off the command line), and `--section.option` flags override
 * its parallelism (mesh pp, dp_replicate, dp_shard, cp, tp from outer to inner), batch in tokens,
 * precision and activation checkpointing (the activation-checkpoint:NAME subcommand, last).
 * DDP is data_parallel_replicate_degree, FSDP2 (ZeRO-3) data_parallel_shard_degree, HSDP both. Experts split
 * over expert_parallel_degree ranks, the innermost of FSDP's; torchtitan routes them dropless.
 */
export function torchtitan(input: ExportInput): ExportOutput {
  const shape = analyse(input, 'torchtitan');
  const { plan, spec } = input;
  const model = torchtitanModel(spec)!;
  const pipelined = shape.pp > 1;
  // HSDP (a hybrid plan): FSDP2 shards over the plan's zeroAxes, the other data ranks replicate.
  const shard = { replicate: 1, shard: shape.dp };
  if (plan.zeroAxes) {
    shard.shard = 1;
    for (const a of shape.axes) if (a.role === 'data') shard[plan.zeroAxes.includes(a.name) ? 'shard' : 'replicate'] *= a.size;
  }
  const args: string[] = [
    `--module ${model.module}`,
    `--config ${model.config}`,
    `--parallelism.data_parallel_replicate_degree ${plan.zero === 0 ? shape.dp : shard.replicate}`,
    `--parallelism.data_parallel_shard_degree ${plan.zero === 3 ? shard.shard : 1}`,
  ];
  if (plan.zero === 3) args.push('--parallelism.fsdp_reshard_after_forward always');
  args.push(
    `--parallelism.tensor_parallel_degree ${shape.tp}`,
    // enable_sequence_parallel defaults to True: a tensor-parallel plan without it says so.
    ...(shape.tp > 1 && !shape.sequenceParallel ? ['--parallelism.no_enable_sequence_parallel'] : []),
    `--parallelism.context_parallel_degree ${shape.cp}`,
    `--parallelism.pipeline_parallel_degree ${shape.pp}`,
    ...(spec.experts ? [`--parallelism.expert_parallel_degree ${shape.ep}`] : []),
  );
  if (pipelined) {
    const v = shape.virtualStages;
    args.push(
      `--parallelism.pipeline_parallel_schedule ${v > 1 ? 'Interleaved1F1B' : '1F1B'}`,
      `--parallelism.pipeline_parallel_layers_per_stage ${shape.layers / (shape.pp * v)}`,
      '--parallelism.pipeline_parallel_first_stage_less_layers 0',
      '--parallelism.pipeline_parallel_last_stage_less_layers 0',
      `--parallelism.num_pp_microbatches ${plan.microbatches}`,
      // trainer.py: CUDA graphs do not support pipeline parallelism yet.
      '--training.disable_cuda_graphs',
    );
  }
  // One forward of one data-parallel rank sees a microbatch; the rest is gradient accumulation.
  args.push(
    `--training.num_tokens_per_microbatch_per_dp_rank ${shape.microBatch * spec.seqLen}`,
    `--training.num_tokens_per_train_step ${spec.batch * spec.seqLen}`,
    `--training.max_context_length ${spec.seqLen}`,
    `--training.mixed_precision_param ${spec.dtype === 'float32' ? 'float32' : 'bfloat16'}`,
    `activation-checkpoint:${plan.recompute === 'full' ? 'full' : 'none'}`,
  );
  const comments = header(shape, 'torchtitan');
  comments.push(`world size ${input.mesh.size} = data ${shape.dp} x tensor ${shape.tp} x pipeline ${shape.pp} x context ${shape.cp} (NGPU=${input.mesh.size}); model: ${model.module.split('.').pop()} flavor ${model.flavor}`);
  if (spec.experts) {
    const where = shape.ep > 1 ? `experts over ${shape.ep} of the FSDP ranks (efsdp ${shape.dp / shape.ep})` : 'every expert on every rank';
    comments.push(`${where}; torchtitan routes without a capacity (dropless), the estimate padded each expert to capacity factor ${spec.capacityFactor}`);
  }
  return { format: 'torchtitan', syntax: 'args', text: argsText(comments, args) };
}
