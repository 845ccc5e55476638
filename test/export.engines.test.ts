import { describe, expect, it } from 'vitest';
import { getDevice } from '../src/cost/presets.js';
import { exportPlan, FORMATS, UnsupportedPlanError, type ExportInput } from '../src/export/index.js';
import { makePlan } from '../src/lower/plan.js';
import { parseMesh } from '../src/mesh/mesh.js';
import { getPreset } from '../src/model/presets.js';
import { parseModelSpec, type ModelSpec } from '../src/model/spec.js';
import { checkExport, fixture } from './engine.check.js';

// torchtitan's 8B flavor: grouped-query attention, 8 K/V heads.
const llama3 = getPreset('llama3-8b');
const at = (mesh: string, spec: ModelSpec, device: string, layout: string, o: { zero?: number; recompute?: string; microbatches?: number; sequenceParallel?: boolean; virtualStages?: number } = {}): ExportInput =>
  ({ plan: makePlan(layout, o), mesh: parseMesh(mesh), spec, profile: getDevice(device) });

/** The plans every engine is held to: each export loads (fixture check) or is refused by the engine's rules. */
export const CASES: Record<string, ExportInput> = {
  paper: at('16x32', getPreset('transformer-5b'), 'tpu-v2', 'batch:rows;d_ff:cols;heads:cols;vocab:cols'),
  'paper, 2 microbatches': at('16x32', getPreset('transformer-5b'), 'tpu-v2', 'batch:rows;d_ff:cols;heads:cols;vocab:cols', { microbatches: 2 }),
  'encoder-decoder': at('8x16', getPreset('mtf-tr-s2'), 'tpu-v2', 'batch:rows;d_ff:cols;heads:cols;vocab:cols', { recompute: 'selective' }),
  '3-D pipeline': at('2x4x8', getPreset('llama2-7b'), 'h100-sxm', 'layers:x;batch:y;d_ff:z;heads:z;vocab:z', { recompute: 'full', microbatches: 8 }),
  '3-D pipeline, llama3, interleaved': at('2x4x8', llama3, 'h100-sxm', 'layers:x;batch:y;d_ff:z;heads:z;vocab:z', { recompute: 'full', microbatches: 8, virtualStages: 2 }),
  'ZeRO-3': at('8x8', getPreset('gpt3-1.3b'), 'a100-80g', 'batch:rows+cols', { zero: 3, microbatches: 2 }),
  'ZeRO-3, llama3': at('8x8', llama3, 'h100-sxm', 'batch:rows+cols', { zero: 3, microbatches: 2 }),
  'ZeRO-1 with AutoTP': at('4x8', getPreset('llama2-7b'), 'h100-sxm', 'batch:rows;heads:cols;d_ff:cols', { zero: 1, microbatches: 4 }),
  'sequence parallel': at('4x8', llama3, 'h100-sxm', 'batch:rows;heads:cols;d_ff:cols;vocab:cols', { sequenceParallel: true, recompute: 'selective' }),
  'GQA, tensor parallel': at('16x8', llama3, 'h100-sxm', 'batch:rows;heads:cols;d_ff:cols;vocab:cols'),
  'GQA, Mesh-TF style': at('8x8', parseModelSpec({ ...getPreset('mtf-lm-s2'), kvHeads: 8 }), 'tpu-v2', 'batch:rows;heads:cols;d_ff:cols;vocab:cols'),
  'GQA, q_group split': at('16x4', parseModelSpec({ ...getPreset('mtf-lm-s2'), kvHeads: 8 }), 'tpu-v2', 'batch:rows;q_group:cols;d_ff:cols;vocab:cols'),
  'MoE, experts over the inner data axis': at('8x8', getPreset('mixtral-8x7b'), 'h100-sxm', 'batch:rows+cols;experts:cols', { zero: 1, recompute: 'full', microbatches: 16 }),
  'MoE, expert and tensor parallel': at('2x2x4', getPreset('tiny-moe'), 'h100-sxm', 'batch:x+y;experts:y;heads:z;expert_hidden:z;vocab:z'),
  'llama2-70b (GQA), 3-D': at('4x4x4', getPreset('llama2-70b'), 'h100-sxm', 'layers:x;batch:y;heads:z;d_ff:z;vocab:z', { zero: 1, recompute: 'selective', microbatches: 16, sequenceParallel: true }),
};

