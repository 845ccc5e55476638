import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { estimatePlan } from '../src/cost/estimatePlan.js';
import { getDevice } from '../src/cost/presets.js';
import { parseLayout } from '../src/layout/layout.js';
import { lower, lowerLayout } from '../src/lower/lower.js';
import { instantiate, recomputes } from '../src/lower/instantiate.js';
import type { OpRecord } from '../src/lower/records.js';
import { makePlan, RECOMPUTE } from '../src/lower/plan.js';
import type { Program } from '../src/lower/program.js';
import { parseMesh } from '../src/mesh/mesh.js';
import { buildGraph, paramCount } from '../src/model/graph.js';
import { getPreset } from '../src/model/presets.js';
import { parseModelSpec } from '../src/model/spec.js';
import { smallSpec, validLayout } from './support/arbitraries.js';

/** A GPT-style decoder as Narayanan et al. and Korthikanti et al. count it. */
function gpt(h: number, a: number, l: number, s: number, B: number, V: number, dropout = true) {
  return buildGraph(parseModelSpec({ name: 'gpt', layers: l, dModel: h, heads: a, dKv: h / a, dFf: 4 * h, vocab: V, seqLen: s, batch: B, activation: 'gelu', dropout, dtype: 'bfloat16' }));
}

const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);
const collectivesOf = (p: Program, phase?: string) =>
  p.ops.filter((o) => !phase || o.phase === phase).flatMap((o) => o.collectives.map((c) => ({ op: o, c })));

describe('FLOPs', () => {
  it("equal Narayanan et al.'s F with and without full recompute, to 1e-9", () => {
    fc.assert(fc.property(
      fc.constantFrom(64, 128, 256), fc.constantFrom(2, 4, 8), fc.integer({ min: 1, max: 6 }), fc.constantFrom(16, 64, 128),
      fc.integer({ min: 1, max: 8 }), fc.integer({ min: 10, max: 2000 }),
      (h, a, l, s, B, V) => {
        const g = gpt(h, a, l, s, B, V);
        const none = lower(g, parseMesh('1'), makePlan('', { recompute: 'none' })).flops.matmulPerStep;
        const full = lower(g, parseMesh('1'), makePlan('', { recompute: 'full' })).flops.matmulPerStep;
        expect(rel(none, 72 * B * s * l * h * h * (1 + s / (6 * h) + V / (12 * l * h)))).toBeLessThan(1e-9);
        expect(rel(full, 96 * B * s * l * h * h * (1 + s / (6 * h) + V / (16 * l * h)))).toBeLessThan(1e-9);
      },
    ), { numRuns: 40 });
  });

  it('per-device FLOPs times devices over duplication equal the unsplit total, for every valid layout', () => {
    const mesh = parseMesh('2x2x2');
    fc.assert(fc.property(smallSpec().chain((spec) => {
      const g = buildGraph(spec);
      return fc.tuple(fc.constant(g), validLayout(g, mesh), fc.constantFrom('none', 'selective', 'full'));
    }), ([g, layout, recompute]) => {
      const whole = lower(g, parseMesh('1'), makePlan('', { recompute })).flops.matmulPerStep;
      const p = lower(g, mesh, makePlan(layout, { recompute }));
      let sum = 0;
      for (const op of p.ops) if (op.klass === 'matmul') sum += (op.flops * op.count * mesh.size) / op.duplication;
      expect(rel(sum, whole)).toBeLessThan(1e-12);
      expect(rel(p.flops.matmulPerStep, whole)).toBeLessThan(1e-12);
    }), { numRuns: 80 });
  });

  it('a program runs its records in program order, each as often as its block, and its FLOPs are theirs', () => {
    // Written out here from the lowering's records: the forward, then block by block in reverse the
    // recompute its mode runs and the backward (instantiate.ts keeps that order once per lowering).
    const mesh = parseMesh('2x2x2');
    fc.assert(fc.property(smallSpec().chain((spec) => {
      const g = buildGraph(spec);
      return fc.tuple(fc.constant(g), validLayout(g, mesh), fc.constantFrom(...RECOMPUTE), fc.constantFrom(1, 2));
    }), ([g, layout, recompute, microbatches]) => {
      const plan = makePlan(layout, { recompute, microbatches });
      const l = lowerLayout(g, mesh, plan.layout);
      fc.pre(g.spec.batch % (l.layout.split.batch * microbatches) === 0);
      const runs = (r: OpRecord) => r.phase !== 'recompute' || recomputes(r, recompute);
      const want: OpRecord[] = [...l.forward];
      for (const b of [...l.blocks].reverse()) want.push(...l.recompute.filter((r) => r.block === b.name && runs(r)), ...l.backward.filter((r) => r.block === b.name));
      const times = (r: OpRecord) => (r.layered ? l.graph.blocks.find((b) => b.name === r.block)!.repeat / l.layout.split.layers : 1) * microbatches;
      // Twice: the second program reads the order the first one kept.
      for (let i = 0; i < 2; i++) {
        const p = instantiate(l, plan);
        expect(p.ops.map((o) => [o.name, o.phase, o.count])).toEqual([...want.map((r) => [r.name, r.phase, times(r)]), ...p.ops.slice(want.length).map((o) => [o.name, o.phase, o.count])]);
        expect(p.ops.slice(want.length).every((o) => o.phase === 'sync' || o.phase === 'optimizer' || o.kind === 'send' || o.name.startsWith('gather:'))).toBe(true);
        const mb = g.spec.batch / l.layout.split.batch / microbatches;
        let perDevice = 0;
        for (const r of want) if (r.klass === 'matmul') perDevice += (r.flops.perSeq * mb + r.flops.fixed) * times(r);
        expect(p.flops.perDevice).toBe(perDevice);
      }
    }), { numRuns: 40 });
  });
});

