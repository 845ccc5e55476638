import { describe, expect, it } from 'vitest';
import { InputError } from '../src/errors.js';
import { parseLayout, validateLayout } from '../src/layout/layout.js';
import { lower } from '../src/lower/lower.js';
import { makePlan } from '../src/lower/plan.js';
import type { LoweredOp, Program } from '../src/lower/program.js';
import { parseMesh } from '../src/mesh/mesh.js';
import { activeParamCount, buildGraph, paramCount } from '../src/model/graph.js';
import { getPreset } from '../src/model/presets.js';
import { expertCapacity, moeOf, parseModelSpec } from '../src/model/spec.js';
import { getDevice } from '../src/cost/presets.js';
import { priceParts } from '../src/cost/price.js';
import { modelProblems, whyNot } from '../src/engine/rules.js';
import { matmulBound } from '../src/search/bounds.js';
import { decode, dimMasks, layoutOf, makeSpace, splits } from '../src/search/space.js';

const counts = (name: string) => {
  const g = buildGraph(getPreset(name));
  return { total: paramCount(g), active: activeParamCount(g) };
};
const near = (x: number, want: number, tol: number) => expect(Math.abs(x / want - 1)).toBeLessThan(tol);

/** A Switch-style decoder (top 1) whose capacity is exact: 1.25 × 32 tokens / 4 experts = 10 slots. */
const SWITCH = {
  name: 'switch-tiny', layers: 2, dModel: 64, heads: 4, dKv: 16, dFf: 256, vocab: 128, seqLen: 32, batch: 8,
  dtype: 'float32', dropout: false, activation: 'relu', experts: 4, topK: 1, capacityFactor: 1.25, dFfExpert: 128,
};

function collectivesOf(p: Program, pick: (op: LoweredOp) => boolean, kind: string): { bytes: number; count: number }[] {
  return p.ops.filter(pick).flatMap((op) => op.collectives.filter((c) => c.kind === kind).map((c) => ({ bytes: c.bytes, count: op.count })));
}

describe('MoE parameter counts against the published ones', () => {
  it('mixtral-8x7b has 46.7B parameters, 12.9B active (Jiang et al. 2024), within 0.5%', () => {
    const c = counts('mixtral-8x7b');
    near(c.total, 46.7e9, 0.005);
    near(c.active, 12.9e9, 0.005);
  });

  it('mixtral-8x22b has 141B parameters, 39B active (model card), within 0.5%', () => {
    const c = counts('mixtral-8x22b');
    near(c.total, 141e9, 0.005);
    near(c.active, 39e9, 0.005);
  });

  it('qwen3-30b-a3b has 30.5B parameters (Yang et al. 2025, Table 2; model card) within 0.5%, and 3.3B active to the card\'s one decimal', () => {
    const c = counts('qwen3-30b-a3b');
    near(c.total, 30.5e9, 0.005);
    // By hand: embedding and head 2·151936·2048, attention 48·(2·2048·4096 + 2·2048·512), 8 of the 128
    // experts 48·8·3·2048·768, router 48·2048·128: 3.3528B plus the norms; the card's "3.3B" cuts it to one decimal.
    expect(Math.trunc(c.active / 1e8)).toBe(33);
    near(c.active, 2 * 151936 * 2048 + 48 * (2 * 2048 * 4096 + 2 * 2048 * 512) + 48 * 8 * 3 * 2048 * 768 + 48 * 2048 * 128, 0.001);
  });

  it('switch-base-128 has 7.4B parameters (Fedus et al. 2022, Table 9), within 1%', () => {
    near(counts('switch-base-128').total, 7.4e9, 0.01);
  });

  it('deepseek-moe-16b has 2.8B active; its total is 16.4B plus the MoE layer that replaces the dense first one', () => {
    const c = counts('deepseek-moe-16b');
    near(c.active, 2.8e9, 0.02);
    // Every layer MoE: one MoE FFN (66 experts of 3·2048·1408) instead of the dense 3·2048·10944.
    const extra = 66 * 3 * 2048 * 1408 + 2048 * 64 - 3 * 2048 * 10944;
    near(c.total - extra, 16.4e9, 0.005);
  });

  it('a dense model counts the same total and active parameters', () => {
    expect(counts('llama2-7b').active).toBe(counts('llama2-7b').total);
  });

  it('tiny-moe equals the closed form: attention, router, experts, shared expert, norms, embeddings', () => {
    const s = getPreset('tiny-moe');
    const m = moeOf(s)!;
    const d = s.dModel, hk = s.heads * s.dKv, f = m.dFfExpert;
    const layer = 4 * d * hk + d * m.experts + m.experts * 2 * d * f + m.sharedExperts * (2 * d * f) + 4 * d;
    const all = s.decoderLayers * layer + 2 * s.vocab * d + s.seqLen * d + 2 * d;
    const c = counts('tiny-moe');
    expect(c.total).toBe(all);
    expect(c.active).toBe(all - s.decoderLayers * (m.experts - m.topK) * 2 * d * f);
  });
});