describe('exports against the engines\' source (test/fixtures/engines)', () => {
  it('fixtures name the engine commit they were read at', () => {
    for (const f of FORMATS) expect(fixture(f).commit).toMatch(/^[0-9a-f]{40}$/);
  });

  for (const [name, input] of Object.entries(CASES)) {
    for (const format of FORMATS) {
      it(`${name} as ${format}: loads, or is refused with reasons`, () => {
        let text: string;
        try {
          text = exportPlan(input, format).text;
        } catch (e) {
          expect(e).toBeInstanceOf(UnsupportedPlanError);
          expect((e as UnsupportedPlanError).missing.length).toBeGreaterThan(0);
          return;
        }
        expect(checkExport(format, text, input)).toEqual([]);
      });
    }
  }

  it('each engine exports at least two of the cases (the refusals do not hide everything)', () => {
    for (const format of FORMATS) {
      const ok = Object.values(CASES).filter((input) => {
        try {
          exportPlan(input, format);
          return true;
        } catch {
          return false;
        }
      });
      expect(ok.length, format).toBeGreaterThanOrEqual(2);
    }
  });

  it('the engines write what the plan says, by their own keys', () => {
    const mt = exportPlan(CASES['sequence parallel'], 'maxtext').text;
    expect(mt).toMatch(/^ {2}- \[ activation_norm_length, \[ tensor \] \]$/m);
    expect(mt).toMatch(/^remat_policy: minimal_with_context$/m);
    expect(mt).toMatch(/^base_num_kv_heads: 8$/m);
    const mg = exportPlan(CASES['sequence parallel'], 'megatron').text;
    expect(mg).toMatch(/--sequence-parallel/);
    expect(mg).toMatch(/--num-query-groups 8/);
    const tt = exportPlan(CASES['3-D pipeline, llama3, interleaved'], 'torchtitan').text;
    expect(tt).toMatch(/--parallelism\.pipeline_parallel_schedule Interleaved1F1B/);
    expect(tt).toMatch(/--parallelism\.no_enable_sequence_parallel/);
    expect(exportPlan(CASES['GQA, Mesh-TF style'], 'mesh-tf').text).toMatch(/^SelfAttention\.num_memory_heads = 8$/m);
    // Mesh-TF calls the query heads within a K/V group query_heads (transformer_layers.attention_params).
    expect(exportPlan(CASES['GQA, q_group split'], 'mesh-tf').text).toMatch(/^LAYOUT_RULES = "batch:rows;d_ff:cols;vocab:cols;query_heads:cols"$/m);
    // Mesh-TF: defaults.gin's 2048 tokens per replica would run the paper plan as 2 microbatches.
    const fx = fixture('mesh-tf');
    expect(16 / Math.floor(fx.defaults['utils.serialize_num_microbatches.tokens_per_microbatch_per_replica'] / 256)).toBe(2);
    expect(exportPlan(CASES.paper, 'mesh-tf').text).toMatch(/tokens_per_microbatch_per_replica = 4096$/m);
  });

  it('the capability rules agree with the fixtures where both say something', async () => {
    const { TORCHTITAN_MODELS, MAXTEXT_MESH_AXES } = await import('../src/engine/index.js');
    const fx = fixture('torchtitan');
    for (const f of TORCHTITAN_MODELS) {
      const tt = [fx.llama3, fx.qwen3].find((x) => x.module === f.module);
      const src = tt.flavors[f.flavor];
      expect([src.dim, src.n_layers, src.n_heads, src.n_kv_heads, src.head_dim ?? src.dim / src.n_heads, src.vocab_size, src.weight_tying])
        .toEqual([f.dim, f.layers, f.heads, f.kvHeads, f.headDim, f.vocab, f.tied]);
      expect(src.moe ? { experts: src.num_experts, topK: src.top_k, hidden: src.moe_hidden_dim } : undefined).toEqual(f.moe);
      expect(tt.configs[f.config]).toBe(f.flavor);
    }
    expect([...MAXTEXT_MESH_AXES]).toEqual(fixture('maxtext').enums.mesh_axes);
  });
});
