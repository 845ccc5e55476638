import { axesOf } from '../layout/layout.js';
import type { Mesh } from '../mesh/mesh.js';
import { DIM_NAMES } from '../model/graph.js';
import type { ModelSpec } from '../model/spec.js';
import type { Plan } from '../lower/plan.js';
import { CAPABILITIES, TORCHTITAN_MODELS, type Engine, type TorchtitanModel } from './capabilities.js';
import { maxtextKinds } from './maxtext.js';
import { axesWith, modelTensorDims, shapeOf, TENSOR_DIMS, type AxisUse, type PlanShape } from './shape.js';

/** What the rules read of a hardware profile: the devices of each network level, innermost first. */
export interface SliceInfo {
  readonly name: string;
  readonly levels: readonly { readonly devices: number }[];
}

const list = (xs: readonly unknown[]) => xs.join(', ');

/**
 * Why `engine` cannot run this plan: every reason, in one line each; empty when it can. The
 * search's `--engine` filter and the exports' refusals both call this (one source of truth).
 */
export function whyNot(engine: Engine, plan: Plan, mesh: Mesh, spec: ModelSpec, profile?: SliceInfo, scope: 'plan' | 'layout' = 'plan'): string[] {
  // scope 'layout': only the reasons that hold whatever the strategy (ZeRO, recompute, microbatches,
  // sequence parallelism, virtual stages): a layout refused so has no plan the engine can run.
  const strategy = scope === 'plan';
  const cap = CAPABILITIES[engine];
  const s = shapeOf(plan, mesh, spec);
  const t = cap.title;
  const out: string[] = [];
  const need = (cond: unknown, reason: string | (() => string)) => {
    if (!cond) out.push(typeof reason === 'string' ? reason : reason());
  };
  const layersOn = axesOf(plan.layout, 'layers');
  out.push(...modelProblems(engine, spec));
  need(!strategy || cap.zero.includes(plan.zero), () => engine === 'mesh-tf'
    ? `Mesh-TensorFlow has no ZeRO: zero ${plan.zero} (optimizer state split over the batch axes) cannot be expressed`
    : `${t} has ZeRO stages ${list(cap.zero)} only: zero ${plan.zero} cannot be expressed`);
  // Hybrid sharding: MaxText at ZeRO-3 (fsdp axes and data axes), torchtitan's HSDP (dp_shard within
  // dp_replicate, ZeRO-3, no experts: their ranks come out of dp_shard's).
  need(!strategy || !plan.zeroAxes || (cap.hybridZero && plan.zero === 3), () => cap.hybridZero
    ? `${t} shards over some batch axes only at ZeRO-3 (${engine === 'maxtext' ? 'fsdp' : 'FSDP2 in HSDP'}): zero ${plan.zero} over ${plan.zeroAxes!.join('+')} (--zero-axes) cannot be expressed`
    : `the ${t} export does not write hybrid sharding yet: ZeRO over ${plan.zeroAxes!.join('+')} only (--zero-axes) cannot be expressed; export the plan without --zero-axes`);
  if (strategy && plan.zeroAxes && engine === 'torchtitan') {
    const data = s.axes.filter((a) => a.role === 'data' && a.size > 1);
    const firstShard = data.findIndex((a) => plan.zeroAxes!.includes(a.name));
    need(firstShard < 0 || data.slice(firstShard).every((a) => plan.zeroAxes!.includes(a.name)),
      () => `torchtitan's mesh puts dp_replicate outside dp_shard, but this mesh puts a replicated batch axis inside ${data[firstShard].name}; reorder the mesh axes`);
    need(!spec.experts, 'torchtitan takes expert ranks out of dp_shard: a hybrid plan of a mixture-of-experts model cannot be expressed');
  }
  need(!strategy || cap.recompute.includes(plan.recompute), `${t} cannot recompute ${plan.recompute === 'selective' ? 'exactly the attention core (recompute selective)' : plan.recompute === 'minimal' ? 'all but the projections (recompute minimal)' : `as recompute ${plan.recompute} asks`}`);
  need(!strategy || plan.recompute === 'none' || !cap.recomputeKinds || cap.recomputeKinds.includes(spec.kind),
    `${t} recomputes only in ${list(cap.recomputeKinds ?? [])} models: recompute ${plan.recompute} cannot be expressed for a ${spec.kind}`);
  need(cap.pipeline || layersOn.length === 0, () => `${t} has no pipeline parallelism: layers:${layersOn.join('+')} cannot be expressed`);
  need(!strategy || s.virtualStages === 1 || (cap.virtualStages && s.pp > 1), `${t} cannot interleave ${s.virtualStages} virtual stages${s.pp > 1 ? '' : ' without a pipeline'}`);
  need(!strategy || s.virtualStages === 1 || s.layers % (s.pp * s.virtualStages) === 0, `${s.layers} layers do not split into ${s.pp} stages x ${s.virtualStages} virtual stages`);
  need(cap.context || (axesOf(plan.layout, 'length').length === 0 && axesOf(plan.layout, 'memory_length').length === 0),
    `${t} has no context parallelism here: length must stay whole`);
  need(!strategy || cap.sequenceParallel || !s.sequenceParallel, `${t} has no sequence parallelism (norms and residuals split over the tensor axis)`);
  for (const d of DIM_NAMES) {
    const on = axesOf(plan.layout, d);
    need(cap.multiAxis || on.length <= 1, () => engine === 'mesh-tf'
      ? `Mesh-TensorFlow maps a dimension to one mesh axis at most, but the plan splits ${d} over ${on.join('+')}`
      : `${t} splits a dimension over one axis, but the plan splits ${d} over ${on.join('+')}`);
  }
  const working = s.axes.filter((a) => a.size > 1 || a.dims.length > 0);
  need(cap.maxAxes === undefined || working.length <= cap.maxAxes,
    () => `${t} meshes have ${cap.maxAxes} axes, but the plan uses ${working.length} (${working.map((a) => a.name).join(', ')})`);
  if (!cap.freeLayout) {
    for (const p of fixedRoleProblems(s, t)) out.push(p);
    for (const p of tensorProblems(s, t, cap.vocabSplit)) out.push(p);
    const d = dataOrderProblem(s, t);
    if (d) out.push(d);
  }
  if (cap.deviceOrder && !cap.freeLayout) {
    const o = orderProblem(s, t, cap.deviceOrder);
    if (o) out.push(o);
  }
  need(!strategy || cap.zeroWithContext || plan.zero === 0 || s.cp === 1,
    `${t} cannot shard optimizer state over context-parallel ranks with the data-parallel ones (${s.dp * s.cp}), as the plan's ZeRO does`);
  need(engine === 'mesh-tf' || axesOf(plan.layout, 'q_group').length === 0,
    `${t} names query heads as one axis: a split of q_group, the query heads within a K/V group, cannot be expressed`);
  out.push(...SPECIFIC[engine](s, profile, strategy));
  return out;
}

