import { InputError } from '../errors.js';
import { parseModelSpec, type ModelSpec } from './spec.js';

interface Preset {
  readonly spec: ModelSpec;
  /** Where the hyperparameters come from. */
  readonly source: string;
}

const presets = new Map<string, Preset>();
const aliases = new Map<string, string>();

function add(source: string, raw: Record<string, unknown>): void {
  const spec = parseModelSpec(raw, `preset ${String(raw.name)}`);
  presets.set(spec.name, { spec, source });
}

// tensor2tensor mtf_transformer.py, mtf_transformer_paper_lm(size): mtf_transformer_base_lm
// (max_length 256, 6 layers, relu) with batch 256, d_model 1024, d_kv 256, heads 8·2^s,
// d_ff 8192·2^s, untied softmax; lm1b32k vocabulary. Parameters 0.14B (s=-1) ... 4.90B (s=5).
for (let s = -1; s <= 5; s++) {
  add('tensor2tensor mtf_transformer_paper_lm(' + s + '); Shazeer et al. 2018, Table 2', {
    name: `mtf-lm-s${s}`, kind: 'decoder', layers: 6, dModel: 1024, heads: 8 * 2 ** s, dKv: 256,
    dFf: 8192 * 2 ** s, vocab: 32768, seqLen: 256, batch: 256, dtype: 'bfloat16', dropout: true,
    tiedEmbeddings: false, activation: 'relu', positions: 'learned',
  });
}
aliases.set('transformer-5b', 'mtf-lm-s5');

// tensor2tensor mtf_transformer.py, mtf_transformer_paper_tr(size): mtf_transformer_base
// (6+6 layers, max_length 256, d_kv 128, shared input/target embedding) with batch 128,
// d_model 1024, heads 8·2^s, d_ff 4096·2^s, untied softmax; wmt32k vocabulary.
for (let s = -1; s <= 4; s++) {
  add('tensor2tensor mtf_transformer_paper_tr(' + s + '); Shazeer et al. 2018, Table 3', {
    name: `mtf-tr-s${s}`, kind: 'encoder-decoder', encoderLayers: 6, decoderLayers: 6, dModel: 1024,
    heads: 8 * 2 ** s, dKv: 128, dFf: 4096 * 2 ** s, vocab: 32768, seqLen: 256, batch: 128,
    dtype: 'bfloat16', dropout: true, tiedEmbeddings: false, activation: 'relu', positions: 'learned',
  });
}

// Brown et al. 2020 (GPT-3), Table 2.1: n_layers, d_model, n_heads, d_head, batch in tokens
// (here in 2048-token sequences); d_ff = 4·d_model, GPT-2 vocabulary 50257, tied embeddings.
const gpt3: [string, number, number, number, number, number][] = [
  ['gpt3-125m', 12, 768, 12, 64, 256],
  ['gpt3-350m', 24, 1024, 16, 64, 256],
  ['gpt3-760m', 24, 1536, 16, 96, 256],
  ['gpt3-1.3b', 24, 2048, 16, 128, 512], // the table's 24 heads × 128 ≠ 2048; 16 × 128 gives its 1.3B
  ['gpt3-2.7b', 32, 2560, 32, 80, 512],
  ['gpt3-6.7b', 32, 4096, 32, 128, 1024],
  ['gpt3-13b', 40, 5140, 40, 128, 1024],
  ['gpt3-175b', 96, 12288, 96, 128, 1536],
];
for (const [name, layers, dModel, heads, dKv, batch] of gpt3) {
  add('Brown et al. 2020, Table 2.1', {
    name, kind: 'decoder', layers, dModel, heads, dKv, dFf: 4 * dModel, vocab: 50257, seqLen: 2048,
    batch, dtype: 'float16', dropout: true, tiedEmbeddings: true, activation: 'gelu', positions: 'learned',
  });
}