describe('MoE model spec', () => {
  const base = { name: 'm', layers: 4, dModel: 8, heads: 2, dKv: 4, dFf: 16, vocab: 32, seqLen: 8, batch: 4 };
  const refusal = (extra: Record<string, unknown>) => {
    try {
      parseModelSpec({ ...base, ...extra });
    } catch (e) {
      expect(e).toBeInstanceOf(InputError);
      const msg = (e as Error).message;
      expect(msg.includes('\n')).toBe(false);
      return msg;
    }
    throw new Error(`accepted ${JSON.stringify(extra)}`);
  };

  it('defaults topK 2, capacity factor 1.25, MoE on every layer, no shared expert, dFfExpert = dFf', () => {
    const s = parseModelSpec({ ...base, experts: 4 });
    expect(moeOf(s)).toEqual({ experts: 4, topK: 2, capacityFactor: 1.25, moeEvery: 1, sharedExperts: 0, dFfExpert: 16 });
    expect(moeOf(parseModelSpec(base))).toBeNull();
    expect(Object.keys(parseModelSpec(base))).not.toContain('experts'); // a dense spec writes as before
  });

  it('reads back what it writes', () => {
    const s = parseModelSpec({ ...base, experts: 4, topK: 1, moeEvery: 2, sharedExperts: 1, dFfExpert: 8 });
    expect(parseModelSpec(JSON.parse(JSON.stringify(s)))).toEqual(s);
  });

  it('refuses bad MoE fields in one line naming the field', () => {
    expect(refusal({ experts: 1 })).toContain('"experts" must be an integer >= 2');
    expect(refusal({ experts: 4, topK: 5 })).toContain('"topK" (5) must be at most "experts" (4)');
    expect(refusal({ experts: 4, capacityFactor: 0 })).toContain('"capacityFactor" must be a number');
    expect(refusal({ experts: 4, capacityFactor: '1' })).toContain('"capacityFactor"');
    expect(refusal({ experts: 4, moeEvery: 3 })).toContain('"moeEvery" (3) must divide the layer count (4)');
    expect(refusal({ experts: 4, sharedExperts: -1 })).toContain('"sharedExperts" must be an integer >= 0');
    expect(refusal({ experts: 4, dFfExpert: 0 })).toContain('"dFfExpert" must be an integer >= 1');
    expect(refusal({ topK: 2 })).toContain('"topK" is a mixture-of-experts field; set "experts" too');
  });

  it('gives each expert topK × capacity factor × tokens / experts slots, rounded up, at most the sequence', () => {
    expect(expertCapacity({ experts: 8, topK: 2, capacityFactor: 1.25, moeEvery: 1, sharedExperts: 0, dFfExpert: 1 }, 4096)).toBe(1280);
    expect(expertCapacity({ experts: 3, topK: 1, capacityFactor: 1, moeEvery: 1, sharedExperts: 0, dFfExpert: 1 }, 10)).toBe(4);
    expect(expertCapacity({ experts: 2, topK: 2, capacityFactor: 4, moeEvery: 1, sharedExperts: 0, dFfExpert: 1 }, 10)).toBe(10);
  });

  it('puts MoE on every n-th layer: a block of n layers, the last one MoE', () => {
    const g = buildGraph(parseModelSpec({ ...base, experts: 4, moeEvery: 2 }));
    const block = g.blocks.find((b) => b.name === 'decoder')!;
    expect(block.repeat).toBe(2);
    expect(g.dimSizes.layers).toBe(2);
    expect(block.ops.filter((o) => o.kind === 'regroup').map((o) => o.name)).toEqual(['decoder.1.moe.to_experts', 'decoder.1.moe.to_tokens']);
    expect(block.ops.some((o) => o.name === 'decoder.0.ffn.w1')).toBe(true);
  });
});