/** What of the model itself the engine cannot build, whatever the plan. */
export function modelProblems(engine: Engine, spec: ModelSpec): string[] {
  const cap = CAPABILITIES[engine];
  const t = cap.title;
  const kv = spec.kvHeads;
  const out: string[] = [];
  if (!cap.kinds.includes(spec.kind)) out.push(`${t} trains ${list(cap.kinds)} models; this one is ${spec.kind === 'decoder' ? 'a decoder' : 'an encoder-decoder'}`);
  if (!cap.activations.includes(spec.activation)) out.push(`${t} has no ${spec.activation} feed-forward (it has ${list(cap.activations)})`);
  if (!cap.positions.includes(spec.positions)) out.push(`${t} has no ${spec.positions} position embedding (it has ${list(cap.positions)})`);
  if (!cap.dtypes.includes(spec.dtype)) out.push(`${t} does not train in ${spec.dtype} (it takes ${list(cap.dtypes)})`);
  if (!cap.gqa && kv !== spec.heads) out.push(`${t} has no grouped-query attention: ${kv} KV heads for ${spec.heads} query heads cannot be expressed`);
  if (spec.experts && engine === 'maxtext') {
    // decoder_block mixtral (src/maxtext/models/mixtral.py): rotary, SwiGLU, every layer MoE, no shared expert.
    if ((spec.moeEvery ?? 1) !== 1 || spec.sharedExperts || spec.positions !== 'rotary' || spec.activation !== 'swiglu') {
      out.push(`mesh-search's MaxText export writes MoE models as decoder_block mixtral (rotary, SwiGLU, experts on every layer, no shared expert), which ${spec.name} is not; export to megatron`);
    }
  } else if (spec.experts && engine !== 'megatron' && engine !== 'deepspeed' && engine !== 'torchtitan') {
    out.push(`${t} has no mixture-of-experts layer (${spec.experts} experts); export to megatron, maxtext, deepspeed or torchtitan`);
  }
  if (engine === 'torchtitan' && spec.kind === 'decoder' && !torchtitanModel(spec)) {
    const shipped = TORCHTITAN_MODELS.map((f) => `${f.module.split('.').pop()} ${f.flavor}`).join(', ');
    out.push(`torchtitan takes its model from a shipped config function (--module/--config; model_spec is off the command line), and no shipped flavor (${shipped}) has ${spec.name}'s dimensions`);
  }
  return out;
}

