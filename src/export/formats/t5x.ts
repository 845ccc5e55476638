import { axesOf } from '../../layout/layout.js';
import type { DimName } from '../../model/graph.js';
import { analyse, header, type AxisUse } from '../analysis.js';
import { Missing, type ExportInput, type ExportOutput } from '../target.js';

/**
 * t5x: a gin snippet for partitioning.PjitPartitioner. t5x meshes have two axes, 'data'
 * (the one the input pipeline shards batch over) and 'model'; flax logical_axis_rules map
 * each logical axis name of the flaxformer/t5x models to a mesh axis, a tuple of them, or None.
 */
export function t5x(input: ExportInput): ExportOutput {
  const shape = analyse(input);
  const { plan, spec } = input;
  const missing = new Missing('t5x');
  // An axis of one device that splits nothing is no axis at all.
  const axes = shape.axes.filter((a) => a.size > 1 || a.dims.length > 0);
  missing.need(axes.length <= 2, () => `t5x meshes have two axes, data and model, but the plan's mesh has ${axes.length} (${axes.map((a) => a.name).join(', ')})`);
  missing.need(axesOf(plan.layout, 'layers').length === 0, 't5x has no pipeline parallelism: layers cannot be split');
  for (const d of ['length', 'memory_length'] as const) {
    missing.need(axesOf(plan.layout, d).length === 0, `this export gives t5x no sequence split: ${d} must stay whole (t5x models name queries' and keys' positions both 'length')`);
  }
  missing.need(axesOf(plan.layout, 'q_group').length === 0,
    "t5x's logical axes name attention heads as one axis ('heads'): a split of q_group, the query heads within a K/V group, cannot be expressed");
  missing.need(plan.zero === 0 || plan.zero === 3, `t5x shards optimizer state and gradients only with the parameters (ZeRO-3 style): zero ${plan.zero} cannot be expressed`);
  missing.need(!(plan.zero === 3 && axesOf(plan.layout, 'd_model').length > 0),
    () => `t5x shards parameters ZeRO-3 style by a last ('embed', data) rule, but the plan already splits d_model (embed) over ${axesOf(plan.layout, 'd_model').join('+')}`);
  missing.need(plan.recompute === 'none', `this export does not set recomputation for t5x (it is a flaxformer model setting, not a partitioner one): recompute ${plan.recompute} cannot be expressed`);
  missing.throwIfAny();

  // data = the axis that splits batch (the outer one when both do), model = the other.
  const batchAxes = axes.filter((a) => a.dims.includes('batch'));
  const data: AxisUse | undefined = batchAxes[0] ?? (axes.length === 2 ? axes[0] : undefined);
  const model = axes.find((a) => a !== data);
  const t5Name = (a: string) => (a === data?.name ? 'data' : 'model');
  const rule = (dims: readonly DimName[]): string => {
    const on = dims.flatMap((d) => axesOf(plan.layout, d));
    if (on.length === 0) return 'None';
    if (on.length === 1) return `'${t5Name(on[0])}'`;
    return `(${on.map((a) => `'${t5Name(a)}'`).join(', ')})`;
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
  const lines = header(shape, 't5x').map((l) => `# ${l}`);
  lines.push(`# t5x mesh axes: data = ${data ? `${data.name} (${data.size})` : '(size 1)'}, model = ${model ? `${model.name} (${model.size})` : '(size 1)'}`);
  if (data && model && data.index > model.index) lines.push('# note: t5x places the model axis on the inner devices; this mesh has data inside');
  lines.push(
    `partitioning.PjitPartitioner.num_partitions = ${model?.size ?? 1}`,
    'partitioning.PjitPartitioner.logical_axis_rules = [',
    ...rules.map(([n, r]) => `    ('${n}', ${r}),`),
    ']',
    `BATCH_SIZE = ${spec.batch}`,
    spec.kind === 'encoder-decoder'
      ? `TASK_FEATURE_LENGTHS = {'inputs': ${spec.seqLen}, 'targets': ${spec.seqLen}}`
      : `TASK_FEATURE_LENGTHS = {'targets': ${spec.seqLen}}`,
    `trainer.Trainer.num_microbatches = ${plan.microbatches > 1 ? plan.microbatches : 'None'}`,
  );
  return { format: 't5x', syntax: 'gin', text: lines.join('\n') + '\n' };
}
