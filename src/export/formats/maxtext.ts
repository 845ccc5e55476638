import { Document, isSeq } from 'yaml';
import { axesOf } from '../../layout/layout.js';
import type { DimName } from '../../model/graph.js';
import type { Recompute } from '../../lower/plan.js';
import { iciSizes, MAXTEXT_MESH_AXES, maxtextKinds, type MaxtextAxis } from '../../engine/index.js';
import { analyse, header, type AxisUse } from '../analysis.js';
import type { ExportInput, ExportOutput } from '../target.js';

/** Each axis's ici_*_parallelism / dcn_*_parallelism key (types.py ici_map): stage's is pipeline. */
const keyOf = (a: MaxtextAxis) => (a === 'stage' ? 'pipeline' : a);

/** MaxText's logical axis names (base.yml logical_axis_rules) for each of our dimensions: parameters', then activations'. */
const LOGICAL: Record<DimName, { params: string[]; activations: string[] }> = {
  batch: { params: [], activations: ['activation_batch', 'activation_batch_attn', 'activation_embed_and_logits_batch', 'activation_kv_batch'] },
  length: { params: [], activations: ['activation_length', 'activation_length_attn', 'activation_q_length', 'activation_norm_length'] },
  memory_length: { params: [], activations: ['activation_kv_length'] },
  d_model: { params: ['embed', 'embed_vocab'], activations: ['activation_embed', 'activation_embed_attn'] },
  heads: { params: ['heads', 'q_heads', 'kv_heads'], activations: ['activation_heads', 'activation_kv_heads'] },
  d_kv: { params: ['kv', 'kv_head_dim'], activations: ['activation_kv', 'activation_kv_head_dim'] },
  d_ff: { params: ['mlp'], activations: ['activation_mlp'] },
  vocab: { params: ['vocab'], activations: ['activation_vocab'] },
  layers: { params: ['layers'], activations: ['activation_stage'] },
  // Grouped-query models: MaxText names query heads as one axis (q_heads), so q_group has no rule of its own (refused in src/engine).
  q_group: { params: [], activations: [] },
  // Mixture of experts (base.yml's MoE rules): the experts of the MoE weights, their hidden dimension.
  experts: { params: ['exp'], activations: ['activation_exp'] },
  expert_hidden: { params: ['mlp_moe'], activations: ['activation_mlp_moe'] },
  expert_capacity: { params: [], activations: [] },
  expert_unsplit: { params: [], activations: [] },
  group: { params: [], activations: [] },
};

/** The MoE block's own names for the dimensions it shares with the rest of the layer (base.yml). */
const MOE_SIDE: Partial<Record<DimName, { params: string[]; activations: string[] }>> = {
  batch: { params: [], activations: ['activation_batch_moe'] },
  length: { params: [], activations: ['activation_length_moe', 'activation_norm_length_moe'] },
  d_model: { params: ['embed_moe'], activations: ['activation_embed_moe'] },
};

// minimal and full are MaxText's own; it has no policy that saves the elementwise ops' outputs, so
// none and selective take the lightest that recomputes no more than the attention core and them:
// minimal_with_context (the projections' outputs and the attention output saved).
const REMAT: Readonly<Record<Recompute, string>> = { none: 'minimal_with_context', selective: 'minimal_with_context', minimal: 'minimal', full: 'full' };
const MLP = { relu: ['relu'], gelu: ['gelu'], swiglu: ['silu', 'linear'] } as const;

/**
 * MaxText: a config that inherits base.yml (base_config) and replaces its logical axis rules
 * (override_logical_axis_rules), so that only ours hold. Each mesh axis of the plan becomes one
 * MaxText axis (src/engine/maxtext.ts), its size split into ici_* (within a slice) and dcn_*
 * (across slices). ZeRO-1 is shard_optimizer_over_data, ZeRO-3 the fsdp axis. remat_policy:
 * minimal_with_context saves every matmul output (the lightest: recompute none and selective),
 * minimal the projections' outputs only (recompute minimal), full the layer.
 */
