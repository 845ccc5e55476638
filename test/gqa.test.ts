import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { estimatePlan } from '../src/cost/estimatePlan.js';
import { getDevice } from '../src/cost/presets.js';
import { InputError } from '../src/errors.js';
import { compileLayout, layoutProblem, parseLayout, validateLayout } from '../src/layout/layout.js';
import { lower } from '../src/lower/lower.js';
import { makePlan } from '../src/lower/plan.js';
import { parseMesh } from '../src/mesh/mesh.js';
import { buildGraph, DIM_NAMES, paramCount, type Graph } from '../src/model/graph.js';
import { getPreset, listPresets } from '../src/model/presets.js';
import { parseDtype, parseModelSpec } from '../src/model/spec.js';
import { makeSpace } from '../src/search/space.js';
import { cli } from './support/cli.js';

const params = (name: string) => paramCount(buildGraph(getPreset(name)));

describe('grouped-query attention: parameter counts against the published totals', () => {
  it('llama2-70b is 68.98B (Touvron et al. 2023), llama3-8b 8.03B, llama3-70b 70.6B, llama3.1-405b 405.8B (Dubey et al. 2024)', () => {
    expect(Math.abs(params('llama2-70b') / 68.98e9 - 1)).toBeLessThan(0.005);
    expect((params('llama3-8b') / 1e9).toFixed(2)).toBe('8.03');
    expect(Math.abs(params('llama3-70b') / 70.6e9 - 1)).toBeLessThan(0.005);
    expect(Math.abs(params('llama3.1-405b') / 405.8e9 - 1)).toBeLessThan(0.005);
  });

  it('equals the closed form L(2d·h·dk + 2d·kv·dk + 3d·ff + 4d) + 2Vd + 2d of an untied SwiGLU decoder', () => {
    for (const name of ['llama2-70b', 'llama3-8b', 'llama3-70b', 'llama3.1-405b']) {
      const s = getPreset(name);
      const d = s.dModel, L = s.decoderLayers;
      // Per layer: wq and wo (all heads), wk and wv (K/V heads only), three FFN matrices, two norms' scale and bias.
      const perLayer = 2 * d * s.heads * s.dKv + 2 * d * s.kvHeads * s.dKv + 3 * d * s.dFf + 4 * d;
      expect(params(name)).toBe(L * perLayer + 2 * s.vocab * d + 2 * d);
    }
  });
});

/** A graph as text: tensors, ops and weights, independent of object identity. */
function summary(g: Graph) {
  return {
    weights: g.weights,
    tensors: [...g.tensors.values()].map((t) => `${t.id} [${t.dims.join(',')}] ${t.role} ${t.bytes}`),
    blocks: g.blocks.map((b) => ({
      name: b.name, repeat: b.repeat, layered: b.layered, input: b.input ?? null,
      ops: b.ops.map((o) => `${o.name} ${o.kind} (${o.inputs.join(',')}) -> ${o.output}${o.dim ? ' dim=' + o.dim : ''}${o.to ? ' to=' + o.to : ''}${o.activation ? ' act=' + o.activation : ''} saves=(${o.saves.join(',')})${o.attentionCore ? ' core' : ''}`),
    })),
  };
}

describe('multi-head models are unchanged by the grouped-query code', () => {
  // The golden is main at dcacc39's graphs (before kvHeads existed) with one change since: K and V are
  // projected on the queries' positions and then renamed to memory_length (context parallelism gathers
  // K and V, not the layer input), which replaced a [batch, memory_length, d_model] tensor and its rename
  // by k_local, v_local and their renames; nothing else differs (regenerated and diffed at that commit).
  it('every tensor, op and dimension size is what the graph builder gave before kvHeads existed (golden from main at dcacc39, K/V renames since)', () => {
    const golden = JSON.parse(readFileSync(new URL('./golden/graph/mha.json', import.meta.url), 'utf8')) as Record<string, { dimSizes: Record<string, number> } & ReturnType<typeof summary>>;
    expect(Object.keys(golden).length).toBe(6);
    for (const [name, want] of Object.entries(golden)) {
      const g = buildGraph(getPreset(name));
      expect(summary(g)).toEqual({ weights: want.weights, tensors: want.tensors, blocks: want.blocks });
      // The only new sizes are q_group = heads / kvHeads = 1 and the MoE dimensions, 1, which no tensor carries.
      expect(g.dimSizes).toEqual({ ...want.dimSizes, q_group: 1, experts: 1, expert_hidden: 1, expert_capacity: 1, expert_unsplit: 1, group: 1 });
      expect([...g.tensors.values()].some((t) => t.dims.includes('q_group'))).toBe(false);
    }
  });

  it('kvHeads = heads builds the same graph as kvHeads omitted', () => {
    for (const p of listPresets().filter((x) => x.spec.kvHeads === x.spec.heads)) {
      const raw = JSON.parse(JSON.stringify(p.spec));
      delete raw.kvHeads;
      const omitted = buildGraph(parseModelSpec(raw));
      expect(summary(buildGraph(p.spec))).toEqual(summary(omitted));
      expect(omitted.spec.kvHeads).toBe(omitted.spec.heads);
    }
  });
});

