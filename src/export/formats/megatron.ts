import { analyse, argsText, axesWith, header } from '../analysis.js';
import type { ExportInput, ExportOutput } from '../target.js';

/**
 * Megatron-LM: arguments for pretrain_gpt.py, complete: the model's dimensions, parallelism
 * (rank order tp, cp, dp, pp from inner to outer), ZeRO as the distributed optimizer (1) or
 * Megatron-FSDP (2, 3), recompute, batch and precision, on mock data with a null tokenizer of
 * the model's vocabulary, so it launches as written; training length and learning rate are placeholders.
 */
export function megatron(input: ExportInput): ExportOutput {
  const shape = analyse(input, 'megatron');
  const { plan, spec } = input;
  const args: string[] = [
    `--num-layers ${spec.decoderLayers}`,
    `--hidden-size ${spec.dModel}`,
    `--num-attention-heads ${spec.heads}`,
    `--kv-channels ${spec.dKv}`,
    `--ffn-hidden-size ${spec.dFf}`,
    `--seq-length ${spec.seqLen}`,
    `--max-position-embeddings ${spec.seqLen}`,
    `--position-embedding-type ${spec.positions === 'rotary' ? 'rope' : 'learned_absolute'}`,
  ];
  if (shape.kvHeads !== spec.heads) args.push('--group-query-attention', `--num-query-groups ${shape.kvHeads}`);
  if (spec.activation === 'swiglu') args.push('--swiglu');
  if (!spec.tiedEmbeddings) args.push('--untie-embeddings-and-output-weights');
  if (!spec.dropout) args.push('--attention-dropout 0', '--hidden-dropout 0');
  if (spec.experts) {
    // Mixture of experts (arguments.py _add_moe_args, TransformerConfig): the plan pads each expert
    // to its capacity (the cost model's dispatch buffers) and moves tokens with all-to-alls.
    args.push(
      `--num-experts ${spec.experts}`,
      `--moe-router-topk ${spec.topK}`,
      `--moe-ffn-hidden-size ${spec.dFfExpert}`,
      `--moe-expert-capacity-factor ${spec.capacityFactor}`,
      '--moe-pad-expert-input-to-capacity',
      '--moe-token-dispatcher-type alltoall',
    );
    // An integer N: one MoE layer in every N (Megatron's first of each N, the plan's last: the same cost).
    if (spec.moeEvery! > 1) args.push(`--moe-layer-freq ${spec.moeEvery}`);
    if (spec.sharedExperts) args.push(`--moe-shared-expert-intermediate-size ${spec.sharedExperts * spec.dFfExpert!}`);
  }
  args.push(
    `--tensor-model-parallel-size ${shape.tp}`,
    `--pipeline-model-parallel-size ${shape.pp}`,
    `--context-parallel-size ${shape.cp}`,
  );
  if (spec.experts) args.push(`--expert-model-parallel-size ${shape.ep}`);
  if (shape.virtualStages > 1) args.push(`--num-virtual-stages-per-pipeline-rank ${shape.virtualStages}`);
  if (shape.sequenceParallel && shape.tp > 1) args.push('--sequence-parallel');
  args.push(`--micro-batch-size ${shape.microBatch}`, `--global-batch-size ${spec.batch}`);
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
  // The cost model hides the gradient reduction behind the backward and ZeRO's gathers behind the
  // neighbouring layer; Megatron does that only when asked (both default off).
  if (shape.dp > 1) args.push('--overlap-grad-reduce');
  if (shape.dp > 1 && plan.zero >= 1) args.push('--overlap-param-gather');
  if (spec.dtype === 'bfloat16') args.push('--bf16');
  if (spec.dtype === 'float16') args.push('--fp16');
  args.push('--mock-data', '--tokenizer-type NullTokenizer', `--vocab-size ${spec.vocab}`, '--train-iters 1000', '--lr 1e-4');
  const comments = header(shape, 'Megatron-LM (pretrain_gpt.py)');
  comments.push(`world size ${input.mesh.size} = data ${shape.dp} x tensor ${shape.tp} x pipeline ${shape.pp} x context ${shape.cp}${spec.experts ? `; experts over ${shape.ep} of the data ranks` : ''}`);
  if (axesWith(shape, 'tensor').length > 0 && !shape.sequenceParallel) comments.push('without --sequence-parallel, as planned: the plan keeps length whole on the tensor axis');
  comments.push('--mock-data, --train-iters and --lr are placeholders: give your data, tokenizer and schedule');
  return { format: 'megatron', syntax: 'args', text: argsText(comments, args) };
}