// Raffel et al. 2020 (T5), Section 3.7 and the released t5.1.0.11B gin: 24+24 layers,
// d_model 1024, d_ff 65536, 128 heads of d_kv 128, vocab 32128, seq 512, batch 128, relu.
// T5's relative position bias (32 buckets × heads per stack) is left out: no absolute table.
add('Raffel et al. 2020, Section 3.7 (T5 11B)', {
  name: 't5-11b', kind: 'encoder-decoder', encoderLayers: 24, decoderLayers: 24, dModel: 1024,
  heads: 128, dKv: 128, dFf: 65536, vocab: 32128, seqLen: 512, batch: 128, dtype: 'bfloat16',
  dropout: true, tiedEmbeddings: true, activation: 'relu', positions: 'rotary',
});

// Touvron et al. 2023 (Llama 2), Table 1 and params.json: SwiGLU, rotary positions, vocab
// 32000, seq 4096, batch 4M tokens = 1024 sequences; 70B uses grouped-query attention with 8
// KV heads (Table 1, "GQA"; params.json n_kv_heads 8). Flash attention: Llama 1 and 2 train with
// xformers' memory-efficient causal attention (Touvron et al. 2023a, Sec. 2.4), a fused kernel.
add('Touvron et al. 2023, Table 1 (Llama 2 7B)', {
  name: 'llama2-7b', kind: 'decoder', layers: 32, dModel: 4096, heads: 32, dKv: 128, dFf: 11008,
  vocab: 32000, seqLen: 4096, batch: 1024, dtype: 'bfloat16', dropout: false, tiedEmbeddings: false,
  activation: 'swiglu', positions: 'rotary', flashAttention: true,
});
add('Touvron et al. 2023, Table 1 (Llama 2 70B, GQA with 8 KV heads): 68.98B parameters', {
  name: 'llama2-70b', kind: 'decoder', layers: 80, dModel: 8192, heads: 64, kvHeads: 8, dKv: 128, dFf: 28672,
  vocab: 32000, seqLen: 4096, batch: 1024, dtype: 'bfloat16', dropout: false, tiedEmbeddings: false,
  activation: 'swiglu', positions: 'rotary', flashAttention: true,
});

// Dubey et al. 2024 (The Llama 3 Herd of Models), Table 3: layers, model dimension, FFN
// dimension, attention heads, 8 key/value heads, vocabulary 128,000 (128256 in the released
// params), SwiGLU, RoPE, untied output; pre-training sequences of 8192 tokens (Sec. 3.4.1).
// Batch: 405B ends pre-training at 16M tokens = 2048 sequences (Sec. 3.4.1); the paper gives no
// batch for 8B/70B, taken the same. Flash attention: fused attention kernels are the default of
// the 2024 training stacks (Megatron-LM, torchtitan); assumed.
const llama3: [string, number, number, number, number, string][] = [
  ['llama3-8b', 32, 4096, 14336, 32, '8.03B'],
  ['llama3-70b', 80, 8192, 28672, 64, '70.6B'],
  ['llama3.1-405b', 126, 16384, 53248, 128, '405.8B'],
];
for (const [name, layers, dModel, dFf, heads, total] of llama3) {
  add(`Dubey et al. 2024, Table 3 (${name}): ${total} parameters`, {
    name, kind: 'decoder', layers, dModel, heads, kvHeads: 8, dKv: dModel / heads, dFf, vocab: 128256,
    seqLen: 8192, batch: 2048, dtype: 'bfloat16', dropout: false, tiedEmbeddings: false,
    activation: 'swiglu', positions: 'rotary', flashAttention: true,
  });
}