describe('memory', () => {
  it("saves s·b·h·(34 + 5·a·s/h) bytes per layer unsplit (Korthikanti et al. 2022)", () => {
    fc.assert(fc.property(fc.constantFrom(64, 128), fc.constantFrom(2, 4, 8), fc.constantFrom(16, 64), fc.integer({ min: 1, max: 8 }), (h, a, s, b) => {
      const p = lower(gpt(h, a, 2, s, b, 100), parseMesh('1'), makePlan(''));
      expect(p.savedBytes.decoder).toBe(s * b * h * (34 + (5 * a * s) / h));
    }), { numRuns: 30 });
  });

  it('saves s·b·h·(10 + 24/t + 5·a·s/(h·t)) with heads and d_ff split t ways', () => {
    for (const t of [2, 4, 8]) {
      const [h, a, s, b] = [128, 8, 64, 4];
      const p = lower(gpt(h, a, 2, s, b, 100), parseMesh(String(t)), makePlan('heads:x;d_ff:x'));
      expect(p.savedBytes.decoder).toBe(s * b * h * (10 + 24 / t + (5 * a * s) / (h * t)));
    }
  });

  it('selective recompute keeps 34·s·b·h, full recompute only the layer input', () => {
    const [h, a, s, b] = [128, 8, 64, 4];
    const g = gpt(h, a, 2, s, b, 100);
    expect(lower(g, parseMesh('1'), makePlan('', { recompute: 'selective' })).savedBytes.decoder).toBe(34 * s * b * h);
    expect(lower(g, parseMesh('1'), makePlan('', { recompute: 'full' })).savedBytes.decoder).toBe(2 * s * b * h);
  });

  it('model states are 16Ψ, 4Ψ+12Ψ/N, 2Ψ+14Ψ/N and 16Ψ/N bytes for ZeRO stages 0-3 (Rajbhandari et al.)', () => {
    const g = gpt(128, 4, 2, 16, 64, 128);
    const psi = paramCount(g);
    for (const N of [2, 4, 8]) {
      const states = [0, 1, 2, 3].map((zero) => {
        const m = lower(g, parseMesh(String(N)), makePlan('batch:x', { zero })).memory;
        return m.params + m.gradients + m.optimizer;
      });
      const expected = [16 * psi, 4 * psi + (12 * psi) / N, 2 * psi + (14 * psi) / N, (16 * psi) / N];
      states.forEach((s, i) => expect(rel(s, expected[i])).toBeLessThan(1e-12));
    }
  });
});

