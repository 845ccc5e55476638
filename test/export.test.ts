import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { getDevice } from '../src/cost/presets.js';
import { exportPlan, FORMATS, UnsupportedPlanError, type ExportInput, type Format } from '../src/export/index.js';
import { parseLayout } from '../src/layout/layout.js';
import { makePlan } from '../src/lower/plan.js';
import { parseMesh } from '../src/mesh/mesh.js';
import { getPreset } from '../src/model/presets.js';
import { parseModelSpec } from '../src/model/spec.js';

/** The plans every format is pinned on. */
const CASES = {
  // Shazeer et al. 2018: the 5B-parameter LM on a 512-core TPU v2 pod.
  paper: { mesh: '16x32', model: 'transformer-5b', device: 'tpu-v2', layout: 'batch:rows;d_ff:cols;heads:cols;vocab:cols', zero: 0, recompute: 'none', microbatches: 1 },
  // Three axes with a pipeline: stages across nodes, data parallel, tensor parallel within a node.
  pipeline: { mesh: '2x4x8', model: 'llama2-7b', device: 'h100-sxm', layout: 'layers:x;batch:y;d_ff:z;heads:z;vocab:z', zero: 0, recompute: 'full', microbatches: 8 },
  // Pure data parallelism with ZeRO-3 over both axes of 8 nodes of 8 GPUs.
  zero3: { mesh: '8x8', model: 'gpt3-1.3b', device: 'a100-80g', layout: 'batch:rows+cols', zero: 3, recompute: 'none', microbatches: 2 },
} as const;
type CaseName = keyof typeof CASES;

function input(c: (typeof CASES)[CaseName] | { mesh: string; model: string; device: string; layout: string; zero: number; recompute: string; microbatches: number }): ExportInput {
  return { plan: makePlan(c.layout, c), mesh: parseMesh(c.mesh), spec: getPreset(c.model), profile: getDevice(c.device) };
}

/** The export's text, or `ERROR: <message>` when the target refuses. */
function attempt(name: CaseName, format: Format): string {
  try {
    return exportPlan(input(CASES[name]), format).text;
  } catch (e) {
    if (e instanceof UnsupportedPlanError) return `ERROR: ${e.message}\n`;
    throw e;
  }
}

const golden = (name: string, format: string) => new URL(`./golden/export/${name}.${format}.txt`, import.meta.url);

describe('export goldens', () => {
  for (const name of Object.keys(CASES) as CaseName[]) {
    for (const format of FORMATS) {
      it(`${name} as ${format} matches its golden file`, () => {
        const text = attempt(name, format);
        const file = golden(name, format);
        if (process.env.UPDATE_GOLDEN) writeFileSync(file, text);
        expect(existsSync(file), `no golden file ${file.pathname}: run with UPDATE_GOLDEN=1`).toBe(true);
        expect(text).toBe(readFileSync(file, 'utf8'));
      });
    }
  }

  it('the goldens say which targets refuse which plan', () => {
    const refused = (name: CaseName) => FORMATS.filter((f) => attempt(name, f).startsWith('ERROR'));
    // Megatron-LM has no plain ReLU; torchtitan ships no model of these dimensions.
    expect(refused('paper')).toEqual(['megatron', 'deepspeed', 'torchtitan']);
    expect(refused('pipeline')).toEqual(['mesh-tf', 't5x', 'deepspeed', 'torchtitan']);
    expect(refused('zero3')).toEqual(['mesh-tf', 't5x', 'torchtitan']);
  });
});

/** The value of `NAME = "..."` in a gin file. */
function ginString(text: string, name: string): string {
  const m = new RegExp(`^${name} = "([^"]*)"$`, 'm').exec(text);
  if (!m) throw new Error(`no ${name} in\n${text}`);
  return m[1];
}

/** `--flag value` lines (shell continuations) as a map; a flag without a value maps to true. */
function args(text: string): Map<string, string | true> {
  const tokens = text.split('\n').filter((l) => !l.startsWith('#')).join(' ').replace(/\\/g, ' ').split(/\s+/).filter(Boolean);
  const out = new Map<string, string | true>();
  for (let i = 0; i < tokens.length; i++) {
    expect(tokens[i].startsWith('--') || /^[a-z-]+:[a-z-]+$/.test(tokens[i]), `token ${tokens[i]} is not a flag`).toBe(true);
    if (i + 1 < tokens.length && !tokens[i + 1].startsWith('--')) out.set(tokens[i], tokens[++i]);
    else out.set(tokens[i], true);
  }
  return out;
}

