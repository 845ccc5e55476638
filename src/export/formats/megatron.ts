import { analyse, axesWith, dataOrderProblem, fixedRoleProblems, header, megatronStyleTensorProblems, orderNote } from '../analysis.js';
import { Missing, type ExportInput, type ExportOutput } from '../target.js';

/**
 * Megatron-LM: arguments for pretrain_gpt.py. The model's own arguments (--num-layers,
 * --hidden-size, ...) stay the user's: the header names the dimensions the plan was made for.
 * Megatron's rank order is tp (inner), cp, dp, pp (outer).
 */
export function megatron(input: ExportInput): ExportOutput {
  const shape = analyse(input);
  const { plan, spec } = input;
  const missing = new Missing('megatron');
  missing.need(spec.kind === 'decoder', 'this export writes pretrain_gpt.py arguments, for decoder-only models; the plan is for an encoder-decoder');
  for (const p of fixedRoleProblems(shape, 'Megatron-LM')) missing.need(false, p);
  for (const p of megatronStyleTensorProblems(shape, 'Megatron-LM')) missing.need(false, p);
  const dataOrder = dataOrderProblem(shape, 'Megatron-LM');
  missing.need(dataOrder === null, dataOrder ?? '');
  missing.need(!(plan.zero > 0 && shape.cp > 1), `Megatron-LM shards optimizer state over data- and context-parallel ranks together (${shape.dp * shape.cp}), the plan only over the batch axes (${shape.dp})`);
  missing.need(!(plan.zero >= 2 && shape.pp > 1), `Megatron-FSDP (zero ${plan.zero}) does not run with pipeline parallelism`);
  missing.throwIfAny();

  const args: string[] = [
    `--tensor-model-parallel-size ${shape.tp}`,
    `--pipeline-model-parallel-size ${shape.pp}`,
    `--context-parallel-size ${shape.cp}`,
    `--micro-batch-size ${shape.microBatch}`,
    `--global-batch-size ${spec.batch}`,
    `--seq-length ${spec.seqLen}`,
  ];
  if (plan.recompute === 'selective') args.push('--recompute-granularity selective');
  if (plan.recompute === 'full') args.push('--recompute-granularity full', '--recompute-method uniform', '--recompute-num-layers 1');
  if (plan.zero === 1) args.push('--use-distributed-optimizer');
  if (plan.zero >= 2) {
    args.push(
      '--use-megatron-fsdp',
      `--data-parallel-sharding-strategy ${plan.zero === 2 ? 'optim_grads' : 'optim_grads_params'}`,
      '--use-distributed-optimizer',
      '--no-gradient-accumulation-fusion',
      '--ckpt-format fsdp_dtensor',
    );
  }
  if (spec.dtype === 'bfloat16') args.push('--bf16');
  if (spec.dtype === 'float16') args.push('--fp16');
  const comments = header(shape, 'Megatron-LM (pretrain_gpt.py)');
  comments.push(`world size ${input.mesh.size} = data ${shape.dp} x tensor ${shape.tp} x pipeline ${shape.pp} x context ${shape.cp}`);
  if (axesWith(shape, 'tensor').length > 0) comments.push('without --sequence-parallel, as planned: the plan keeps length whole on the tensor axis');
  const note = orderNote(shape, 'Megatron-LM', ['pipeline', 'data', 'context', 'tensor']);
  if (note) comments.push(note);
  const text = [...comments.map((c) => `# ${c}`), args.map((a, i) => (i < args.length - 1 ? `${a} \\` : a)).join('\n')].join('\n') + '\n';
  return { format: 'megatron', syntax: 'args', text };
}