/** A plan predicate for the search: the plans `engine` can run on this model, mesh and hardware. */
export function engineFilter(engine: Engine, mesh: Mesh, spec: ModelSpec, profile?: SliceInfo): (plan: Plan) => boolean {
  return (plan) => whyNot(engine, plan, mesh, spec, profile).length === 0;
}

/** A necessary condition on the layout alone: false means no strategy of it can run on `engine`. */
export function engineLayoutFilter(engine: Engine, mesh: Mesh, spec: ModelSpec, profile?: SliceInfo): (plan: Plan) => boolean {
  return (plan) => whyNot(engine, plan, mesh, spec, profile, 'layout').length === 0;
}

/** Engines whose expert-parallel ranks are the innermost data-parallel ones: the experts' axes must be those. */
function innerExpertAxes(s: PlanShape, engine: string, key: string, order: string): string[] {
  const out: string[] = [];
  const expertAxes = axesOf(s.plan.layout, 'experts');
  const data = axesWith(s, 'data').filter((a) => a.size > 1).map((a) => a.name);
  for (const a of expertAxes) if (!data.includes(a)) out.push(`${engine} splits experts over data-parallel ranks (${key}), but the plan splits experts over ${a}, which does not split batch alone`);
  if (expertAxes.length > 0 && expertAxes.every((a) => data.includes(a)) && expertAxes.join('+') !== data.slice(data.length - expertAxes.length).join('+')) {
    out.push(`${engine} puts expert-parallel ranks inside the data-parallel ones (${order}), but the plan splits experts over ${expertAxes.join('+')}, not the innermost data axes (${data.join('+')})`);
  }
  return out;
}

/** An axis that splits nothing, or a mix of dimensions no fixed engine axis splits. */
function fixedRoleProblems(s: PlanShape, t: string): string[] {
  const out: string[] = [];
  for (const a of s.axes) {
    if (a.role === 'unused' && a.size > 1) {
      out.push(`mesh axis ${a.name} (${a.size}) splits no dimension, so its devices would repeat the same work; ${t} has no such axis`);
    } else if (a.role === 'other') {
      const odd = a.dims.filter((d) => !TENSOR_DIMS.includes(d));
      out.push(`mesh axis ${a.name} splits ${a.dims.join(' and ')}; ${t} has no parallelism that splits ${odd.join(' or ') || a.dims.join(' and ')} that way`);
    }
  }
  return out;
}

/**
 * Tensor parallelism as Megatron-LM, torchtitan and DeepSpeed AutoTP do it: every tensor axis
 * splits heads and d_ff together, and vocab too where the engine splits the embedding.
 */
function tensorProblems(s: PlanShape, t: string, vocabSplit: boolean): string[] {
  const out: string[] = [];
  const want = modelTensorDims(s.spec).filter((d) => vocabSplit || d !== 'vocab');
  const tensor = axesWith(s, 'tensor');
  if (!vocabSplit && axesOf(s.plan.layout, 'vocab').length > 0) {
    out.push(`${t} has no vocabulary-parallel embedding or output layer: vocab:${axesOf(s.plan.layout, 'vocab').join('+')} cannot be expressed`);
  }
  for (const a of tensor) {
    const lacking = want.filter((d) => !a.dims.includes(d));
    if (lacking.length > 0) {
      out.push(`${t}'s tensor parallelism splits ${want.join(', ')} together, but the plan splits only ${a.dims.join(' and ')} over ${a.name} (${lacking.join(' and ')} ${lacking.length === 1 ? 'stays' : 'stay'} whole)`);
    }
  }
  const names = tensor.map((a) => a.name);
  for (const d of want) {
    const on = axesOf(s.plan.layout, d);
    if (names.length > 0 && on.length > 0 && on.join('+') !== names.join('+')) {
      out.push(`${t} splits ${d} over all tensor-parallel axes in mesh order (${names.join('+')}), but the plan splits it over ${on.join('+')}`);
    }
  }
  return out;
}

/** Data axes in mesh order must be the order the plan splits batch in, for one data-parallel group. */
function dataOrderProblem(s: PlanShape, t: string): string | null {
  const data = axesWith(s, 'data').map((a) => a.name);
  const batch = axesOf(s.plan.layout, 'batch');
  if (data.length > 1 && batch.join('+') !== data.join('+')) {
    return `${t} numbers data-parallel ranks in mesh order (${data.join('+')}), but the plan splits batch over ${batch.join('+')}`;
  }
  return null;
}