describe('mesh-tf', () => {
  it("writes mesh_shape and layout strings that our own parsers read back to the paper's plan", () => {
    const c = CASES.paper;
    const text = exportPlan(input(c), 'mesh-tf').text;
    expect(parseMesh(ginString(text, 'MESH_SHAPE'))).toEqual(parseMesh(c.mesh));
    expect(parseLayout(ginString(text, 'LAYOUT_RULES'))).toEqual(parseLayout(c.layout));
    expect(text).toMatch(/^utils\.run\.mesh_shape = %MESH_SHAPE$/m);
    expect(text).toMatch(/^utils\.run\.layout_rules = %LAYOUT_RULES$/m);
    expect(text).toMatch(/^utils\.run\.batch_size = \("sequences_per_batch", 256\)$/m);
  });

  it('round-trips a three-axis plan and sets microbatching and full recompute', () => {
    const c = { mesh: '2x4x8', model: 'transformer-5b', device: 'tpu-v2', layout: 'batch:x;d_model:y;heads:z;d_ff:z;vocab:z', zero: 0, recompute: 'full', microbatches: 4 };
    const text = exportPlan(input(c), 'mesh-tf').text;
    expect(parseMesh(ginString(text, 'MESH_SHAPE'))).toEqual(parseMesh('x:2;y:4;z:8'));
    expect(parseLayout(ginString(text, 'LAYOUT_RULES'))).toEqual(parseLayout(c.layout));
    // 256 sequences / 2 replicas / 4 microbatches = 32 sequences of 256 tokens.
    expect(text).toMatch(/^utils\.serialize_num_microbatches\.tokens_per_microbatch_per_replica = 8192$/m);
    expect(text).toMatch(/^LayerStack\.recompute_grads = True$/m);
  });

  it('refuses a dimension on two axes, a pipeline, ZeRO and selective recompute, naming each', () => {
    const c = { ...CASES.pipeline, layout: 'layers:x;batch:y+z', zero: 1, recompute: 'selective' };
    expect(() => exportPlan(input(c), 'mesh-tf')).toThrow(UnsupportedPlanError);
    try {
      exportPlan(input(c), 'mesh-tf');
    } catch (e) {
      const missing = (e as UnsupportedPlanError).missing.join('\n');
      expect(missing).toMatch(/splits batch over y\+z/);
      expect(missing).toMatch(/no pipeline parallelism: layers:x/);
      expect(missing).toMatch(/no ZeRO: zero 1/);
      expect(missing).toMatch(/selective/);
      expect(missing).toMatch(/no rotary position embedding/);
    }
  });
});

/** The logical_axis_rules of a t5x gin snippet: name → mesh axes (empty for None). */
function t5xRules(text: string): [string, string[]][] {
  return [...text.matchAll(/^ {4}\('(\w+)', (None|'\w+'|\([^)]*\))\),$/gm)].map(([, name, v]) =>
    [name, v === 'None' ? [] : [...v.matchAll(/'(\w+)'/g)].map((m) => m[1])]);
}

/**
 * flax's logical-to-mesh resolution: rules in order; a rule fixes a still-unassigned logical
 * axis (even to None) unless one of its mesh axes is already used by the tensor.
 */
function resolve(rules: [string, string[]][], dims: string[]): (string[] | null)[] {
  const out: (string[] | null | undefined)[] = dims.map(() => undefined);
  for (const [name, mesh] of rules) {
    const pos = dims.indexOf(name);
    const used = new Set(out.flatMap((m) => m ?? []));
    if (pos >= 0 && out[pos] === undefined && mesh.every((m) => !used.has(m))) out[pos] = mesh.length ? mesh : null;
  }
  return out.map((m) => m ?? null);
}

