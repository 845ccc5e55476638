import { axesOf } from '../../layout/layout.js';
import { analyse, axesWith, dataOrderProblem, fixedRoleProblems } from '../analysis.js';
import { Missing, type ExportInput, type ExportOutput } from '../target.js';

/**
 * DeepSpeed: the JSON config deepspeed.initialize reads. It holds data parallelism with
 * ZeRO, gradient accumulation, precision and AutoTP's tensor_parallel.autotp_size; pipeline
 * stages, vocabulary-parallel layers and recomputation live in the model code, not here.
 * DeepSpeed checks train_batch_size = micro batch x accumulation x data-parallel ranks.
 */
export function deepspeed(input: ExportInput): ExportOutput {
  const shape = analyse(input);
  const { plan, spec } = input;
  const missing = new Missing('deepspeed');
  for (const p of fixedRoleProblems(shape, 'DeepSpeed')) missing.need(false, p);
  const dataOrder = dataOrderProblem(shape, 'DeepSpeed');
  missing.need(dataOrder === null, dataOrder ?? '');
  missing.need(shape.pp === 1, () => `DeepSpeed's config cannot set pipeline stages (deepspeed.pipe.PipelineModule(num_stages=${shape.pp}) in the model code does): layers:${axesOf(plan.layout, 'layers').join('+')} cannot be expressed; use --format megatron`);
  missing.need(shape.cp === 1, "DeepSpeed's config has no context parallelism (Ulysses sequence parallelism is set up in model code): length cannot be split; use --format megatron");
  const tensor = axesWith(shape, 'tensor');
  missing.need(axesOf(plan.layout, 'vocab').length === 0, () => `DeepSpeed's config has no vocabulary-parallel embedding or output layer (AutoTP, tensor_parallel.autotp_size, splits Linear layers): vocab:${axesOf(plan.layout, 'vocab').join('+')} cannot be expressed; use --format megatron`);
  for (const a of tensor) {
    missing.need(a.dims.includes('heads') && a.dims.includes('d_ff'), `DeepSpeed AutoTP splits attention heads and d_ff together, but the plan splits only ${a.dims.join(' and ')} over ${a.name}`);
  }
  missing.need(tensor.length <= 1, 'DeepSpeed AutoTP has one tensor-parallel group, but the plan has several tensor axes');
  missing.need(!(tensor.length > 0 && plan.zero === 3), 'DeepSpeed AutoTP trains with ZeRO stages 0 to 2: zero 3 with tensor parallelism cannot be expressed');
  missing.need(plan.recompute === 'none', `DeepSpeed's config does not switch recomputation on (the model code calls deepspeed.checkpointing.checkpoint): recompute ${plan.recompute} cannot be expressed`);
  missing.throwIfAny();

  const config: Record<string, unknown> = {
    train_batch_size: spec.batch,
    train_micro_batch_size_per_gpu: shape.microBatch,
    gradient_accumulation_steps: plan.microbatches,
    zero_optimization: { stage: plan.zero },
  };
  if (tensor.length > 0) config.tensor_parallel = { autotp_size: shape.tp };
  if (spec.dtype === 'bfloat16') config.bf16 = { enabled: true };
  if (spec.dtype === 'float16') config.fp16 = { enabled: true };
  return { format: 'deepspeed', syntax: 'json', text: JSON.stringify(config, null, 2) + '\n' };
}