export function maxtext(input: ExportInput): ExportOutput {
  const shape = analyse(input, 'maxtext');
  const { plan, spec, mesh } = input;
  const { kinds } = maxtextKinds(shape);
  const ici = iciSizes(mesh, input.profile)!;
  const degrees = new Map<MaxtextAxis, { ici: number; dcn: number; axes: AxisUse[] }>();
  for (const a of shape.axes) {
    const kind = kinds[a.index];
    if (!kind) continue;
    const d = degrees.get(kind) ?? { ici: 1, dcn: 1, axes: [] };
    d.ici *= ici[a.index];
    d.dcn *= a.size / ici[a.index];
    d.axes.push(a);
    degrees.set(kind, d);
  }
  const pipelined = shape.pp > 1;
  const kindsOf = (dim: DimName): string[] => [...new Set(axesOf(plan.layout, dim).map((a) => kinds[mesh.axes.findIndex((x) => x.name === a)]!))];
  // Sequence parallelism: norms and residuals split length over the axes that split heads.
  const spKinds = shape.sequenceParallel ? kindsOf('heads') : [];
  const rules: [string, string[]][] = [];
  const moe = !!spec.experts;
  const dims = (Object.keys(LOGICAL) as DimName[]).filter((d) => moe || (d !== 'experts' && d !== 'expert_hidden'));
  for (const dim of dims) {
    const base = kindsOf(dim);
    const activations = [...LOGICAL[dim].activations, ...(moe ? MOE_SIDE[dim]?.activations ?? [] : [])];
    const params = [...LOGICAL[dim].params, ...(moe ? MOE_SIDE[dim]?.params ?? [] : [])];
    for (const name of activations) rules.push([name, name === 'activation_norm_length' || name === 'activation_norm_length_moe' ? [...spKinds, ...base] : [...base]]);
    for (const name of params) {
      // ZeRO-3: parameters (and with them gradients and optimizer state) also split over the batch
      // axes that do not split them already (the expert axis holds whole experts: not theirs).
      const zeroKinds = name === 'embed_moe' || !degrees.has('expert') ? ['fsdp'] : ['fsdp', 'expert'];
      const extra = plan.zero === 3 && dim === 'd_model' ? zeroKinds.filter((k) => !base.includes(k)) : [];
      rules.push([name, [...base, ...extra]]);
    }
  }
  rules.push(['norm', [...kindsOf('d_model')]]);
  const config: Record<string, unknown> = {
    base_config: 'base.yml',
    run_name: 'mesh-search',
    base_output_directory: './maxtext-output',
    dataset_type: 'synthetic',
    override_logical_axis_rules: true,
  };
  for (const k of MAXTEXT_MESH_AXES) config[`dcn_${keyOf(k)}_parallelism`] = degrees.get(k)?.dcn ?? 1;
  for (const k of MAXTEXT_MESH_AXES) config[`ici_${keyOf(k)}_parallelism`] = degrees.get(k)?.ici ?? 1;
  const dataKinds = (pipelined ? ['stage', 'data', 'fsdp', 'expert'] : ['data', 'fsdp', 'expert']).filter((k) => degrees.has(k as MaxtextAxis));
  config.data_sharding = [dataKinds.length > 0 ? dataKinds : ['data']];
  config.logical_axis_rules = rules.map(([n, k]) => [n, k]);
  config.shard_optimizer_over_data = plan.zero === 1;
  const perMicrobatch = pipelined ? spec.batch : spec.batch / plan.microbatches;
  config.per_device_batch_size = perMicrobatch / mesh.size;
  config.gradient_accumulation_steps = pipelined ? 1 : plan.microbatches;
  if (pipelined) {
    config.num_pipeline_microbatches = plan.microbatches;
    config.num_layers_per_pipeline_stage = shape.layers / (shape.pp * shape.virtualStages);
    config.num_pipeline_repeats = shape.virtualStages;
  }
  config.max_target_length = spec.seqLen;
  config.decoder_block = spec.positions === 'rotary' ? 'llama2' : 'gpt3';
  if (spec.positions === 'learned') config.trainable_position_size = spec.seqLen;
  Object.assign(config, {
    base_emb_dim: spec.dModel,
    base_num_query_heads: spec.heads,
    base_num_kv_heads: shape.kvHeads,
    base_mlp_dim: spec.dFf,
    base_num_decoder_layers: spec.decoderLayers,
    head_dim: spec.dKv,
    vocab_size: spec.vocab,
    mlp_activations: [...MLP[spec.activation]],
    logits_via_embedding: spec.tiedEmbeddings,
    enable_dropout: spec.dropout,
    dropout_rate: spec.dropout ? 0.1 : 0.0,
    remat_policy: REMAT[plan.recompute],
    dtype: spec.dtype,
  });
  if (moe) {
    // Keys as src/maxtext/configs/models/mixtral-8x7b.yml writes them; src/engine admits only what
    // decoder_block mixtral builds. The dense path (sparse_matmul false) dispatches and combines
    // with one-hot einsums padded to capacity, as Mesh-TF's moe.py and this cost model do;
    // megablox is the sparse path's kernel.
    Object.assign(config, {
      decoder_block: 'mixtral',
      num_experts: spec.experts,
      num_experts_per_tok: spec.topK,
      base_moe_mlp_dim: spec.dFfExpert,
      capacity_factor: spec.capacityFactor,
      sparse_matmul: false,
      megablox: false,
    });
  }
  const comments = header(shape, 'MaxText');
  comments.push(`mesh axes: ${shape.axes.map((a) => `${a.name} -> ${kinds[a.index] ?? 'unused'} (ici ${ici[a.index]}, dcn ${a.size / ici[a.index]})`).join(', ')}`);
  if (plan.recompute === 'none' || plan.recompute === 'selective') comments.push(`recompute ${plan.recompute}: MaxText's lightest remat_policy, minimal_with_context, saves every matmul output and recomputes elementwise ops${plan.recompute === 'none' ? '' : ' beside the attention core'}`);
  const doc = new Document(config, { aliasDuplicateObjects: false });
  // One rule per line, as base.yml writes them.
  for (const key of ['logical_axis_rules', 'data_sharding', 'mlp_activations']) {
    const seq = doc.get(key, true);
    if (isSeq(seq)) {
      if (key === 'mlp_activations') seq.flow = true;
      for (const item of seq.items) if (isSeq(item)) item.flow = true;
    }
  }
  const body = doc.toString({ lineWidth: 0 });
  return { format: 'maxtext', syntax: 'yaml', text: comments.map((c) => `# ${c}`).join('\n') + '\n' + body };
}