describe('t5x logical axis rules', () => {
  it("resolve, as flax does, to the paper's layout", () => {
    const rules = t5xRules(exportPlan(input(CASES.paper), 't5x').text);
    expect(rules.length).toBe(13);
    expect(resolve(rules, ['batch', 'length', 'heads', 'kv'])).toEqual([['replica', 'data'], null, ['model'], null]);
    expect(resolve(rules, ['embed', 'mlp'])).toEqual([null, ['model']]);
    expect(resolve(rules, ['vocab', 'embed'])).toEqual([['model'], null]);
  });

  it('ignore a mesh axis of one device that splits nothing', () => {
    const c = { ...CASES.paper, mesh: 'x:1;rows:16;cols:32' };
    expect(exportPlan(input(c), 't5x').text).toBe(exportPlan(input(CASES.paper), 't5x').text.replace('rows:16;cols:32 (512', 'x:1;rows:16;cols:32 (512'));
  });

  it('shard parameters over the batch axes for ZeRO-3 and leave activations alone', () => {
    const c = { mesh: '8x8', model: 'mtf-lm-s0', device: 'tpu-v2', layout: 'batch:rows;d_ff:cols;heads:cols;vocab:cols', zero: 3, recompute: 'none', microbatches: 1 };
    const rules = t5xRules(exportPlan(input(c), 't5x').text);
    expect(resolve(rules, ['embed', 'mlp'])).toEqual([['replica', 'data'], ['model']]);
    expect(resolve(rules, ['batch', 'length', 'embed'])).toEqual([['replica', 'data'], null, null]);
  });
});