describe('expert parallelism: experts split over an axis', () => {
  const spec = parseModelSpec(SWITCH);
  const g = buildGraph(spec);
  const mesh = parseMesh('rows:2;cols:4');
  const E = 4;
  const plan = (layout: string, zero: 0 | 1 = 0) => lower(g, mesh, makePlan(layout, { zero }));

  it('each device holds 1/E of the expert weights', () => {
    const whole = lower(g, mesh, makePlan('batch:rows+cols'));
    const split = plan('batch:rows+cols;experts:cols');
    const expertElems = (p: Program) => p.lowering.weights.filter((w) => g.tensors.get(w.id)!.dims.includes('experts')).reduce((n, w) => n + w.elems * w.perStage, 0);
    expect(expertElems(whole)).toBe(2 * 2 * 4 * 64 * 128); // layers × (w1, w2) × experts × d_model × hidden
    expect(expertElems(split)).toBe(expertElems(whole) / E);
  });

  it('dispatch and combine all-to-all 2 × tokens per device × d_model × capacity factor × bytes per layer forward, twice that with the backward', () => {
    const p = plan('batch:rows+cols;experts:cols');
    const tokens = (SWITCH.batch / 8) * SWITCH.seqLen; // batch over all 8 devices
    const perLayer = 2 * tokens * SWITCH.dModel * SWITCH.capacityFactor * 4; // fp32
    const layers = SWITCH.layers;
    const fwd = collectivesOf(p, (op) => op.phase === 'forward', 'all-to-all');
    expect(fwd.reduce((n, c) => n + c.bytes * c.count, 0)).toBe(perLayer * layers);
    const all = collectivesOf(p, () => true, 'all-to-all');
    expect(all.reduce((n, c) => n + c.bytes * c.count, 0)).toBe(2 * perLayer * layers);
    // ... over the experts axis only
    for (const op of p.ops) for (const c of op.collectives) if (c.kind === 'all-to-all') expect(c.axes).toEqual(['cols']);
  });

  it('with topK = k the buffers are k times as large (each token goes to k experts)', () => {
    const g2 = buildGraph(parseModelSpec({ ...SWITCH, topK: 2 }));
    const p = lower(g2, mesh, makePlan('batch:rows+cols;experts:cols'));
    const fwd = collectivesOf(p, (op) => op.phase === 'forward', 'all-to-all');
    expect(fwd.reduce((n, c) => n + c.bytes * c.count, 0)).toBe(2 * 2 * 32 * 64 * 1.25 * 4 * 2);
  });

  it('experts on an axis batch does not take: no all-to-all; the combine gathers the experts, the expert weights sync over batch', () => {
    const p = plan('batch:rows;experts:cols');
    expect(collectivesOf(p, () => true, 'all-to-all')).toEqual([]);
    const gathers = collectivesOf(p, (op) => op.name.endsWith('moe.to_tokens') && op.phase === 'forward', 'allgather');
    expect(gathers.length).toBe(1);
    const sync = p.ops.find((op) => op.name === 'sync:decoder.moe.w1')!;
    expect(sync.collectives.map((c) => [c.kind, c.axes])).toEqual([['allreduce', ['rows']]]);
  });

  it('the expert weights sync their gradient over the batch axes experts leaves, and ZeRO shards them there', () => {
    const p = plan('batch:rows+cols;experts:cols', 1);
    const sync = p.ops.find((op) => op.name === 'sync:decoder.moe.w1')!;
    expect(sync.collectives.map((c) => [c.kind, c.axes])).toEqual([['reduce-scatter', ['rows']]]);
    const dense = p.ops.find((op) => op.name === 'sync:decoder.self.wq')!;
    expect(dense.collectives.map((c) => [c.kind, c.axes])).toEqual([['reduce-scatter', ['rows', 'cols']]]);
    const z0 = plan('batch:rows+cols;experts:cols', 0).memory.optimizer;
    const local = p.lowering.weights.reduce((n, w) => n + w.elems * w.perStage, 0);
    const expert = p.lowering.weights.filter((w) => g.tensors.get(w.id)!.dims.includes('experts')).reduce((n, w) => n + w.elems * w.perStage, 0);
    expect(z0).toBe(local * 8); // fp32: 8 optimizer bytes per parameter
    expect(p.memory.optimizer).toBe(((local - expert) / 8 + expert / 2) * 8);
  });

  it('counts the experts FLOPs on the routed tokens with the capacity padding: 2 × tokens × topK × capacity factor × d_model × hidden', () => {
    const p = plan('batch:rows+cols;experts:cols');
    const w1 = p.ops.find((op) => op.name === 'decoder.moe.w1' && op.phase === 'forward')!;
    const global = (w1.flops * w1.count * mesh.size) / w1.duplication;
    expect(global).toBe(2 * SWITCH.batch * SWITCH.seqLen * 1 * 1.25 * 64 * 128 * SWITCH.layers);
  });

  it('keeps the dispatch buffers as activations: the combine einsum saves its combine weights', () => {
    const p = plan('batch:rows+cols;experts:cols');
    const cap = g.dimSizes.expert_capacity;
    expect(cap).toBe(10);
    // Per sequence per layer, at least the combine tensor [length, experts, capacity] in fp32.
    expect(p.savedBytes.decoder).toBeGreaterThanOrEqual(32 * 4 * cap * 4);
  });

  it('refuses a layout that names a dimension no layout splits, or puts a dimension of the expert side on a batch axis', () => {
    expect(() => parseLayout('expert_capacity:cols')).toThrow(/never split/);
    expect(() => parseLayout('group:rows')).toThrow(/never split/);
    expect(() => validateLayout(g, mesh, parseLayout('batch:rows;expert_hidden:rows'))).toThrow(/two dimensions, batch and expert_hidden, on mesh axis rows/);
    expect(() => validateLayout(g, mesh, parseLayout('batch:rows+cols;experts:cols;expert_hidden:rows'))).toThrow(/on mesh axis rows/);
    expect(() => validateLayout(g, mesh, parseLayout('experts:cols;expert_hidden:rows'))).not.toThrow();
  });
});

