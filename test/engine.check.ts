import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { ExportInput, Format } from '../src/export/index.js';
import { axesOf } from '../src/layout/layout.js';
import { DIM_NAMES } from '../src/model/graph.js';

/**
 * Checks an export against its engine's fixture (test/fixtures/engines/, read from the engine's
 * source by scripts/engine-fixtures.py): every key or flag is one the engine accepts, enum values
 * are legal, and the arithmetic the engine does on load comes out as the plan says. Returns the
 * problems found, empty when the export would load. Written from the engines' own checks, not
 * from the exporters.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;
export const fixture = (engine: Format): Json => JSON.parse(readFileSync(new URL(`./fixtures/engines/${engine}.json`, import.meta.url), 'utf8'));

const prod = (xs: readonly number[]) => xs.reduce((p, x) => p * x, 1);

/** `--flag value` tokens (shell continuations, comments dropped); a flag without a value maps to true. */
export function parseArgs(text: string): Map<string, string | true> {
  const tokens = text.split('\n').filter((l) => !l.startsWith('#')).join(' ').replace(/\\/g, ' ').split(/\s+/).filter(Boolean);
  const out = new Map<string, string | true>();
  for (let i = 0; i < tokens.length; i++) {
    if (i + 1 < tokens.length && tokens[i].startsWith('--') && !tokens[i + 1].startsWith('--') && !/^[a-z-]+:[a-z-]+$/.test(tokens[i + 1])) out.set(tokens[i], tokens[++i]);
    else out.set(tokens[i], true);
  }
  return out;
}

/** gin `name = value` bindings (imports, includes and comments aside; a [...] block is one value). */
export function parseGin(text: string): Map<string, string> {
  const out = new Map<string, string>();
  const body = text.replace(/\[\n((?: {4}.*\n)*)\]/g, (_, inner: string) => `[${inner.replace(/\n/g, ' ')}]`);
  for (const line of body.split('\n')) {
    if (!line || line.startsWith('#') || line.startsWith('from ') || line.startsWith('include ')) continue;
    const m = /^([\w./]+) = (.*)$/.exec(line);
    if (!m) throw new Error(`not a gin binding: ${line}`);
    out.set(m[1], m[2]);
  }
  return out;
}

export function checkExport(engine: Format, text: string, input: ExportInput): string[] {
  return CHECKS[engine](text, input, fixture(engine));
}