describe('YAML and JSON outputs parse with real parsers', () => {
  it('every YAML and JSON output of every case parses, and every gin line is a binding', () => {
    let parsed = 0;
    for (const name of Object.keys(CASES) as CaseName[]) {
      for (const format of FORMATS) {
        let out;
        try {
          out = exportPlan(input(CASES[name]), format);
        } catch (e) {
          if (e instanceof UnsupportedPlanError) continue;
          throw e;
        }
        expect(out.format).toBe(format);
        if (out.syntax === 'yaml') expect(typeof parseYaml(out.text)).toBe('object');
        if (out.syntax === 'json') expect(typeof JSON.parse(out.text)).toBe('object');
        if (out.syntax === 'yaml' || out.syntax === 'json') parsed++;
        if (out.syntax === 'gin') {
          const body = out.text.replace(/\[\n(?: {4}\(.*\),\n)*\]/g, '[]');
          for (const line of body.split('\n').filter((l) => l && !l.startsWith('#'))) {
            expect(line).toMatch(/^([A-Za-z_][\w./]* = \S|from [\w.]+ import \w+|include '[\w/.]+')/);
          }
        }
      }
    }
    // maxtext for all three plans, deepspeed for the ZeRO-3 one.
    expect(parsed).toBe(4);
  });

  it('maxtext: the paper plan is 16-way data and 32-way tensor within one TPU pod', () => {
    const y = parseYaml(exportPlan(input(CASES.paper), 'maxtext').text) as Record<string, unknown>;
    expect(y.ici_data_parallelism).toBe(16);
    expect(y.ici_tensor_parallelism).toBe(32);
    expect(y.dcn_data_parallelism).toBe(1);
    expect(y.per_device_batch_size).toBe(0.5);
    const rules = new Map(y.logical_axis_rules as [string, string[]][]);
    expect(rules.get('activation_batch')).toEqual(['data']);
    for (const n of ['mlp', 'heads', 'q_heads', 'kv_heads', 'vocab', 'activation_vocab']) expect(rules.get(n)).toEqual(['tensor']);
    expect(rules.get('embed')).toEqual([]);
  });

  it('maxtext: the pipeline plan crosses nodes for stages and data, stays in a node for tensor', () => {
    const y = parseYaml(exportPlan(input(CASES.pipeline), 'maxtext').text) as Record<string, unknown>;
    expect([y.dcn_pipeline_parallelism, y.dcn_data_parallelism, y.ici_tensor_parallelism]).toEqual([2, 4, 8]);
    expect([y.ici_pipeline_parallelism, y.ici_data_parallelism, y.dcn_tensor_parallelism]).toEqual([1, 1, 1]);
    expect(Object.keys(y).some((k) => k.includes('stage_parallelism'))).toBe(false);
    expect(y.num_pipeline_microbatches).toBe(8);
    expect(y.remat_policy).toBe('full');
    expect(new Map(y.logical_axis_rules as [string, string[]][]).get('layers')).toEqual(['stage']);
  });

  it('maxtext and t5x: recompute minimal is their own remat_policy minimal; MaxText saves what none and selective save no less of in minimal_with_context', () => {
    const remat = (recompute: string) => (parseYaml(exportPlan(input({ ...CASES.pipeline, recompute }), 'maxtext').text) as Record<string, unknown>).remat_policy;
    expect(['none', 'selective', 'minimal', 'full'].map(remat)).toEqual(['minimal_with_context', 'minimal_with_context', 'minimal', 'full']);
    const t5 = exportPlan(input({ ...CASES.paper, mesh: '16x8', model: 'mtf-tr-s0', layout: 'batch:rows;d_ff:cols;heads:cols;vocab:cols', recompute: 'minimal' }), 't5x').text;
    expect(t5).toMatch(/\.remat_policy = 'minimal'$/m);
  });

  it('maxtext: ZeRO-3 becomes fsdp over ici and dcn, with parameters split on embed', () => {
    const y = parseYaml(exportPlan(input(CASES.zero3), 'maxtext').text) as Record<string, unknown>;
    expect([y.ici_fsdp_parallelism, y.dcn_fsdp_parallelism, y.ici_data_parallelism]).toEqual([8, 8, 1]);
    expect(new Map(y.logical_axis_rules as [string, string[]][]).get('embed')).toEqual(['fsdp']);
    expect(y.gradient_accumulation_steps).toBe(2);
    // MaxText trains int(devices x per_device_batch_size) x accumulation sequences per step.
    expect(64 * (y.per_device_batch_size as number) * 2).toBe(512);
  });

  it('deepspeed: batch sizes agree with DeepSpeed\'s own check', () => {
    const j = JSON.parse(exportPlan(input(CASES.zero3), 'deepspeed').text);
    expect(j.zero_optimization.stage).toBe(3);
    expect(j.train_batch_size).toBe(j.train_micro_batch_size_per_gpu * j.gradient_accumulation_steps * 64);
    expect(j.fp16).toEqual({ enabled: true });
  });

  it('deepspeed: tensor parallelism without a vocab split becomes AutoTP', () => {
    const c = { mesh: '4x8', model: 'llama2-7b', device: 'h100-sxm', layout: 'batch:rows;heads:cols;d_ff:cols', zero: 1, recompute: 'none', microbatches: 4 };
    const j = JSON.parse(exportPlan(input(c), 'deepspeed').text);
    expect(j.tensor_parallel).toEqual({ autotp_size: 8 });
    // Every rank counts, TP ranks too (deepspeedai/DeepSpeed#7298): 32 ranks, the batch times 8.
    expect(j.train_batch_size).toBe(j.train_micro_batch_size_per_gpu * j.gradient_accumulation_steps * 32);
    expect(j.train_batch_size).toBe(1024 * 8);
  });
});

