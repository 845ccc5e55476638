import { axesOf } from '../../layout/layout.js';
import type { DimName } from '../../model/graph.js';
import type { Recompute } from '../../lower/plan.js';
import { iciSizes } from '../../engine/index.js';
import { analyse, header, type AxisUse } from '../analysis.js';
import type { ExportInput, ExportOutput } from '../target.js';

const ACTIVATIONS = { relu: "('relu',)", gelu: "('gelu',)", swiglu: "('silu', 'linear')" } as const;
// selective has no remat_policy of its own: the engine's capabilities refuse it before this.
const REMAT: Readonly<Partial<Record<Recompute, string>>> = { none: 'none', minimal: 'minimal', full: 'full' };

/**
 * t5x: gin for partitioning.PjitPartitioner and the network config of t5x's example models
 * (examples/decoder_only TransformerConfig, examples/scalable_t5 T5Config). The mesh is given
 * as ici_mesh_shape x dcn_mesh_shape over (replica, data, model): default_mesh has no default
 * for most num_partitions; its data axis is (replica, data). flax logical_axis_rules map each
 * logical axis name to mesh axes or None. scalable_t5's remat_policy 'minimal'
 * (checkpoint_dots_with_no_batch_dims) saves the projections' outputs and recomputes the rest: minimal.
 */
export function t5x(input: ExportInput): ExportOutput {
  const shape = analyse(input, 't5x');
  const { plan, spec, mesh } = input;
  const axes = shape.axes.filter((a) => a.size > 1 || a.dims.length > 0);
  const batchAxes = axes.filter((a) => a.dims.includes('batch'));
  const data: AxisUse | undefined = batchAxes[0] ?? (axes.length === 2 ? axes[0] : undefined);
  const model = axes.find((a) => a !== data);
  const ici = iciSizes(mesh, input.profile)!;
  const dataIci = data ? ici[data.index] : 1;
  const dataDcn = data ? data.size / dataIci : 1;
  const dataAxes = "('replica', 'data')";
  const t5Name = (a: string) => (a === data?.name ? dataAxes : "'model'");
  const rule = (dims: readonly DimName[]): string => {
    const on = dims.flatMap((d) => axesOf(plan.layout, d));
    if (on.length === 0) return 'None';
    if (on.length === 1) return t5Name(on[0]);
    return `(${on.map((a) => (a === data?.name ? "'replica', 'data'" : "'model'")).join(', ')})`;
  };
  const rules: [string, string][] = [
    ['batch', rule(['batch'])],
    ['vocab', rule(['vocab'])],
    ['embed', rule(['d_model'])],
    ['mlp', rule(['d_ff'])],
    ['heads', rule(['heads'])],
    ['kv', rule(['d_kv'])],
    ['joined_kv', rule(['heads', 'd_kv'])],
    ['length', 'None'],
    ['relpos_buckets', 'None'],
    ['abspos_buckets', 'None'],
    ['mlp_activations', 'None'],
    ['layers', 'None'],
    ['stack', 'None'],
  ];
  // flax takes rules in order, and a rule (even to None) fixes a logical axis for good; a mesh
  // axis a tensor already uses is skipped. So for ZeRO-3, embed gets no early rule and this last
  // one shards the parameters (and their optimizer state) over the batch axes; activations,
  // whose batch took those axes, keep embed whole. t5x's 2-D parameter partitioning does the same.
  if (plan.zero === 3) {
    rules.splice(rules.findIndex(([n]) => n === 'embed'), 1);
    rules.push(['embed', rule(['batch'])]);
  }
  const bi = spec.kind === 'encoder-decoder';
  const net = bi ? 'network.T5Config' : 'network.TransformerConfig';
  const lines = header(shape, `t5x (${bi ? 't5x.examples.scalable_t5' : 't5x.examples.decoder_only'} network)`).map((l) => `# ${l}`);
  lines.push(
    `# t5x mesh axes: (replica, data) = ${data ? `${data.name} (${data.size})` : '(size 1)'}, model = ${model ? `${model.name} (${model.size})` : '(size 1)'}`,
    "# t5x's networks add relative position biases; the plan's position embedding is not theirs",
    'from __gin__ import dynamic_registration',
    'from t5x import partitioning',
    'from t5x import trainer',
    `from t5x.examples.${bi ? 'scalable_t5' : 'decoder_only'} import network`,
    `include 't5x/examples/${bi ? 'scalable_t5/t5_1_1' : 'decoder_only/models'}/base.gin'`,
    "include 't5x/configs/runs/pretrain.gin'",
    `partitioning.PjitPartitioner.num_partitions = ${model?.size ?? 1}`,
    `partitioning.PjitPartitioner.ici_mesh_shape = [1, ${dataIci}, ${model?.size ?? 1}]`,
    `partitioning.PjitPartitioner.dcn_mesh_shape = [${dataDcn}, 1, 1]`,
    'partitioning.PjitPartitioner.logical_axis_rules = [',
    ...rules.map(([n, r]) => `    ('${n}', ${r}),`),
    ']',
    `BATCH_SIZE = ${spec.batch}`,
    bi ? `TASK_FEATURE_LENGTHS = {'inputs': ${spec.seqLen}, 'targets': ${spec.seqLen}}` : `TASK_FEATURE_LENGTHS = {'targets': ${spec.seqLen}}`,
    `DROPOUT_RATE = ${spec.dropout ? 0.1 : 0.0}`,
    `trainer.Trainer.num_microbatches = ${plan.microbatches > 1 ? plan.microbatches : 'None'}`,
    `${net}.vocab_size = ${spec.vocab}`,
    `${net}.dtype = '${spec.dtype}'`,
    `${net}.emb_dim = ${spec.dModel}`,
    `${net}.num_heads = ${spec.heads}`,
    ...(bi ? [`${net}.num_encoder_layers = ${spec.encoderLayers}`, `${net}.num_decoder_layers = ${spec.decoderLayers}`] : [`${net}.num_layers = ${spec.decoderLayers}`]),
    `${net}.head_dim = ${spec.dKv}`,
    `${net}.mlp_dim = ${spec.dFf}`,
    `${net}.mlp_activations = ${ACTIVATIONS[spec.activation]}`,
    `${net}.logits_via_embedding = ${spec.tiedEmbeddings ? 'True' : 'False'}`,
  );
  if (bi) lines.push(`${net}.remat_policy = '${REMAT[plan.recompute]!}'`);
  return { format: 't5x', syntax: 'gin', text: lines.join('\n') + '\n' };
}