// heads 64 of which 8 K/V heads (llama2-70b's ratio) in a model small enough to lower by hand.
const small = parseModelSpec({
  name: 'gqa-small', layers: 1, dModel: 64, heads: 64, kvHeads: 8, dKv: 4, dFf: 32, vocab: 32, seqLen: 8, batch: 4,
  dtype: 'float32', dropout: false, activation: 'relu',
});

describe('the grouped-query graph (Mesh-TF style: heads is the K/V head dimension, q_group the query heads per K/V head)', () => {
  const g = buildGraph(small);
  const dims = (id: string) => g.tensors.get(id)!.dims;
  it('puts q_group on the query side only', () => {
    expect(g.dimSizes.heads).toBe(8);
    expect(g.dimSizes.q_group).toBe(8);
    expect(dims('decoder.self.wq')).toEqual(['d_model', 'heads', 'q_group', 'd_kv']);
    expect(dims('decoder.self.wk')).toEqual(['d_model', 'heads', 'd_kv']);
    expect(dims('decoder.self.wv')).toEqual(['d_model', 'heads', 'd_kv']);
    expect(dims('decoder.self.wo')).toEqual(['heads', 'q_group', 'd_kv', 'd_model']);
    expect(dims('decoder.self.q')).toEqual(['batch', 'length', 'heads', 'q_group', 'd_kv']);
    expect(dims('decoder.self.k')).toEqual(['batch', 'memory_length', 'heads', 'd_kv']);
    expect(dims('decoder.self.probs')).toEqual(['batch', 'heads', 'q_group', 'length', 'memory_length']);
    expect(dims('decoder.self.o')).toEqual(['batch', 'length', 'heads', 'q_group', 'd_kv']);
  });
});

describe('lowering a grouped-query layout, against a hand count', () => {
  const g = buildGraph(small);
  const mesh = parseMesh('x:8');
  const fwd = (p: ReturnType<typeof lower>, name: string) => p.ops.find((o) => o.name === name && o.phase === 'forward')!;
  const b = 4, s = 8, d = 64, dk = 4;

  it('heads:x on x:8: one K/V head and its 8 query heads per device', () => {
    const p = lower(g, mesh, makePlan(parseLayout('heads:x')));
    // K projection: 2·b·s·d·(kv/8)·dk FLOPs; bytes read mem and wk, write k (fp32).
    const k = fwd(p, 'decoder.self.k');
    expect(k.flops).toBe(2 * b * s * d * 1 * dk);
    expect(k.bytes).toBe(4 * (b * s * d + d * 1 * dk + b * s * 1 * dk));
    expect(k.duplication).toBe(1);
    expect(fwd(p, 'decoder.self.v').flops).toBe(2 * b * s * d * 1 * dk);
    // Q projection: the 8 query heads of the local K/V head, 8 times the K FLOPs.
    expect(fwd(p, 'decoder.self.q').flops).toBe(2 * b * s * d * 1 * 8 * dk);
    // The backward of K: d(its input, the first norm's output) and dwk, each the forward's FLOPs.
    const kb = p.ops.filter((o) => o.name.startsWith('decoder.self.k/') && o.phase === 'backward');
    expect(kb.map((o) => [o.wrt, o.flops])).toEqual([['decoder.ln1.out', 2 * b * s * d * dk], ['decoder.self.wk', 2 * b * s * d * dk]]);
    // Local parameters: replicated embedding, positions, softmax, 3 norms; attention and FFN weights split by heads only.
    const local = 32 * d + s * d + 32 * d + 3 * 2 * d + (d * 8 * dk) + (d * dk) * 2 + (8 * dk * d) + d * 32 * 2;
    expect(p.localParams).toBe(local);
    expect(paramCount(g)).toBe(32 * d + s * d + 32 * d + 3 * 2 * d + d * 64 * dk * 2 + d * 8 * dk * 2 + d * 32 * 2);
  });

  it('K/V weights and projections are kvHeads/heads = 1/8 of the query side, per device and in total', () => {
    const p = lower(g, mesh, makePlan(parseLayout('heads:x')));
    expect(fwd(p, 'decoder.self.k').flops * 8).toBe(fwd(p, 'decoder.self.q').flops);
    const size = (id: string) => g.tensors.get(id)!.dims.reduce((n, x) => n * g.dimSizes[x], 1);
    expect(size('decoder.self.wk') * 8).toBe(size('decoder.self.wq'));
  });

  it('q_group:x splits the queries and duplicates the K/V projections on x', () => {
    const p = lower(g, mesh, makePlan(parseLayout('q_group:x')));
    const k = fwd(p, 'decoder.self.k');
    expect(k.flops).toBe(2 * b * s * d * 8 * dk);
    expect(k.duplication).toBe(8);
    expect(fwd(p, 'decoder.self.q').flops).toBe(2 * b * s * d * 8 * 1 * dk);
    expect(fwd(p, 'decoder.self.qk').duplication).toBe(1);
  });
});