describe('megatron and torchtitan arguments', () => {
  it('megatron: a Llama 2 plan is tensor 8 over cols, 4 data-parallel replicas, with the model dimensions', () => {
    const a = args(exportPlan(input({ ...CASES.pipeline, mesh: '4x8', layout: 'batch:rows;heads:cols;d_ff:cols;vocab:cols', recompute: 'none', microbatches: 4 }), 'megatron').text);
    expect(a.get('--tensor-model-parallel-size')).toBe('8');
    expect(a.get('--pipeline-model-parallel-size')).toBe('1');
    expect(a.get('--micro-batch-size')).toBe('64');
    expect(a.get('--global-batch-size')).toBe('1024');
    expect([a.get('--num-layers'), a.get('--hidden-size'), a.get('--num-attention-heads'), a.get('--ffn-hidden-size')]).toEqual(['32', '4096', '32', '11008']);
    expect(a.has('--sequence-parallel')).toBe(false);
  });

  it('megatron: the pipeline plan gets 8 microbatches and full recompute of each layer', () => {
    const a = args(exportPlan(input(CASES.pipeline), 'megatron').text);
    expect([a.get('--tensor-model-parallel-size'), a.get('--pipeline-model-parallel-size')]).toEqual(['8', '2']);
    // Megatron runs global / (micro x dp) microbatches: 1024 / (32 x 4) = 8.
    expect(Number(a.get('--global-batch-size')) / Number(a.get('--micro-batch-size')) / 4).toBe(8);
    expect(a.get('--recompute-granularity')).toBe('full');
  });

  it('megatron: ZeRO stages map to the distributed optimizer and Megatron-FSDP', () => {
    const z1 = args(exportPlan(input({ ...CASES.zero3, zero: 1 }), 'megatron').text);
    expect(z1.get('--use-distributed-optimizer')).toBe(true);
    expect(z1.has('--use-megatron-fsdp')).toBe(false);
    const z3 = args(exportPlan(input(CASES.zero3), 'megatron').text);
    expect(z3.get('--data-parallel-sharding-strategy')).toBe('optim_grads_params');
    const sel = args(exportPlan(input({ ...CASES.pipeline, recompute: 'selective' }), 'megatron').text);
    expect(sel.get('--recompute-granularity')).toBe('selective');
  });

  it('torchtitan: a llama3-8b plan names its shipped config, degrees multiply to the mesh, tokens make the batch', () => {
    const spec = { ...getPreset('llama3-8b'), batch: 512 };
    const at = (layout: string, zero: number, recompute: string, microbatches: number) =>
      exportPlan({ plan: makePlan(layout, { zero, recompute, microbatches }), mesh: parseMesh('2x4x8'), spec, profile: getDevice('h100-sxm') }, 'torchtitan').text;
    const a = args(at('layers:x;batch:y;d_ff:z;heads:z;vocab:z', 0, 'full', 8));
    expect([a.get('--module'), a.get('--config')]).toEqual(['torchtitan.models.llama3', 'llama3_8b']);
    const degree = (k: string) => Number(a.get(`--parallelism.${k}`));
    expect(degree('data_parallel_replicate_degree') * degree('data_parallel_shard_degree') * degree('tensor_parallel_degree')
      * degree('pipeline_parallel_degree') * degree('context_parallel_degree')).toBe(64);
    expect(degree('num_pp_microbatches')).toBe(8);
    expect(a.get('--training.disable_cuda_graphs')).toBe(true);
    // tokens per train step / (tokens per microbatch per dp rank x dp x pp microbatches) = 1 accumulation step
    expect(Number(a.get('--training.num_tokens_per_train_step')) / Number(a.get('--training.num_tokens_per_microbatch_per_dp_rank')) / 4 / 8).toBe(1);
    expect(a.get('activation-checkpoint:full')).toBe(true);
    const z3 = args(at('batch:x+y+z', 3, 'none', 2));
    expect(z3.get('--parallelism.data_parallel_shard_degree')).toBe('64');
    // No pipeline: 2 microbatches are gradient accumulation.
    expect(Number(z3.get('--training.num_tokens_per_train_step')) / Number(z3.get('--training.num_tokens_per_microbatch_per_dp_rank')) / 64).toBe(2);
  });
});

describe('ZeRO with context parallelism', () => {
  it('Megatron-LM writes it as the distributed optimizer over data x context ranks, which is how the plan shards its states', () => {
    const out = exportPlan(input({ mesh: '4x8', model: 'llama2-7b', device: 'h100-sxm', layout: 'batch:rows;length:cols', zero: 1, recompute: 'none', microbatches: 1 }), 'megatron').text;
    expect(out).toMatch(/--context-parallel-size 8 /);
    expect(out).toMatch(/--use-distributed-optimizer/);
  });
});