const CHECKS: Record<Format, (text: string, input: ExportInput, fx: Json) => string[]> = {
  megatron: (text, { mesh, spec }, fx) => {
    const out: string[] = [];
    const a = parseArgs(text);
    for (const [flag, v] of a) {
      if (!fx.flags.includes(flag)) out.push(`unknown flag ${flag}`);
      const legal = fx.enums[flag];
      if (legal && !legal.includes(v)) out.push(`${flag} ${v} is not one of ${legal.join(', ')}`);
    }
    const n = (f: string) => Number(a.get(f) ?? 1);
    const tp = n('--tensor-model-parallel-size'), pp = n('--pipeline-model-parallel-size'), cp = n('--context-parallel-size');
    // validate_args: world % (tp pp cp) == 0, dp = world / (tp pp cp), global % (micro dp) == 0.
    if (mesh.size % (tp * pp * cp) !== 0) out.push(`world ${mesh.size} is not a multiple of tp ${tp} x pp ${pp} x cp ${cp}`);
    const dp = mesh.size / (tp * pp * cp);
    if (n('--global-batch-size') % (n('--micro-batch-size') * dp) !== 0) out.push('global batch is not a multiple of micro batch x dp');
    if (n('--global-batch-size') !== spec.batch) out.push('global batch is not the model batch');
    if (cp > 1 && n('--seq-length') % (2 * cp) !== 0) out.push('seq_length % (2 cp) != 0');
    // validate_args: --overlap-param-gather needs the distributed optimizer (or Megatron-FSDP) and --overlap-grad-reduce.
    if (a.has('--overlap-param-gather') && !(a.has('--use-distributed-optimizer') || a.has('--use-megatron-fsdp'))) out.push('--overlap-param-gather without the distributed optimizer');
    if (a.has('--overlap-param-gather') && !a.has('--overlap-grad-reduce')) out.push('--overlap-param-gather without --overlap-grad-reduce');
    const vp = n('--num-virtual-stages-per-pipeline-rank');
    if (n('--num-layers') % (pp * vp) !== 0) out.push('layers do not split into pp x virtual stages');
    if (a.has('--sequence-parallel') && tp === 1) out.push('--sequence-parallel without tensor parallelism');
    for (const f of ['--num-layers', '--hidden-size', '--num-attention-heads', '--ffn-hidden-size', '--seq-length', '--vocab-size']) if (!a.has(f)) out.push(`no ${f}: the model is not complete`);
    // validate_args: expert parallelism needs num_experts, a multiple of it; parallel_state: the
    // expert groups (etp = tp by default) tile the tp x cp x dp ranks; TransformerConfig: padding
    // to capacity needs a capacity factor.
    const ep = n('--expert-model-parallel-size');
    if (ep > 1 && !a.has('--num-experts')) out.push('--expert-model-parallel-size without --num-experts');
    if (a.has('--num-experts') && n('--num-experts') % ep !== 0) out.push('num_experts is not a multiple of expert_model_parallel_size');
    if ((dp * cp) % ep !== 0) out.push(`expert_model_parallel_size ${ep} does not divide the data x context ranks ${dp * cp}`);
    if (a.has('--moe-pad-expert-input-to-capacity') && !a.has('--moe-expert-capacity-factor')) out.push('--moe-pad-expert-input-to-capacity without --moe-expert-capacity-factor');
    if (spec.experts && (n('--num-experts') !== spec.experts || n('--moe-router-topk') !== spec.topK)) out.push('the experts or top-k are not the model\'s');
    if (!spec.experts && a.has('--num-experts')) out.push('--num-experts on a dense model');
    return out;
  },
  torchtitan: (text, { mesh, spec }, fx) => {
    const out: string[] = [];
    const a = parseArgs(text);
    for (const [flag, v] of a) {
      if (!flag.startsWith('--')) {
        const [cmd, name] = flag.split(':');
        if (!(fx.subcommands[cmd] ?? []).includes(name)) out.push(`unknown subcommand ${flag}`);
        continue;
      }
      if (!fx.flags.includes(flag)) out.push(`unknown flag ${flag}`);
      const legal = fx.enums[flag];
      if (legal && !legal.includes(v)) out.push(`${flag} ${v} is not one of ${legal.join(', ')}`);
    }
    const n = (f: string) => Number(a.get(`--parallelism.${f}`) ?? 1);
    const degrees = ['data_parallel_replicate_degree', 'data_parallel_shard_degree', 'context_parallel_degree', 'tensor_parallel_degree', 'pipeline_parallel_degree'].map(n);
    if (prod(degrees) !== mesh.size) out.push(`degrees ${degrees.join(' x ')} != ${mesh.size} devices`);
    const dp = n('data_parallel_replicate_degree') * n('data_parallel_shard_degree');
    const pp = n('pipeline_parallel_degree');
    if (pp > 1 && a.get('--training.disable_cuda_graphs') !== true) out.push('a pipeline needs --training.disable_cuda_graphs');
    if (pp > 1) {
      // pipeline_parallel.py: virtual stages = ceil((layers + first/last stage weights) / layers per stage), per rank 1 for
      // single-stage schedules (1F1B), at least 2 for the others.
      const lps = Number(a.get('--parallelism.pipeline_parallel_layers_per_stage'));
      const w = Number(a.get('--parallelism.pipeline_parallel_first_stage_less_layers') ?? 1) + Number(a.get('--parallelism.pipeline_parallel_last_stage_less_layers') ?? 1);
      const perRank = Math.ceil((spec.decoderLayers + w) / lps) / pp;
      const single = a.get('--parallelism.pipeline_parallel_schedule') === '1F1B' || a.get('--parallelism.pipeline_parallel_schedule') === 'GPipe';
      if (single ? perRank !== 1 : perRank < 2 || !Number.isInteger(perRank)) out.push(`${perRank} stages per rank for ${a.get('--parallelism.pipeline_parallel_schedule')}`);
      if (lps * perRank * pp !== spec.decoderLayers + w) out.push('stages do not hold the layers evenly');
    }
    const micro = Number(a.get('--training.num_tokens_per_microbatch_per_dp_rank'));
    const step = Number(a.get('--training.num_tokens_per_train_step'));
    const ppm = pp > 1 ? n('num_pp_microbatches') : 1;
    if (step !== spec.batch * spec.seqLen) out.push('tokens per train step are not the model batch');
    if (!Number.isInteger(step / (micro * dp * ppm))) out.push('tokens per step are not a whole number of accumulation steps');
    // The config function's model must be the plan's model: the flavor's dimensions from the source.
    const kv = (spec as { kvHeads?: number }).kvHeads ?? spec.heads;
    const moe = spec as { experts?: number; topK?: number; dFfExpert?: number; moeEvery?: number; sharedExperts?: number };
    const family = [fx.llama3, fx.qwen3].find((f) => f.module === a.get('--module'));
    const flavor = family?.flavors[family.configs[a.get('--config') as string]];
    if (!family || !flavor) out.push(`--module/--config name no shipped llama3 or qwen3 config: ${a.get('--module')} ${a.get('--config')}`);
    else if (family === fx.llama3) {
      let ffn = Math.trunc((8 * flavor.dim) / 3);
      if (flavor.ffn_dim_multiplier !== null) ffn = Math.trunc(flavor.ffn_dim_multiplier * ffn);
      ffn = flavor.multiple_of * Math.ceil(ffn / flavor.multiple_of);
      const got = [flavor.dim, flavor.n_layers, flavor.n_heads, flavor.n_kv_heads ?? flavor.n_heads, flavor.dim / flavor.n_heads, ffn, flavor.vocab_size, flavor.weight_tying, 0];
      const want = [spec.dModel, spec.decoderLayers, spec.heads, kv, spec.dKv, spec.dFf, spec.vocab, spec.tiedEmbeddings, moe.experts ?? 0];
      if (got.join() !== want.join()) out.push(`flavor dims ${got.join(',')} != model ${want.join(',')}`);
    } else {
      // qwen3: an explicit head_dim; MoE flavors on every layer, no shared expert.
      const got = [flavor.dim, flavor.n_layers, flavor.n_heads, flavor.n_kv_heads, flavor.head_dim, flavor.vocab_size, flavor.weight_tying,
        flavor.moe ? flavor.num_experts : 0, flavor.moe ? flavor.top_k : 0, flavor.moe ? flavor.moe_hidden_dim : flavor.hidden_dim];
      const want = [spec.dModel, spec.decoderLayers, spec.heads, kv, spec.dKv, spec.vocab, spec.tiedEmbeddings,
        moe.experts ?? 0, moe.topK ?? 0, moe.experts ? moe.dFfExpert : spec.dFf];
      if (got.join() !== want.join()) out.push(`flavor dims ${got.join(',')} != model ${want.join(',')}`);
      if (moe.experts && ((moe.moeEvery ?? 1) !== 1 || moe.sharedExperts)) out.push('qwen3 puts experts on every layer without a shared expert');
    }
    // Expert parallelism (fx.expert_parallel, parallel_dims.py): ep divides dp_shard x cp x tp and the experts.
    const ep = n('expert_parallel_degree');
    if (ep > 1 && !moe.experts) out.push('expert parallelism on a dense model');
    if (moe.experts) {
      if (a.get('--parallelism.expert_parallel_degree') === undefined) out.push('an MoE model without --parallelism.expert_parallel_degree');
      const region = n('data_parallel_shard_degree') * n('context_parallel_degree') * n('tensor_parallel_degree');
      if (region % ep !== 0) out.push(`expert_parallel_degree ${ep} does not divide dp_shard x cp x tp = ${region}`);
      if (moe.experts % ep !== 0) out.push(`${moe.experts} experts do not divide over ${ep} expert ranks`);
    }
    return out;
  },
  deepspeed: (text, { mesh, spec, plan }, fx) => {
    const out: string[] = [];
    const j = JSON.parse(text);
    for (const [k, v] of Object.entries(j)) {
      if (!fx.keys.includes(k)) out.push(`unknown key ${k}`);
      if (typeof v === 'object' && v !== null) {
        for (const sub of Object.keys(v)) if (!(fx.sections[k] ?? []).includes(sub)) out.push(`unknown key ${k}.${sub}`);
      }
    }
    if (!fx.enums['zero_optimization.stage'].includes(j.zero_optimization?.stage)) out.push('zero stage');
    // DeepSpeedConfig._batch_assertion, with world_size every rank (AutoTP passes no mpu).
    if (j.train_batch_size !== j.train_micro_batch_size_per_gpu * j.gradient_accumulation_steps * mesh.size) out.push('train_batch_size != micro x accumulation x world');
    const tp = j.tensor_parallel?.autotp_size ?? 1;
    if (j.train_batch_size / tp !== spec.batch) out.push('the batch trained (train_batch_size / tp) is not the model batch');
    if (j.gradient_accumulation_steps !== plan.microbatches) out.push('accumulation is not the plan microbatches');
    // AutoEP (fx.autoep_note): an MoE model needs it, a dense one does not; the folding arithmetic.
    const ep = j.expert_parallel;
    const experts = (spec as { experts?: number }).experts;
    if (!experts && ep) out.push('expert_parallel on a dense model');
    if (experts) {
      if (ep?.enabled !== true) out.push('an MoE model without expert_parallel.enabled');
      else {
        const size = ep.autoep_size ?? 1, etp = ep.expert_tensor_parallel_size ?? 1;
        if (mesh.size % (size * etp) !== 0) out.push(`autoep_size ${size} x ${etp} does not divide ${mesh.size} ranks`);
        if (experts % size !== 0) out.push(`${experts} experts do not divide over autoep_size ${size}`);
        if (etp !== 1) out.push('expert_tensor_parallel_size must be 1');
        if (tp > 1 && j.zero_optimization?.stage === 3) out.push('AutoEP with AutoTP refuses ZeRO 3');
        const split = axesOf(plan.layout, 'experts').reduce((p, a) => p * mesh.axes.find((x) => x.name === a)!.size, 1);
        if (size !== split) out.push(`autoep_size ${size} is not the plan's expert split ${split}`);
      }
    }
    return out;
  },
  maxtext: (text, { mesh, spec, plan }, fx) => {
    const out: string[] = [];
    const y = parseYaml(text) as Record<string, Json>;
    for (const k of Object.keys(y)) if (!fx.keys.includes(k)) out.push(`unknown key ${k}`);
    for (const k of ['remat_policy', 'dtype', 'decoder_block'] as const) if (y[k] !== undefined && !fx.enums[k].includes(y[k])) out.push(`${k} ${y[k]} is not legal`);
    const axes: string[] = fx.enums.mesh_axes;
    for (const [name, to] of y.logical_axis_rules ?? []) {
      if (!fx.enums.logical_axis_names.includes(name)) out.push(`unknown logical axis ${name}`);
      for (const t of [to].flat()) if (!axes.includes(t)) out.push(`rule ${name} names mesh axis ${t}`);
    }
    for (const t of (y.data_sharding ?? []).flat()) if (!axes.includes(t)) out.push(`data_sharding names ${t}`);
    const key = (a: string) => (a === 'stage' ? 'pipeline' : a);
    const ici = prod(axes.map((a) => y[`ici_${key(a)}_parallelism`] ?? 1));
    const dcn = prod(axes.map((a) => y[`dcn_${key(a)}_parallelism`] ?? 1));
    if (ici * dcn !== mesh.size) out.push(`ici ${ici} x dcn ${dcn} != ${mesh.size}`);
    if (y.base_config !== 'base.yml') out.push('no base_config');
    // types.py calculate_global_batch_sizes and the pipeline checks.
    const micro = Math.trunc(mesh.size * y.per_device_batch_size);
    if (micro * (y.gradient_accumulation_steps ?? 1) !== spec.batch) out.push(`int(devices x per_device_batch_size) x accumulation = ${micro * (y.gradient_accumulation_steps ?? 1)} != ${spec.batch}`);
    const stages = (y.ici_pipeline_parallelism ?? 1) * (y.dcn_pipeline_parallelism ?? 1);
    if (stages > 1) {
      if (y.num_pipeline_microbatches % stages !== 0 || micro % y.num_pipeline_microbatches !== 0) out.push('pipeline microbatches');
      if (stages * (y.num_pipeline_repeats ?? 1) * y.num_layers_per_pipeline_stage !== spec.decoderLayers) out.push('stages x repeats x layers per stage != layers');
      if (y.num_pipeline_microbatches !== plan.microbatches) out.push('pipeline microbatches are not the plan');
    }
    for (const [k, v] of [['base_emb_dim', spec.dModel], ['base_num_query_heads', spec.heads], ['base_mlp_dim', spec.dFf], ['base_num_decoder_layers', spec.decoderLayers], ['head_dim', spec.dKv], ['vocab_size', spec.vocab], ['max_target_length', spec.seqLen]] as const) {
      if (y[k] !== v) out.push(`${k} ${y[k]} != ${v}`);
    }
    // Mixture of experts, as models/mixtral-8x7b.yml writes it (num_experts 1 is base.yml's dense default).
    const ep = (y.ici_expert_parallelism ?? 1) * (y.dcn_expert_parallelism ?? 1);
    if (spec.experts) {
      for (const [k, v] of [['num_experts', spec.experts], ['num_experts_per_tok', spec.topK], ['base_moe_mlp_dim', spec.dFfExpert], ['decoder_block', 'mixtral']] as const) {
        if (y[k] !== v) out.push(`${k} ${y[k]} != ${v}`);
      }
      if (spec.experts % ep !== 0) out.push(`${spec.experts} experts do not split over expert parallelism ${ep}`);
      const planEp = axesOf(plan.layout, 'experts').reduce((p, a) => p * mesh.axes.find((x) => x.name === a)!.size, 1);
      if (ep !== planEp) out.push(`expert parallelism ${ep} is not the plan's ${planEp}`);
      const exp = (y.logical_axis_rules ?? []).find(([n]: [string]) => n === 'exp');
      if (planEp > 1 && !(exp && [exp[1]].flat().includes('expert'))) out.push('the expert weights (exp) are not on the expert axis');
    } else if ((y.num_experts ?? 1) !== 1 || ep !== 1) {
      out.push('a dense model with experts');
    }
    return out;
  },
  t5x: (text, { mesh, spec, plan }, fx) => {
    const out: string[] = [];
    const g = parseGin(text);
    const net = /from t5x\.examples\.(\w+) import network/.exec(text)?.[1];
    for (const [k] of g) {
      if (/^[A-Z_]+$/.test(k)) {
        if (!fx.macros.includes(k)) out.push(`unknown macro ${k}`);
        continue;
      }
      const dot = k.lastIndexOf('.');
      const target = k.slice(0, dot).replace(/^network\./, `${net}.network.`);
      if (!(fx.configurables[target] ?? []).includes(k.slice(dot + 1))) out.push(`unknown binding ${k}`);
    }
    for (const inc of text.matchAll(/^include '([^']+)'$/gm)) if (!fx.includes.includes(inc[1])) out.push(`unknown include ${inc[1]}`);
    const list = (k: string) => JSON.parse(g.get(`partitioning.PjitPartitioner.${k}`) ?? '[]') as number[];
    const ici = list('ici_mesh_shape'), dcn = list('dcn_mesh_shape');
    if (ici.length !== 3 || dcn.length !== 3 || prod(ici) * prod(dcn) !== mesh.size) out.push(`ici ${ici} x dcn ${dcn} != ${mesh.size} devices`);
    if (Number(g.get('partitioning.PjitPartitioner.num_partitions')) !== ici[2] * dcn[2]) out.push('num_partitions is not the model axis');
    for (const m of (g.get('partitioning.PjitPartitioner.logical_axis_rules') ?? '').matchAll(/'(\w+)'/g)) {
      if (!fx.enums.mesh_axis_names.includes(m[1]) && !/^[a-z_]+$/.test(m[1])) out.push(`rule axis ${m[1]}`);
    }
    const nm = g.get('trainer.Trainer.num_microbatches');
    if (nm !== 'None' && (spec.batch % Number(nm) !== 0 || Number(nm) !== plan.microbatches)) out.push('num_microbatches');
    if (nm === 'None' && plan.microbatches !== 1) out.push('microbatches dropped');
    const remat = [...g].find(([k]) => k.endsWith('.remat_policy'))?.[1];
    if (remat && !fx.enums['scalable_t5.network.T5Config.remat_policy'].includes(remat.replace(/'/g, ''))) out.push(`remat_policy ${remat}`);
    if (Number(g.get('BATCH_SIZE')) !== spec.batch) out.push('BATCH_SIZE');
    return out;
  },
  'mesh-tf': (text, { mesh, spec, plan }, fx) => {
    const out: string[] = [];
    const g = parseGin(text);
    const names = Object.keys(fx.configurables);
    for (const [k] of g) {
      if (k === 'MESH_SHAPE' || k === 'LAYOUT_RULES') continue;
      if (!k.includes('.')) {
        if (!fx.macros.includes(k)) out.push(`unknown macro ${k}`);
        continue;
      }
      // gin: an optional scope/, then a configurable named by a suffix of module.name, then the parameter.
      const bare = k.replace(/^\w+\//, '');
      const dot = bare.lastIndexOf('.');
      const target = bare.slice(0, dot);
      const found = names.filter((n) => n === target || n.endsWith(`.${target}`));
      if (found.length !== 1 || !fx.configurables[found[0]].includes(bare.slice(dot + 1))) out.push(`unknown binding ${k}`);
    }
    const shape = JSON.parse(g.get('MESH_SHAPE')!.replace(/^"(.*)"$/, '"$1"')) as string;
    const meshAxes = shape.split(';').map((p) => p.split(':'));
    if (prod(meshAxes.map(([, n]) => Number(n))) !== mesh.size) out.push('mesh_shape is not the device count');
    const rules = (JSON.parse(g.get('LAYOUT_RULES')!) as string).split(';').filter(Boolean).map((r) => r.split(':'));
    for (const [dim, ax] of rules) {
      // LayoutRules.tensor_dimension_to_mesh_axis: one mesh axis per dimension.
      if (ax.includes('+') || !meshAxes.some(([n]) => n === ax)) out.push(`rule ${dim}:${ax}`);
      if (!fx.dimension_names.includes(dim)) out.push(`rule for ${dim}, a dimension Mesh-TF's transformer does not create`);
    }
    // serialize_num_microbatches: per-replica sequences / (tokens // longest feature).
    const tokens = Number(g.get('utils.serialize_num_microbatches.tokens_per_microbatch_per_replica'));
    const perReplica = spec.batch / prod(axesOf(plan.layout, 'batch').map((a) => mesh.axes.find((x) => x.name === a)!.size));
    if (perReplica / Math.max(1, Math.floor(tokens / spec.seqLen)) !== plan.microbatches) out.push('serialize_num_microbatches does not give the plan microbatches');
    if (Number(g.get('Unitransformer.max_length')) < spec.seqLen) out.push('Unitransformer.max_length below the sequence');
    const act = g.get('DenseReluDense.activation') ?? '"relu"';
    for (const a of act.matchAll(/"(\w+)"/g)) if (!fx.enums['DenseReluDense.activation'].includes(a[1])) out.push(`activation ${a[1]}`);
    for (const d of DIM_NAMES) if (axesOf(plan.layout, d).length > 1) out.push(`${d} on several axes`);
    return out;
  },
};
