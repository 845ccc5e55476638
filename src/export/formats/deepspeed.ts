import { analyse } from '../analysis.js';
import type { ExportInput, ExportOutput } from '../target.js';

/**
 * DeepSpeed: the JSON config deepspeed.initialize reads: ZeRO stage, AutoTP's
 * tensor_parallel.autotp_size, gradient accumulation, precision. The model (its dimensions,
 * recomputation) is the user's code. DeepSpeedConfig checks train_batch_size = micro batch x
 * accumulation x world size, and with AutoTP (no mpu) the world size is every rank, TP ranks
 * included (deepspeedai/DeepSpeed#7298): so train_batch_size is the global batch x the TP degree,
 * though each TP group trains one copy of the same micro batch. MoE models go through AutoEP's
 * expert_parallel section.
 */
export function deepspeed(input: ExportInput): ExportOutput {
  const shape = analyse(input, 'deepspeed');
  const { plan, spec, mesh } = input;
  const config: Record<string, unknown> = {
    train_batch_size: shape.microBatch * plan.microbatches * mesh.size,
    train_micro_batch_size_per_gpu: shape.microBatch,
    gradient_accumulation_steps: plan.microbatches,
    // overlap_comm: reduce (and with stage 3 gather) while the backward runs, as the cost model prices it.
    zero_optimization: plan.zero > 0 ? { stage: plan.zero, overlap_comm: true } : { stage: plan.zero },
  };
  if (shape.tp > 1) config.tensor_parallel = { autotp_size: shape.tp };
  if (spec.experts) {
    // AutoEP (module_inject/auto_ep_config.py) replaces the model's MoE layers: expert groups of
    // autoep_size ranks, ZeRO over the rest; it routes without a capacity (dropless), top_k as given.
    config.expert_parallel = { enabled: true, autoep_size: shape.ep, top_k: spec.topK ?? 2 };
  }
  if (spec.dtype === 'bfloat16') config.bf16 = { enabled: true };
  if (spec.dtype === 'float16') config.fp16 = { enabled: true };
  return { format: 'deepspeed', syntax: 'json', text: JSON.stringify(config, null, 2) + '\n' };
}