describe('a dimension the model lacks', () => {
  const tpu = getDevice('tpu-v2');
  it('is never offered by the search, and leaves its space as it was before q_group existed', () => {
    const Q = 1 << DIM_NAMES.indexOf('q_group');
    // Ranks measured on main at dcacc39, before q_group was a dimension: 400 and 8000 then. Since K and V
    // are renamed after their projection no tensor holds memory_length with d_model, so the two may share
    // an axis: 21² and 21³ (20² and 20³ before).
    for (const [model, m, ranks] of [['transformer-5b', '16x32', 441], ['tiny', '2x2x2', 9261]] as const) {
      const space = makeSpace(buildGraph(getPreset(model)), parseMesh(m), tpu);
      expect(space.choices.some((c) => c & Q)).toBe(false);
      expect(space.ranks).toBe(ranks);
    }
    expect(makeSpace(buildGraph(getPreset('llama2-70b')), parseMesh('8x8'), tpu).choices.some((c) => c & Q)).toBe(true);
  });

  it('makes a layout that splits it invalid, with a reason, and an estimate says so instead of pricing a wrong plan', () => {
    const g = buildGraph(getPreset('tiny'));
    const mesh = parseMesh('2x2');
    const layout = parseLayout('batch:rows;q_group:cols');
    expect(layoutProblem(g, mesh, compileLayout(layout, mesh))).toMatch(/model tiny has no dimension q_group/);
    expect(() => validateLayout(g, mesh, layout)).toThrow(/no dimension q_group/);
    const e = estimatePlan(g, mesh, makePlan(layout), tpu);
    expect(e.valid).toBe(false);
    expect(e.reasons[0]).toMatch(/no dimension q_group/);
  });
});