describe('plans a target cannot express', () => {
  const refuse = (c: Parameters<typeof input>[0], format: Format) => {
    try {
      exportPlan(input(c), format);
    } catch (e) {
      expect(e).toBeInstanceOf(UnsupportedPlanError);
      return (e as Error).message;
    }
    throw new Error(`${format} accepted ${c.layout}`);
  };

  it.each([
    ['megatron', { ...CASES.paper, layout: 'batch:rows;d_ff:cols;heads:cols' }, /splits only heads and d_ff over cols \(vocab stays whole\)/],
    ['torchtitan', { ...CASES.paper, layout: 'batch:rows;d_model:cols' }, /cols splits d_model; torchtitan has no parallelism that splits d_model/],
    ['megatron', { ...CASES.paper, layout: 'batch:rows' }, /mesh axis cols \(32\) splits no dimension/],
    ['torchtitan', { ...CASES.zero3, zero: 1 }, /zero 1 cannot be expressed/],
    ['torchtitan', { ...CASES.pipeline, recompute: 'selective' }, /selective/],
    ['megatron', { ...CASES.paper, mesh: '16x8', model: 'mtf-tr-s0', layout: 'batch:rows;d_ff:cols;heads:cols;vocab:cols' }, /trains decoder models; this one is an encoder-decoder/],
    ['maxtext', { ...CASES.zero3, zero: 2 }, /zero 2 cannot be expressed/],
    ['maxtext', { ...CASES.pipeline, microbatches: 1 }, /multiple of the 2 pipeline stages, but the plan has 1$/],
    ['maxtext', { mesh: '4x4', model: 'llama2-7b', device: 'h100-sxm', layout: 'batch:rows;d_ff:cols;heads:cols;vocab:cols', zero: 0, recompute: 'none', microbatches: 1 }, null],
    ['t5x', CASES.pipeline, /t5x meshes have 2 axes, but the plan uses 3/],
    ['t5x', { ...CASES.paper, zero: 1 }, /zero 1 cannot be expressed/],
    ['deepspeed', CASES.paper, /vocab:cols cannot be expressed/],
    ['deepspeed', { ...CASES.zero3, recompute: 'full' }, /as recompute full asks/],
    ['megatron', { ...CASES.pipeline, recompute: 'minimal' }, /all but the projections \(recompute minimal\)/],
    // scalable_t5's remat_policy is none, minimal or full: nothing recomputes the attention core alone.
    ['t5x', { ...CASES.paper, mesh: '16x8', model: 'mtf-tr-s0', recompute: 'selective' }, /exactly the attention core \(recompute selective\)/],
  ] as const)('%s refuses %j', (format, c, reason) => {
    if (reason === null) {
      // 8-GPU nodes hold two rows of 4x4: rows is 2 within a node times 2 across nodes.
      const y = parseYaml(exportPlan(input(c), format).text) as Record<string, number>;
      expect([y.ici_data_parallelism, y.dcn_data_parallelism, y.ici_tensor_parallelism]).toEqual([2, 2, 4]);
      return;
    }
    expect(refuse(c, format)).toMatch(reason);
  });

  it('an invalid plan is an input error before any target sees it', () => {
    expect(() => exportPlan(input({ ...CASES.paper, layout: 'batch:rows;d_model:rows' }), 'megatron')).toThrow(/two dimensions/);
    expect(() => exportPlan(input({ ...CASES.paper, microbatches: 3 }), 'megatron')).toThrow(/3 microbatches do not divide/);
    expect(() => exportPlan(input(CASES.paper), 'jax')).toThrow(/unknown export format "jax"/);
  });
});

describe('maxtext batch sizes in floating point', () => {
  it('refuses a batch no per_device_batch_size reaches on this many devices', () => {
    // 384 sequences on 147 devices: 384/147 in doubles, times 147, floors to 383; 98 devices are fine.
    expect(Math.floor(147 * (384 / 147))).toBe(383);
    const spec = parseModelSpec({ name: 'odd', layers: 2, dModel: 512, heads: 49, dKv: 64, dFf: 49 * 64, vocab: 4900, seqLen: 128, batch: 384 });
    const at = (mesh: string) => ({ plan: makePlan('batch:rows;heads:cols;d_ff:cols'), mesh: parseMesh(mesh), spec, profile: getDevice('tpu-v2') });
    expect(() => exportPlan(at('3x49'), 'maxtext')).toThrow(/no per_device_batch_size gives 384 on 147 devices/);
    expect(parseYaml(exportPlan(at('2x49'), 'maxtext').text).ici_tensor_parallelism).toBe(49);
  });
});
