import { analyse, axesWith, dataOrderProblem, fixedRoleProblems, header, megatronStyleTensorProblems, orderNote } from '../analysis.js';
import { Missing, type ExportInput, type ExportOutput } from '../target.js';

/**
 * torchtitan: its --parallelism.*, --training.* and --activation_checkpoint.* flags (the
 * JobConfig fields). Data parallelism is DDP (data_parallel_replicate_degree) or FSDP2
 * (data_parallel_shard_degree, ZeRO-3); its mesh is pp, dp_replicate, dp_shard, cp, tp from
 * outer to inner. The model comes from --model.name/--model.flavor, which stay the user's.
 */
export function torchtitan(input: ExportInput): ExportOutput {
  const shape = analyse(input);
  const { plan, spec } = input;
  const missing = new Missing('torchtitan');
  missing.need(spec.kind === 'decoder', 'torchtitan trains decoder-only models; the plan is for an encoder-decoder');
  for (const p of fixedRoleProblems(shape, 'torchtitan')) missing.need(false, p);
  for (const p of megatronStyleTensorProblems(shape, 'torchtitan')) missing.need(false, p);
  const dataOrder = dataOrderProblem(shape, 'torchtitan');
  missing.need(dataOrder === null, dataOrder ?? '');
  missing.need(plan.zero === 0 || plan.zero === 3, `torchtitan shards gradients and optimizer state only together with the parameters (FSDP2, ZeRO-3): zero ${plan.zero} cannot be expressed`);
  missing.need(plan.recompute !== 'selective', "torchtitan's selective activation checkpointing picks ops or every n-th layer, not the attention core: recompute selective cannot be expressed");
  missing.throwIfAny();

  const pipelined = shape.pp > 1;
  // Without a pipeline, microbatches are gradient accumulation: global / (local x dp) steps.
  const local = pipelined ? shape.perReplica : shape.microBatch;
  const args: string[] = [
    `--parallelism.data_parallel_replicate_degree ${plan.zero === 0 ? shape.dp : 1}`,
    `--parallelism.data_parallel_shard_degree ${plan.zero === 3 ? shape.dp : 1}`,
  ];
  if (plan.zero === 3) args.push('--parallelism.fsdp_reshard_after_forward always');
  args.push(
    `--parallelism.tensor_parallel_degree ${shape.tp}`,
    `--parallelism.context_parallel_degree ${shape.cp}`,
    `--parallelism.pipeline_parallel_degree ${shape.pp}`,
  );
  if (pipelined) {
    args.push('--parallelism.pipeline_parallel_schedule 1F1B', `--parallelism.pipeline_parallel_microbatch_size ${shape.microBatch}`);
  }
  args.push(
    `--training.local_batch_size ${local}`,
    `--training.global_batch_size ${spec.batch}`,
    `--training.seq_len ${spec.seqLen}`,
    `--activation_checkpoint.mode ${plan.recompute === 'full' ? 'full' : 'none'}`,
  );
  const comments = header(shape, 'torchtitan');
  comments.push(`world size ${input.mesh.size} = data ${shape.dp} x tensor ${shape.tp} x pipeline ${shape.pp} x context ${shape.cp}; set --model.name/--model.flavor to a model of these dimensions`);
  if (axesWith(shape, 'tensor').length > 0) comments.push("note: torchtitan's tensor parallelism also splits the sequence in norms and residuals (sequence parallel): less activation memory than estimated, same math");
  const note = orderNote(shape, 'torchtitan', ['pipeline', 'data', 'context', 'tensor']);
  if (note) comments.push(note);
  const text = [...comments.map((c) => `# ${c}`), args.map((a, i) => (i < args.length - 1 ? `${a} \\` : a)).join('\n')].join('\n') + '\n';
  return { format: 'torchtitan', syntax: 'args', text };
}
