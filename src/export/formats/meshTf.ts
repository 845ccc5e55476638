import { axesOf } from '../../layout/layout.js';
import { DIM_NAMES } from '../../model/graph.js';
import { analyse, header } from '../analysis.js';
import { Missing, type ExportInput, type ExportOutput } from '../target.js';

/**
 * Mesh-TensorFlow (mesh_tensorflow.transformer): the mesh_shape and layout strings as
 * mtf.convert_to_shape / mtf.convert_to_layout_rules parse them, and the gin bindings of
 * utils.run that take them. Mesh-TF maps a tensor dimension to one mesh axis at most
 * (LayoutRules.tensor_dimension_to_mesh_axis raises otherwise), has no pipeline and no ZeRO.
 */
export function meshTf(input: ExportInput): ExportOutput {
  const shape = analyse(input);
  const { plan, spec } = input;
  const missing = new Missing('mesh-tf');
  for (const d of DIM_NAMES) {
    const axes = axesOf(plan.layout, d);
    missing.need(axes.length <= 1, () => `Mesh-TensorFlow maps a dimension to one mesh axis at most, but the plan splits ${d} over ${axes.join('+')}`);
  }
  missing.need(axesOf(plan.layout, 'layers').length === 0, () => `Mesh-TensorFlow has no pipeline parallelism: layers:${axesOf(plan.layout, 'layers').join('+')} cannot be expressed`);
  missing.need(plan.zero === 0, `Mesh-TensorFlow has no ZeRO: zero ${plan.zero} (optimizer state split over the batch axes) cannot be expressed`);
  missing.need(plan.recompute !== 'selective', 'Mesh-TensorFlow recomputes whole layers (LayerStack.recompute_grads) or nothing: selective recompute of the attention core cannot be expressed');
  missing.throwIfAny();

  const lines = header(shape, 'Mesh-TensorFlow (mesh_tensorflow.transformer) gin').map((l) => `# ${l}`);
  lines.push(
    `MESH_SHAPE = "${shape.mesh}"`,
    `LAYOUT_RULES = "${shape.layout}"`,
    'utils.run.mesh_shape = %MESH_SHAPE',
    'utils.run.layout_rules = %LAYOUT_RULES',
    `utils.run.batch_size = ("sequences_per_batch", ${spec.batch})`,
    // An integer: utils.run takes one for every feature (newer versions also take a dict).
    `utils.run.sequence_length = ${spec.seqLen}`,
  );
  if (plan.microbatches > 1) {
    // serialize_num_microbatches divides the per-replica tokens by this to get the count.
    lines.push(`serialize_num_microbatches.tokens_per_microbatch_per_replica = ${shape.microBatch * spec.seqLen}`);
  }
  if (plan.recompute === 'full') lines.push('LayerStack.recompute_grads = True');
  return { format: 'mesh-tf', syntax: 'gin', text: lines.join('\n') + '\n' };
}