describe('communication', () => {
  it('pure data parallelism allreduces exactly the gradient bytes, once per step, from the weight-gradient einsums', () => {
    const g = gpt(128, 4, 3, 16, 64, 128);
    fc.assert(fc.property(fc.constantFrom(2, 4, 8), fc.constantFrom(1, 2, 4), (n, M) => {
      const p = lower(g, parseMesh(String(n)), makePlan('batch:x', { microbatches: M }));
      const all = collectivesOf(p).filter(({ c }) => c.kind === 'allreduce' && c.tensor !== 'loss');
      // Every allreduce is a weight's gradient sync, run once per step per layer.
      expect(all.every(({ op }) => op.phase === 'sync')).toBe(true);
      const bytes = all.reduce((s, { op, c }) => s + c.bytes * op.count, 0);
      expect(bytes).toBe(2 * paramCount(g));
      // It falls out of the weight-gradient einsums contracting the split batch, not a special case.
      const wgrad = p.ops.filter((o) => o.phase === 'backward' && o.kind === 'einsum' && o.output.id.includes('.w'));
      expect(wgrad.length).toBeGreaterThan(0);
      expect(wgrad.every((o) => o.partial?.join() === 'x')).toBe(true);
    }), { numRuns: 9 });
  });

  it("splitting d_ff and heads gives Megatron's two allreduces of b·s·d_model per layer forward and two backward", () => {
    const [h, a, s, b] = [128, 8, 32, 4];
    const p = lower(gpt(h, a, 2, s, b, 100, false), parseMesh('4'), makePlan('heads:x;d_ff:x'));
    const layer = (phase: string) => collectivesOf(p, phase).filter(({ op }) => op.block === 'decoder');
    for (const phase of ['forward', 'backward']) {
      const cs = layer(phase);
      expect(cs.length).toBe(2);
      for (const { c } of cs) {
        expect(c.kind).toBe('allreduce');
        expect(c.axes).toEqual(['x']);
        expect(c.bytes).toBe(b * s * h * 2);
      }
    }
  });

  it('the paper layout on 16x32 syncs gradients on rows and allreduces activations on cols', () => {
    const p = lower(buildGraph(getPreset('transformer-5b')), parseMesh('16x32'), makePlan('batch:rows;d_ff:cols;heads:cols;vocab:cols'));
    const sync = collectivesOf(p, 'sync');
    expect(sync.length).toBeGreaterThan(0);
    expect(sync.every(({ c }) => c.axes.join() === 'rows')).toBe(true);
    const layer = [...collectivesOf(p, 'forward'), ...collectivesOf(p, 'backward')].filter(({ op }) => op.block === 'decoder');
    expect(layer.length).toBe(4);
    expect(layer.every(({ c }) => c.axes.join() === 'cols')).toBe(true);
  });

  it('a layout that splits nothing communicates nothing', () => {
    const p = lower(buildGraph(getPreset('tiny')), parseMesh('2x2'), makePlan(''));
    expect(collectivesOf(p)).toEqual([]);
  });
});

describe('transformer-5b on 16x32 tpu-v2', () => {
  const g = buildGraph(getPreset('transformer-5b'));
  const mesh = parseMesh('16x32');
  const tpu = getDevice('tpu-v2');

  it("the paper's layout fits in memory", () => {
    const e = estimatePlan(g, mesh, makePlan('batch:rows;d_ff:cols;heads:cols;vocab:cols'), tpu);
    expect(e.valid).toBe(true);
    expect(e.feasible).toBe(true);
    expect(e.memory.total).toBeLessThan(e.memory.capacity);
  });

  it('batch:rows+cols does not, and the reasons say by how much', () => {
    const e = estimatePlan(g, mesh, makePlan(parseLayout('batch:rows+cols')), tpu);
    expect(e.feasible).toBe(false);
    expect(e.memory.total).toBeGreaterThan(e.memory.capacity);
    const over = e.reasons.find((r) => /exceeds/.test(r));
    expect(over).toMatch(/by \d+\.\d\d GiB/);
    const gib = Number(/by (\d+\.\d\d) GiB/.exec(over!)![1]);
    expect(Math.abs(gib - (e.memory.total - e.memory.capacity) / 2 ** 30)).toBeLessThan(0.01);
  });
});