/** Engines that number ranks by role put the roles in a fixed order from the outer devices to the inner. */
function orderProblem(s: PlanShape, t: string, outerToInner: readonly string[]): string | null {
  const used = s.axes.filter((a) => a.size > 1 && outerToInner.includes(a.role));
  const rank = (a: AxisUse) => outerToInner.indexOf(a.role);
  for (let i = 1; i < used.length; i++) {
    if (rank(used[i - 1]) > rank(used[i])) {
      return `${t} orders ranks ${outerToInner.join(', ')} from outer to inner devices, but this mesh puts ${used[i - 1].role} (${used[i - 1].name}) outside ${used[i].role} (${used[i].name}); reorder the mesh axes`;
    }
  }
  return null;
}

/** Per axis, how much of its size lies within one slice (the profile's innermost level); null when an axis straddles it unevenly. */
export function iciSizes(mesh: Mesh, profile?: SliceInfo): number[] | null {
  const slice = profile && mesh.size > profile.levels[0].devices ? profile.levels[0].devices : mesh.size;
  const ici = mesh.axes.map(() => 1);
  let inner = 1;
  for (let i = mesh.axes.length - 1; i >= 0; i--) {
    const size = mesh.axes[i].size;
    // An axis named dcn runs across slices whatever its span (cost/price.ts networkLevel): it and
    // every axis outside it are dcn_* parallelism.
    if (mesh.axes[i].name === 'dcn') break;
    if (inner * size <= slice) {
      ici[i] = size;
      inner *= size;
    } else {
      const f = slice / inner;
      if (!Number.isInteger(f) || size % f !== 0) return null;
      ici[i] = f;
      break;
    }
  }
  return ici;
}

/** The model torchtitan ships with exactly this model's dimensions (and experts), if there is one. */
export function torchtitanModel(spec: ModelSpec): TorchtitanModel | undefined {
  return TORCHTITAN_MODELS.find((f) => f.dim === spec.dModel && f.layers === spec.decoderLayers && f.heads === spec.heads &&
    f.kvHeads === spec.kvHeads && f.headDim === spec.dKv && f.vocab === spec.vocab && f.tied === spec.tiedEmbeddings &&
    (f.moe
      ? spec.experts === f.moe.experts && spec.topK === f.moe.topK && spec.dFfExpert === f.moe.hidden && (spec.moeEvery ?? 1) === 1 && !spec.sharedExperts
      : !spec.experts && f.ffn === spec.dFf));
}