// Mixture of experts. Jiang et al. 2024 (Mixtral of Experts), Table 1, and the released
// config.json: 32 layers, dim 4096, 32 heads of 128, 8 KV heads, hidden 14336, vocab 32000, 8
// experts, top 2; "47B total, 13B active" (Sec. 2.1; 46.7B / 12.9B on the model card). The paper
// gives no training batch or capacity factor: 4096-token sequences, 1024 of them (4M tokens) and
// Mesh-TF's capacity factor 1.25 are assumed.
add('Jiang et al. 2024, Table 1 (Mixtral 8x7B): 46.7B total, 12.9B active parameters', {
  name: 'mixtral-8x7b', kind: 'decoder', layers: 32, dModel: 4096, heads: 32, kvHeads: 8, dKv: 128, dFf: 14336,
  vocab: 32000, seqLen: 4096, batch: 1024, dtype: 'bfloat16', dropout: false, tiedEmbeddings: false,
  activation: 'swiglu', positions: 'rotary', flashAttention: true,
  experts: 8, topK: 2, capacityFactor: 1.25, moeEvery: 1, dFfExpert: 14336,
});
// Mistral AI 2024, Mixtral 8x22B model card and config.json: 56 layers, hidden 6144, 48 heads of
// 128, 8 KV heads, intermediate 16384, vocab 32768, 8 experts, top 2; "141B parameters, 39B
// active". Sequence, batch and capacity factor assumed as for 8x7B.
add('Mistral AI 2024, Mixtral 8x22B model card: 141B total, 39B active parameters', {
  name: 'mixtral-8x22b', kind: 'decoder', layers: 56, dModel: 6144, heads: 48, kvHeads: 8, dKv: 128, dFf: 16384,
  vocab: 32768, seqLen: 4096, batch: 1024, dtype: 'bfloat16', dropout: false, tiedEmbeddings: false,
  activation: 'swiglu', positions: 'rotary', flashAttention: true,
  experts: 8, topK: 2, capacityFactor: 1.25, moeEvery: 1, dFfExpert: 16384,
});
// Fedus et al. 2022 (Switch Transformers), Table 9 and Sec. 2: Switch-Base is T5-Base (12+12
// layers, d_model 768, 12 heads of 64, d_ff 3072, vocab 32128, relu) with 128 experts, top 1, an
// expert layer every other FFN, capacity factor 1.25 (Sec. 2.2), 512-token inputs, batch 128
// (Sec. 3); 7.4B parameters (Table 9).
// T5's relative position bias is left out, as for t5-11b.
add('Fedus et al. 2022, Table 9 (Switch-Base, 128 experts): 7.4B parameters', {
  name: 'switch-base-128', kind: 'encoder-decoder', encoderLayers: 12, decoderLayers: 12, dModel: 768, heads: 12,
  dKv: 64, dFf: 3072, vocab: 32128, seqLen: 512, batch: 128, dtype: 'bfloat16', dropout: true, tiedEmbeddings: true,
  activation: 'relu', positions: 'rotary',
  experts: 128, topK: 1, capacityFactor: 1.25, moeEvery: 2, dFfExpert: 3072,
});
// Dai et al. 2024 (DeepSeekMoE), Sec. 5.1 and Table 1 of the 16B model: 28 layers, hidden 2048, 16
// heads of 128, 64 routed experts of hidden 1408, 2 shared, top 6,
// vocab 102400, 4096-token sequences, batch 4.5M tokens ≈ 1152 sequences; 16.4B total, 2.8B active.
// The paper's first layer is dense (FFN 10944): here every layer is MoE, which counts 16.9B total.
add('Dai et al. 2024, Sec. 5.1 (DeepSeekMoE 16B): 16.4B total, 2.8B active parameters', {
  name: 'deepseek-moe-16b', kind: 'decoder', layers: 28, dModel: 2048, heads: 16, dKv: 128, dFf: 10944,
  vocab: 102400, seqLen: 4096, batch: 1152, dtype: 'bfloat16', dropout: false, tiedEmbeddings: false,
  activation: 'swiglu', positions: 'rotary', flashAttention: true,
  experts: 64, topK: 6, capacityFactor: 1.25, moeEvery: 1, sharedExperts: 2, dFfExpert: 1408,
});

