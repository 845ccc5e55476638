import { analyse, header } from '../analysis.js';
import type { ExportInput, ExportOutput } from '../target.js';

const ACTIVATION = { relu: '"relu"', gelu: '"gelu"', swiglu: '["swish", "linear"]' } as const;

/**
 * Mesh-TensorFlow (mesh_tensorflow.transformer): gin bindings for utils.run, on top of
 * defaults.gin (always parsed first). The mesh_shape and layout strings are what
 * mtf.convert_to_shape / convert_to_layout_rules parse; the model's sizes are the macros
 * defaults.gin binds them through. defaults.gin microbatches at 2048 tokens per replica and
 * sizes the position table at 512, so both are always set.
 */
export function meshTf(input: ExportInput): ExportOutput {
  const shape = analyse(input, 'mesh-tf');
  const { plan, spec } = input;
  const lines = header(shape, 'Mesh-TensorFlow (mesh_tensorflow.transformer) gin, after defaults.gin').map((l) => `# ${l}`);
  const bi = spec.kind === 'encoder-decoder';
  lines.push(
    `# the vocabulary (utils.run.vocabulary) must have ${spec.vocab} entries`,
    `MESH_SHAPE = "${shape.meshText}"`,
    // transformer_layers.attention_params: with num_memory_heads, K/V heads are "heads" and the query heads within a group "query_heads".
    `LAYOUT_RULES = "${shape.layoutText.replace(/(^|;)q_group:/, '$1query_heads:')}"`,
    'utils.run.mesh_shape = %MESH_SHAPE',
    'utils.run.layout_rules = %LAYOUT_RULES',
    `utils.run.model_type = "${bi ? 'bitransformer' : 'lm'}"`,
    `utils.run.batch_size = ("sequences_per_batch", ${spec.batch})`,
    `utils.run.sequence_length = {"inputs": ${spec.seqLen}, "targets": ${spec.seqLen}}`,
    // serialize_num_microbatches: per-replica sequences / (this // the longest feature) microbatches.
    `utils.serialize_num_microbatches.tokens_per_microbatch_per_replica = ${shape.microBatch * spec.seqLen}`,
    `Unitransformer.max_length = ${spec.seqLen}`,
  );
  if (bi && spec.encoderLayers !== spec.decoderLayers) {
    lines.push(`encoder/transformer.make_layer_stack.num_layers = ${spec.encoderLayers}`, `decoder/transformer.make_layer_stack.num_layers = ${spec.decoderLayers}`);
  } else {
    lines.push(`num_layers = ${spec.decoderLayers}`);
  }
  lines.push(
    `d_model = ${spec.dModel}`,
    `d_ff = ${spec.dFf}`,
    `num_heads = ${spec.heads}`,
    `d_kv = ${spec.dKv}`,
    `DenseReluDense.activation = ${ACTIVATION[spec.activation]}`,
    `dropout_rate = ${spec.dropout ? 0.1 : 0.0}`,
    `Unitransformer.shared_embedding_and_softmax_weights = ${spec.tiedEmbeddings ? 'True' : 'False'}`,
  );
  if (shape.kvHeads !== spec.heads) lines.push(`SelfAttention.num_memory_heads = ${shape.kvHeads}`);
  lines.push(`LayerStack.recompute_grads = ${plan.recompute === 'full' ? 'True' : 'False'}`);
  return { format: 'mesh-tf', syntax: 'gin', text: lines.join('\n') + '\n' };
}