describe('the search bounds on MoE models', () => {
  it('the matmul bound of every layout is at most the matmul FLOPs its plans run, per device, and at most their priced matmul time', () => {
    const g = buildGraph(getPreset('tiny-moe'));
    const mesh = parseMesh('rows:2;cols:4');
    const profile = getDevice('a100-80g');
    const space = makeSpace(g, mesh, profile, { symmetric: false });
    // Without the GEMM shape factor the bound is FLOPs at one rate; with it, a time the pricer must not beat.
    const bound = matmulBound(g, { ...profile, gemmHalfSize: 0 });
    const shaped = matmulBound(g, profile);
    const rate = profile.peakFlops[g.spec.dtype] * profile.efficiency.matmul;
    let checked = 0, experts = 0;
    for (let rank = 0; rank < space.ranks; rank++) {
      const masks = dimMasks(space, decode(space, rank, []), new Array(space.dims.length));
      const split = splits(space, masks);
      if (!split) continue;
      const layout = layoutOf(space, masks);
      const p = lower(g, mesh, makePlan(layout));
      expect(bound(split) * rate).toBeLessThanOrEqual(p.flops.perDevice * (1 + 1e-9));
      expect(shaped(split)).toBeGreaterThan(bound(split));
      expect(shaped(split)).toBeLessThanOrEqual(priceParts(p, profile).classTime.matmul * (1 + 1e-9));
      checked++;
      if (layout.has('experts')) experts++;
    }
    expect(experts).toBeGreaterThan(0);
    expect(checked).toBeGreaterThan(experts);
  });
});