// Yang et al. 2025 (Qwen3 Technical Report, arXiv 2505.09388), Table 2, and the Qwen3-30B-A3B
// model card and config.json: 48 layers, hidden 2048, 32 query heads and 4 KV heads of 128, 128
// experts of hidden 768, top 8 on every layer, no shared expert, vocab 151936, untied; "30.5B total,
// 3.3B activated". torchtitan ships the same dimensions (qwen3/__init__.py _30b_a3b). Each head's
// q/k RMSNorm (QK-norm, 256 weights a layer) is left out. Pre-training ran on 4096-token sequences
// (report Sec. 3.2); the batch is not published: 1024 of them (4M tokens) assumed. Qwen3 trains
// dropless: capacity factor 1 prices the balanced load.
add('Yang et al. 2025, Table 2 (Qwen3-30B-A3B): 30.5B total, 3.3B activated parameters', {
  name: 'qwen3-30b-a3b', kind: 'decoder', layers: 48, dModel: 2048, heads: 32, kvHeads: 4, dKv: 128, dFf: 6144,
  vocab: 151936, seqLen: 4096, batch: 1024, dtype: 'bfloat16', dropout: false, tiedEmbeddings: false,
  activation: 'swiglu', positions: 'rotary', flashAttention: true,
  experts: 128, topK: 8, capacityFactor: 1, moeEvery: 1, dFfExpert: 768,
});

// The MoE test model: 4 experts (top 2, one shared) on every layer, small enough to run on a simulated mesh.
add('mesh-search MoE tests', {
  name: 'tiny-moe', kind: 'decoder', layers: 2, dModel: 64, heads: 4, dKv: 16, dFf: 256, vocab: 128,
  seqLen: 32, batch: 8, dtype: 'float32', dropout: false, tiedEmbeddings: false, activation: 'gelu',
  positions: 'learned', experts: 4, topK: 2, capacityFactor: 1.25, moeEvery: 1, sharedExperts: 1, dFfExpert: 128,
});

// The runtime's test model (issue 4): small enough to execute on a simulated mesh in fp32.
add('mesh-search runtime tests', {
  name: 'tiny', kind: 'decoder', layers: 2, dModel: 64, heads: 4, dKv: 16, dFf: 256, vocab: 128,
  seqLen: 32, batch: 8, dtype: 'float32', dropout: false, tiedEmbeddings: false, activation: 'gelu',
  positions: 'learned',
});

// The runtime's bench model (issue 13): big enough that compute, not per-kernel overhead, fills a
// step on one CPU core (about 3.3M parameters; a byte vocabulary, so `train` reads text).
add('mesh-search runtime bench', {
  name: 'small', kind: 'decoder', layers: 4, dModel: 256, heads: 4, dKv: 64, dFf: 1024, vocab: 256,
  seqLen: 128, batch: 16, dtype: 'float32', dropout: false, tiedEmbeddings: false, activation: 'gelu',
  positions: 'learned',
});

export function presetNames(): string[] {
  return [...presets.keys(), ...aliases.keys()];
}

export function listPresets(): { name: string; aliasOf?: string; spec: ModelSpec; source: string }[] {
  const out: { name: string; aliasOf?: string; spec: ModelSpec; source: string }[] = [];
  for (const [name, p] of presets) out.push({ name, spec: p.spec, source: p.source });
  for (const [alias, target] of aliases) {
    const p = presets.get(target)!;
    out.push({ name: alias, aliasOf: target, spec: p.spec, source: p.source });
  }
  return out;
}

export function findPreset(name: string): ModelSpec | undefined {
  return presets.get(aliases.get(name) ?? name)?.spec;
}

export function getPreset(name: string): ModelSpec {
  const spec = findPreset(name);
  if (!spec) {
    throw new InputError(`unknown model "${name}"; presets are ${presetNames().join(', ')} (or give a JSON spec file)`);
  }
  return spec;
}
