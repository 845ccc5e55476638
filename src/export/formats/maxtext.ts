import { Document, isSeq } from 'yaml';
import { axesOf } from '../../layout/layout.js';
import type { DimName } from '../../model/graph.js';
import { analyse, fixedRoleProblems, header, type AxisUse, type PlanShape } from '../analysis.js';
import { Missing, type ExportInput, type ExportOutput } from '../target.js';

/** MaxText's mesh axes (config mesh_axes), in its order. */
const MAXTEXT_AXES = ['data', 'stage', 'fsdp', 'fsdp_transpose', 'sequence', 'context', 'tensor', 'tensor_transpose', 'tensor_sequence', 'expert', 'autoregressive'] as const;
type MaxtextAxis = (typeof MAXTEXT_AXES)[number];
/** Each axis's ici_*_parallelism / dcn_*_parallelism key: the same name, but the stage axis's is pipeline. */
const keyOf = (a: MaxtextAxis) => (a === 'stage' ? 'pipeline' : a);
/** Plain axes that only the logical rules give meaning to, for tensor splits in order of need. */
const FREE_AXES: readonly MaxtextAxis[] = ['tensor', 'tensor_sequence', 'tensor_transpose'];

/** MaxText's logical axis names for each of our dimensions: parameters' names, then activations'. */
const LOGICAL: Record<DimName, { params: string[]; activations: string[] }> = {
  batch: { params: [], activations: ['activation_batch', 'activation_batch_no_exp', 'activation_embed_and_logits_batch', 'activation_kv_batch'] },
  length: { params: [], activations: ['activation_length', 'activation_length_no_exp', 'activation_q_length', 'activation_norm_length'] },
  memory_length: { params: [], activations: ['activation_kv_length'] },
  d_model: { params: ['embed', 'embed_no_exp'], activations: ['activation_embed'] },
  heads: { params: ['heads', 'q_heads', 'kv_heads'], activations: ['activation_heads', 'activation_kv_heads'] },
  d_kv: { params: ['kv', 'kv_head_dim'], activations: ['activation_kv', 'activation_kv_head_dim'] },
  d_ff: { params: ['mlp'], activations: ['activation_mlp'] },
  vocab: { params: ['vocab'], activations: ['activation_vocab'] },
  layers: { params: ['layers'], activations: [] },
  // Grouped-query models: MaxText names query heads as one axis (q_heads), so q_group has no rule of its own.
  q_group: { params: [], activations: [] },
};

/**
 * Devices per slice (the profile's innermost network level) split the mesh into an inner ICI
 * part and an outer DCN part: per axis, how much of its size is within a slice.
 */
function iciPart(shape: PlanShape, missing: Missing): number[] {
  const { mesh, profile } = shape.input;
  const slice = profile && mesh.size > profile.levels[0].devices ? profile.levels[0].devices : mesh.size;
  const ici = mesh.axes.map(() => 1);
  let inner = 1;
  for (let i = mesh.axes.length - 1; i >= 0; i--) {
    const size = mesh.axes[i].size;
    if (inner * size <= slice) {
      ici[i] = size;
      inner *= size;
    } else {
      const f = slice / inner;
      missing.need(Number.isInteger(f) && size % f === 0,
        `MaxText splits each axis into a part within a slice and a part across slices, but ${mesh.axes[i].name} (${size}) does not split at the ${slice}-device slices of ${profile?.name}`);
      ici[i] = Number.isInteger(f) && size % f === 0 ? f : 1;
      break;
    }
  }
  return ici;
}

/**
 * MaxText: YAML overrides of base.yml. Each mesh axis of the plan becomes one MaxText
 * parallelism kind (batch: data, or fsdp with ZeRO-3; layers: stage; length: context; the
 * rest: tensor, tensor_transpose, tensor_sequence), its size split into ici_* (within a slice)
 * and dcn_* (across slices), and logical_axis_rules say which dimension goes where.
 */