describe('engines and MoE plans', () => {
  const mixtral = getPreset('mixtral-8x7b');
  const mesh = parseMesh('8x8');
  it('Megatron-LM takes experts over the inner data axis and refuses them elsewhere, in one line each', () => {
    expect(whyNot('megatron', makePlan('batch:rows+cols;experts:cols'), mesh, mixtral)).toEqual([]);
    const outer = whyNot('megatron', makePlan('batch:rows+cols;experts:rows'), mesh, mixtral);
    expect(outer.some((r) => r.includes('not the innermost data axes (rows+cols)'))).toBe(true);
    const alone = whyNot('megatron', makePlan('batch:rows;experts:cols'), mesh, mixtral);
    expect(alone.some((r) => r.includes('splits experts over cols, which does not split batch alone'))).toBe(true);
    for (const r of [...outer, ...alone]) expect(r.includes('\n')).toBe(false);
  });

  it('Megatron-LM splits the experts\' hidden dimension on the tensor axes, as its expert tensor parallelism does', () => {
    const g = getPreset('tiny-moe');
    const m = parseMesh('2x2x4');
    expect(whyNot('megatron', makePlan('batch:x+y;experts:y;heads:z;expert_hidden:z;vocab:z'), m, g)).toEqual([]);
    const partial = whyNot('megatron', makePlan('batch:x+y;experts:y;heads:z;vocab:z'), m, g);
    expect(partial.some((r) => r.includes('expert_hidden stays whole'))).toBe(true);
  });

  it('DeepSpeed AutoEP: experts over the innermost data axes (runs of consecutive ranks), no AutoTP beside it', () => {
    const mesh = parseMesh('8x8');
    expect(modelProblems('deepspeed', mixtral)).toEqual([]);
    expect(whyNot('deepspeed', makePlan('batch:rows+cols;experts:cols', { zero: 3 }), mesh, mixtral)).toEqual([]);
    const outer = whyNot('deepspeed', makePlan('batch:rows+cols;experts:rows'), mesh, mixtral);
    expect(outer.some((r) => r.includes('DeepSpeed AutoEP') && r.includes('not the innermost data axes (rows+cols)'))).toBe(true);
    const tp = whyNot('deepspeed', makePlan('batch:rows;experts:rows;heads:cols;d_ff:cols;expert_hidden:cols'), mesh, mixtral);
    expect(tp.some((r) => r.includes('folds the expert ranks over the tensor ranks'))).toBe(true);
    for (const r of [...outer, ...tp]) expect(r.includes('\n')).toBe(false);
  });

  it('Mesh-TF\'s and t5x\'s exports refuse an MoE model in one line, naming the engines that take it', () => {
    for (const e of ['mesh-tf', 't5x'] as const) {
      const r = modelProblems(e, mixtral);
      expect(r.filter((x) => x.includes('has no mixture-of-experts layer') && x.includes('export to megatron, maxtext, deepspeed or torchtitan'))).toHaveLength(1);
      expect(modelProblems(e, getPreset('llama2-7b')).some((x) => x.includes('mixture-of-experts'))).toBe(false);
    }
  });

  it('torchtitan builds the qwen3 30B-A3B it ships and no other MoE model; experts over the innermost FSDP ranks, with zero 3, no TP', () => {
    const qwen = getPreset('qwen3-30b-a3b');
    expect(modelProblems('torchtitan', qwen)).toEqual([]);
    // Mixtral is not a shipped torchtitan model: one line that lists what is.
    const r = modelProblems('torchtitan', mixtral);
    expect(r).toHaveLength(1);
    expect(r[0]).toMatch(/no shipped flavor \(llama3 8B, llama3 70B, llama3 405B, qwen3 30B-A3B\) has mixtral-8x7b/);
    // One dimension off the shipped flavor and it is not that model.
    expect(modelProblems('torchtitan', { ...qwen, topK: 4 })).toHaveLength(1);
    expect(modelProblems('torchtitan', { ...qwen, sharedExperts: 1 })).toHaveLength(1);
    expect(whyNot('torchtitan', makePlan('batch:rows+cols;experts:cols', { zero: 3 }), mesh, qwen)).toEqual([]);
    expect(whyNot('torchtitan', makePlan('batch:rows+cols', { zero: 0 }), mesh, qwen)).toEqual([]);
    // parallel_dims.py: ep divides dp_shard x cp x tp, which DDP alone leaves at 1.
    const ddp = whyNot('torchtitan', makePlan('batch:rows+cols;experts:cols', { zero: 0 }), mesh, qwen);
    expect(ddp.some((x) => x.includes('needs zero 3, not zero 0'))).toBe(true);
    const outer = whyNot('torchtitan', makePlan('batch:rows+cols;experts:rows', { zero: 3 }), mesh, qwen);
    expect(outer.some((x) => x.includes('not the innermost data axes (rows+cols)'))).toBe(true);
    const tp = whyNot('torchtitan', makePlan('batch:rows;experts:rows;heads:cols;d_ff:cols;expert_hidden:cols', { zero: 3 }), mesh, qwen);
    expect(tp.some((x) => x.includes('borrows the tensor ranks'))).toBe(true);
    for (const x of [...r, ...ddp, ...outer, ...tp]) expect(x.includes('\n')).toBe(false);
  });

  it('maxtext takes what decoder_block mixtral builds and refuses shared experts and MoE on every n-th layer in one line', () => {
    expect(modelProblems('maxtext', mixtral)).toEqual([]);
    for (const name of ['deepseek-moe-16b', 'switch-base-128', 'tiny-moe']) {
      const r = modelProblems('maxtext', getPreset(name)).filter((x) => x.includes('decoder_block mixtral'));
      expect(r, name).toHaveLength(1);
      expect(r[0]).toContain('export to megatron');
    }
  });
});