describe('model spec: kvHeads, flashAttention, dtype spellings', () => {
  const base = { layers: 1, dModel: 16, heads: 8, dKv: 2, dFf: 16, vocab: 16, seqLen: 4, batch: 2 };
  it('rejects a kvHeads that does not divide heads, or is not a positive integer, in one line', () => {
    for (const kvHeads of [3, 16, 0, 2.5, '8']) {
      let err: unknown;
      try { parseModelSpec({ ...base, kvHeads }); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(InputError);
      expect((err as Error).message).toMatch(/"kvHeads"/);
      expect((err as Error).message).not.toContain('\n');
    }
    expect(parseModelSpec({ ...base, kvHeads: 2 }).kvHeads).toBe(2);
  });

  it('reads bf16, fp16 and fp32 as bfloat16, float16 and float32, and names every spelling when a dtype is wrong', () => {
    for (const [short, long] of [['bf16', 'bfloat16'], ['fp16', 'float16'], ['fp32', 'float32']] as const) {
      expect(parseModelSpec({ ...base, dtype: short }).dtype).toBe(long);
      expect(parseModelSpec({ ...base, dtype: long }).dtype).toBe(long);
      expect(parseDtype(short)).toBe(long);
    }
    expect(() => parseModelSpec({ ...base, dtype: 'bf8' })).toThrow(/"dtype": must be one of bfloat16, float16, float32, bf16, fp16, fp32, got "bf8"/);
    expect(() => parseDtype('float64', '--dtype')).toThrow(InputError);
  });

  it('flashAttention marks exactly the attention-core ops as one fused group, and changes nothing else', () => {
    const plain = buildGraph(parseModelSpec({ ...base, dropout: true }));
    const fused = buildGraph(parseModelSpec({ ...base, dropout: true, flashAttention: true }));
    expect(plain.blocks.flatMap((bl) => bl.ops).some((o) => o.fused)).toBe(false);
    const ops = fused.blocks.flatMap((bl) => bl.ops);
    const marked = ops.filter((o) => o.fused === 'attention').map((o) => o.name);
    expect(marked).toEqual(['decoder.self.qk', 'decoder.self.causal', 'decoder.self.softmax', 'decoder.self.probs.dropout', 'decoder.self.av']);
    expect(marked).toEqual(ops.filter((o) => o.attentionCore).map((o) => o.name));
    expect(summary(fused)).toEqual(summary(plain));
  });

  it('defaults flash attention on for the llama presets (and the 2024-25 MoE ones) and off for the Mesh-TF-era ones', () => {
    for (const p of listPresets()) expect(p.spec.flashAttention).toBe(/^(llama|mixtral|deepseek|qwen3)/.test(p.name));
  });
});

describe('the command line', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gqa-'));
  const file = (name: string, spec: object) => {
    const path = join(dir, name);
    writeFileSync(path, JSON.stringify(spec));
    return path;
  };
  const base = { layers: 2, dModel: 64, heads: 8, dKv: 8, dFf: 64, vocab: 64, seqLen: 8, batch: 8 };

  it('refuses a bad kvHeads with one line and exit 2', () => {
    const r = cli(['estimate', '--mesh', '2', '--model', file('bad.json', { ...base, kvHeads: 3 }), '--layout', 'batch:x']);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/"kvHeads" \(3\) must divide "heads" \(8\)/);
  });

  it('estimates a grouped-query fp32 model written with the short dtype spelling, split over heads and q_group', () => {
    const r = cli(['estimate', '--json', '--mesh', '2x2', '--model', file('gqa.json', { ...base, kvHeads: 2, dtype: 'fp32' }), '--layout', 'heads:rows;q_group:cols']);
    expect(r.code).toBe(0);
    const e = JSON.parse(r.stdout);
    expect(e.valid).toBe(true);
    expect(e.plan.layout).toBe('heads:rows;q_group:cols');
  });
});

describe('exports of a grouped-query plan', () => {
  it('every engine without a q_group axis refuses a q_group split in one line instead of dropping it', () => {
    for (const format of ['t5x', 'maxtext', 'megatron', 'deepspeed', 'torchtitan']) {
      const r = cli(['export', '--format', format, '--mesh', '4x8', '--model', 'llama2-70b', '--layout', 'batch:rows;q_group:cols', '--microbatches', '1']);
      expect(r.code, format).toBe(2);
      expect(r.stderr.trim().split('\n'), format).toHaveLength(1);
      expect(r.stderr, format).toMatch(/q_group/);
    }
  });
});

describe('run and train on a grouped-query model with rotary positions', () => {
  it('refuse in one line (the runtime rotary kernel takes 4-D blocks) rather than rotate the wrong pairs', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gqa-rot-'));
    const path = join(dir, 'rg.json');
    writeFileSync(path, JSON.stringify({ layers: 1, dModel: 32, heads: 4, kvHeads: 2, dKv: 8, dFf: 32, vocab: 32, seqLen: 8, batch: 4, dtype: 'fp32', positions: 'rotary', dropout: false }));
    for (const cmd of ['run', 'train']) {
      const r = cli([cmd, '--mesh', '2', '--model', path, '--layout', 'heads:x', '--steps', '1']);
      expect(r.code, cmd).toBe(2);
      expect(r.stderr.trim().split('\n'), cmd).toHaveLength(1);
      expect(r.stderr, cmd).toMatch(/rotary positions with grouped-query attention/);
    }
  });
});