export function maxtext(input: ExportInput): ExportOutput {
  const shape = analyse(input);
  const { plan, spec, mesh } = input;
  const missing = new Missing('maxtext');
  missing.need(spec.kind === 'decoder', 'MaxText trains decoder-only models; the plan is for an encoder-decoder');
  for (const p of fixedRoleProblems(shape, 'MaxText').filter((p) => p.includes('splits no dimension'))) missing.need(false, p);
  missing.need(plan.zero === 0 || plan.zero === 3, `MaxText shards optimizer state and gradients only with the parameters (fsdp, ZeRO-3): zero ${plan.zero} cannot be expressed`);
  missing.need(axesOf(plan.layout, 'q_group').length === 0,
    'MaxText shards query heads as one logical axis (q_heads): a split of q_group, the query heads within a K/V group, cannot be expressed');
  missing.need(plan.recompute !== 'selective', 'MaxText has no remat_policy that recomputes exactly the attention core: recompute selective cannot be expressed');

  // Axes with the same dimensions share a MaxText kind; different tensor-like splits take free axes in turn.
  const kindOf = new Map<string, MaxtextAxis>();
  const bySignature = new Map<string, MaxtextAxis>();
  let free = 0;
  for (const a of shape.axes) {
    const sig = a.dims.join(',');
    let kind: MaxtextAxis | undefined;
    if (a.role === 'data') kind = plan.zero === 3 ? 'fsdp' : 'data';
    else if (a.role === 'pipeline') kind = 'stage';
    else if (a.role === 'context') kind = 'context';
    else if (a.role === 'unused') kind = undefined;
    else {
      kind = bySignature.get(sig);
      if (!kind) {
        kind = FREE_AXES[free++];
        missing.need(kind !== undefined, () => `MaxText has ${FREE_AXES.length} free axes (${FREE_AXES.join(', ')}) for other splits, but the plan needs more (${a.name} splits ${a.dims.join(' and ')})`);
        if (kind) bySignature.set(sig, kind);
      }
    }
    if (kind) kindOf.set(a.name, kind);
  }
  const ici = iciPart(shape, missing);
  // Two axes of one kind must both lie within a slice or share it as ici x dcn.
  const degrees = new Map<MaxtextAxis, { ici: number; dcn: number; axes: AxisUse[] }>();
  for (const a of shape.axes) {
    const kind = kindOf.get(a.name);
    if (!kind) continue;
    const d = degrees.get(kind) ?? { ici: 1, dcn: 1, axes: [] };
    d.ici *= ici[a.index];
    d.dcn *= a.size / ici[a.index];
    d.axes.push(a);
    degrees.set(kind, d);
  }
  for (const [kind, d] of degrees) {
    const order = d.axes.map((a) => a.name);
    for (const dim of d.axes[0].dims) {
      const on = axesOf(plan.layout, dim).filter((x) => order.includes(x));
      missing.need(on.join('+') === order.join('+'), `MaxText's ${kind} axis spans ${order.join('+')} in mesh order, but the plan splits ${dim} over ${axesOf(plan.layout, dim).join('+')}`);
    }
  }
  const pipelined = shape.pp > 1;
  missing.need(!pipelined || plan.microbatches % shape.pp === 0,
    () => `MaxText needs num_pipeline_microbatches to be a multiple of the ${shape.pp} pipeline stages, but the plan has ${plan.microbatches}`);
  const perMicrobatch = pipelined ? spec.batch : spec.batch / plan.microbatches;
  const perDevice = perMicrobatch / mesh.size;
  // MaxText trains on int(devices x per_device_batch_size) sequences per microbatch, in doubles.
  missing.need(Math.floor(mesh.size * perDevice) === perMicrobatch,
    () => `MaxText trains int(devices x per_device_batch_size) sequences per microbatch, and no per_device_batch_size gives ${perMicrobatch} on ${mesh.size} devices in floating point`);
  missing.throwIfAny();

  const kindsOf = (dim: DimName): string[] => [...new Set(axesOf(plan.layout, dim).map((a) => kindOf.get(a)!))];
  const rules: [string, string[]][] = [];
  for (const dim of Object.keys(LOGICAL) as DimName[]) {
    const kinds = kindsOf(dim);
    for (const name of LOGICAL[dim].activations) rules.push([name, [...kinds]]);
    for (const name of LOGICAL[dim].params) {
      // ZeRO-3: parameters (and with them gradients and optimizer state) also split over fsdp.
      const extra = plan.zero === 3 && dim === 'd_model' && !kinds.includes('fsdp') ? ['fsdp'] : [];
      rules.push([name, [...kinds, ...extra]]);
    }
  }
  rules.push(['norm', [...kindsOf('d_model')]]);
  const config: Record<string, unknown> = {};
  for (const k of MAXTEXT_AXES) config[`dcn_${keyOf(k)}_parallelism`] = degrees.get(k)?.dcn ?? 1;
  for (const k of MAXTEXT_AXES) config[`ici_${keyOf(k)}_parallelism`] = degrees.get(k)?.ici ?? 1;
  const dataKinds = ['data', 'fsdp'].filter((k) => degrees.has(k as MaxtextAxis));
  config.data_sharding = [dataKinds.length > 0 ? dataKinds : ['data']];
  config.logical_axis_rules = rules.map(([n, kinds]) => [n, kinds]);
  config.per_device_batch_size = perDevice;
  config.gradient_accumulation_steps = pipelined ? 1 : plan.microbatches;
  if (pipelined) {
    config.num_pipeline_microbatches = plan.microbatches;
    config.num_layers_per_pipeline_stage = shape.layers / shape.pp;
  }
  config.max_target_length = spec.seqLen;
  // 'minimal' keeps the matmul outputs and recomputes only cheap elementwise ops.
  config.remat_policy = plan.recompute === 'full' ? 'full' : 'minimal';
  config.dtype = spec.dtype;
  const comments = header(shape, 'MaxText (overrides of base.yml)');
  comments.push(`mesh axes: ${shape.axes.map((a) => `${a.name} -> ${kindOf.get(a.name) ?? 'unused'} (ici ${ici[a.index]}, dcn ${a.size / ici[a.index]})`).join(', ')}`);
  if (plan.recompute === 'none') comments.push("recompute none: MaxText's lightest remat_policy, 'minimal', still recomputes elementwise ops");
  const doc = new Document(config, { aliasDuplicateObjects: false });
  // One rule per line, as base.yml writes them.
  for (const key of ['logical_axis_rules', 'data_sharding']) {
    const seq = doc.get(key, true);
    if (isSeq(seq)) for (const item of seq.items) if (isSeq(item)) item.flow = true;
  }
  const body = doc.toString({ lineWidth: 0 });
  return { format: 'maxtext', syntax: 'yaml', text: comments.map((c) => `# ${c}`).join('\n') + '\n' + body };
}