const SPECIFIC: Record<Engine, (s: PlanShape, profile: SliceInfo | undefined, strategy: boolean) => string[]> = {
  'mesh-tf': () => [],
  t5x: (s, profile, strategy) => {
    const out: string[] = [];
    const { plan } = s;
    if (strategy && plan.zero === 3 && axesOf(plan.layout, 'd_model').length > 0) {
      out.push(`t5x shards parameters ZeRO-3 style by a last ('embed', data) rule, but the plan already splits d_model (embed) over ${axesOf(plan.layout, 'd_model').join('+')}`);
    }
    const working = s.axes.filter((a) => a.size > 1 || a.dims.length > 0);
    const data = working.filter((a) => a.dims.includes('batch'));
    if (data.length > 1) out.push(`t5x shards batch over its one data axis, but the plan splits it over ${data.map((a) => a.name).join('+')}`);
    const model = working.find((a) => !a.dims.includes('batch'));
    if (data.length === 1 && model && model.index < data[0].index) {
      out.push(`t5x puts the model axis on the inner devices (ici_mesh_shape [replica, data, model]), but this mesh puts ${model.name} outside ${data[0].name}; reorder the mesh axes`);
    }
    const ici = iciSizes(s.mesh, profile);
    if (model && (!ici || ici[model.index] !== model.size)) out.push(`t5x keeps the model axis within one slice, but ${model.name} (${model.size}) crosses the ${profile?.levels[0].devices}-device slices of ${profile?.name}`);
    return out;
  },
  maxtext: (s, profile, strategy) => {
    const out: string[] = [];
    const { plan, spec, mesh } = s;
    if (!iciSizes(mesh, profile)) out.push(`MaxText splits each axis into a part within a slice and a part across slices, but this mesh does not split at the ${profile?.levels[0].devices}-device slices of ${profile?.name}`);
    for (const a of s.axes) if (a.role === 'unused' && a.size > 1) out.push(`mesh axis ${a.name} (${a.size}) splits no dimension; MaxText would take it for data parallelism`);
    out.push(...maxtextKinds(s).problems);
    // MaxText's expert axis also shards the batch (activation_batch_moe): experts go only where batch is.
    for (const a of s.axes) if (a.dims.includes('experts') && a.role !== 'data') out.push(`MaxText's expert axis shards batch with the experts, but ${a.name} splits ${a.dims.join(' and ')}; split experts over batch axes only`);
    if (s.axes.filter((a) => a.dims.includes('experts')).length > 1) out.push('MaxText has one expert axis, but the plan splits experts over several mesh axes');
    if (!strategy) return out;
    if (s.pp > 1 && plan.microbatches % s.pp !== 0) out.push(`MaxText needs num_pipeline_microbatches to be a multiple of the ${s.pp} pipeline stages, but the plan has ${plan.microbatches}`);
    const perMicrobatch = s.pp > 1 ? spec.batch : spec.batch / plan.microbatches;
    // types.py calculate_global_batch_sizes: int(devices x per_device_batch_size) sequences per microbatch.
    if (Math.floor(mesh.size * (perMicrobatch / mesh.size)) !== perMicrobatch) out.push(`MaxText trains int(devices x per_device_batch_size) sequences per microbatch, and no per_device_batch_size gives ${perMicrobatch} on ${mesh.size} devices`);
    if (s.sequenceParallel && s.tp === 1 && !s.axes.some((a) => a.dims.includes('heads') || a.dims.includes('d_ff'))) out.push('sequence parallelism needs an axis that splits heads or d_ff');
    return out;
  },
  megatron: (s) => {
    // Expert parallelism (parallel_state order tp-cp-ep-dp-pp): experts over the inner data-parallel ranks.
    const out = innerExpertAxes(s, 'Megatron-LM', 'expert_model_parallel_size', 'order tp-cp-ep-dp-pp');
    if (s.ep > 1 && s.cp > 1) out.push('expert parallelism with context parallelism folds experts over context ranks in Megatron-LM, which mesh-search does not price; keep length whole');
    if (s.cp > 1 && s.spec.seqLen % (2 * s.cp) !== 0) out.push(`Megatron-LM needs seq_length % (2 x context-parallel size) == 0, but ${s.spec.seqLen} % ${2 * s.cp} != 0`);
    if (s.spec.heads % s.tp !== 0 || s.kvHeads % s.tp !== 0) out.push(`Megatron-LM splits query and KV heads over the ${s.tp} tensor ranks, but ${s.kvHeads} KV heads do not divide`);
    return out;
  },
  deepspeed: (s) => {
    const out: string[] = [];
    if (axesWith(s, 'tensor').length > 1) out.push('DeepSpeed AutoTP has one tensor-parallel group, but the plan has several tensor axes');
    if (s.spec.experts) {
      // module_inject/auto_ep_folding.py: expert groups are runs of autoep_size consecutive ranks of a stage.
      out.push(...innerExpertAxes(s, 'DeepSpeed AutoEP', 'expert_parallel.autoep_size', 'consecutive ranks'));
      if (s.tp > 1) out.push('DeepSpeed AutoEP with AutoTP folds the expert ranks over the tensor ranks (auto_ep_folding.py), which mesh-search does not price; keep heads, d_ff and expert_hidden whole or export to megatron');
    }
    return out;
  },
  torchtitan: (s, _profile, strategy) => {
    const out: string[] = [];
    if (s.kvHeads % s.tp !== 0) out.push(`torchtitan splits the ${s.kvHeads} KV heads over ${s.tp} tensor ranks, which does not divide`);
    if (s.spec.experts) {
      // parallel_dims.py: the sparse mesh (pp, dp_replicate, efsdp, ep) puts ep innermost in dp_shard x cp x tp.
      out.push(...innerExpertAxes(s, 'torchtitan', 'expert_parallel_degree', 'the innermost dp_shard ranks'));
      if (s.tp > 1) out.push('torchtitan\'s expert parallelism borrows the tensor ranks (efsdp = dp_shard x cp x tp / ep), which mesh-search does not price; keep heads, d_ff and expert_hidden whole or export to megatron');
      // expert_parallel_degree must divide dp_shard x cp x tp: with DDP (dp_replicate) alone that is 1.
      if (strategy && s.ep > 1 && s.plan.zero !== 3) out.push(`torchtitan's expert ranks come out of FSDP's (expert_parallel_degree divides dp_shard x cp x tp), so a plan that splits experts over ${s.ep} ranks needs zero 3, not zero ${s.plan.zero}`);
    }
    return out;
  },
};
