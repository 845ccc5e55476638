import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { getDevice } from '../src/cost/presets.js';
import { compileLayout, layoutProblem, type Layout } from '../src/layout/layout.js';
import { sequenceParallelProblem } from '../src/lower/lower.js';
import { makePlan } from '../src/lower/plan.js';
import { parseMesh } from '../src/mesh/mesh.js';
import { buildGraph, DIM_NAMES } from '../src/model/graph.js';
import { parseModelSpec } from '../src/model/spec.js';
import { runPlan } from '../src/runtime/index.js';
import { validLayout } from './support/arbitraries.js';

const tpu = getDevice('tpu-v2');

/** Every model feature the lowering handles, on a model small enough to run dozens of times. */
const variant = fc.record({
  kind: fc.constantFrom('decoder', 'encoder-decoder'),
  activation: fc.constantFrom('relu', 'gelu', 'swiglu'),
  positions: fc.constantFrom('learned', 'rotary'),
  dropout: fc.boolean(),
  tiedEmbeddings: fc.boolean(),
});
type Variant = typeof variant extends fc.Arbitrary<infer V> ? V : never;

const specOf = (v: Variant) => parseModelSpec({
  name: 'variant', ...v, layers: 2, dModel: 16, heads: 4, dKv: 4, dFf: 32, vocab: 32, seqLen: 8, batch: 4, dtype: 'float32',
});

describe('every model variant, sharded, equals the unsplit model', () => {
  it('after 2 Adam steps loss and every parameter match to 1e-4 (fixed seed; every feature value drawn)', async () => {
    const meshes = ['2', '2x2', '2x2x2'].map(parseMesh);
    const arb = variant.chain((v) => fc.constantFrom(...meshes).chain((mesh) => {
      const graph = buildGraph(specOf(v));
      // The runtime runs pipelines of decoders only.
      const dims = v.kind === 'decoder' ? DIM_NAMES : DIM_NAMES.filter((d) => d !== 'layers');
      return fc.tuple(fc.constant(v), fc.constant(mesh), validLayout(graph, mesh, dims),
        fc.constantFrom(0, 1, 2, 3), fc.constantFrom('none', 'selective', 'minimal', 'full'), fc.constantFrom(1, 2));
    }));
    const drawn = new Map<string, Set<unknown>>();
    await fc.assert(fc.asyncProperty(arb, async ([v, mesh, layout, zero, recompute, microbatches]) => {
      const spec = specOf(v);
      const plan = makePlan(layout, { zero, recompute, microbatches });
      const perReplica = spec.batch / (layout.get('batch') ?? []).reduce((p, a) => p * mesh.axes.find((x) => x.name === a)!.size, 1);
      fc.pre(perReplica % microbatches === 0);
      for (const [k, x] of [...Object.entries(v), ['recompute', recompute]]) (drawn.get(k) ?? drawn.set(k, new Set()).get(k)!).add(x);
      const r = await runPlan({ spec, mesh, plan, steps: 2, device: tpu, check: true, backend: 'wasm' });
      expect(r.check!.maxRelativeError).toBeLessThan(1e-4);
    }), { numRuns: 40, seed: 20261202 });
    expect(Object.fromEntries([...drawn].map(([k, s]) => [k, s.size]))).toEqual({ kind: 2, activation: 3, positions: 2, dropout: 2, tiedEmbeddings: 2, recompute: 4 });
  });
});

describe('rotary positions in float32', () => {
  // At d_model 64 a ReLU decoder has pre-activations near the kink, where a one-ulp difference in
  // the rotated queries and keys switches a unit and Adam's normalised step turns that into a
  // whole step: rotated in float64 and rounded once, its weights after 2 steps were 7.7e-2 apart.
  const spec = parseModelSpec({
    name: 'rotary-relu', kind: 'decoder', layers: 2, dModel: 64, heads: 4, dKv: 16, dFf: 256, vocab: 128, seqLen: 32,
    batch: 8, dtype: 'float32', dropout: false, tiedEmbeddings: true, activation: 'relu', positions: 'rotary',
  });
  it.each(['batch:rows', 'heads:rows;d_ff:cols'])('a ReLU decoder at d_model 64 on 2x2 (%s) matches the unsplit model to 1e-4 after 2 Adam steps', async (layout) => {
    const r = await runPlan({ spec, mesh: parseMesh('2x2'), plan: makePlan(layout), steps: 2, device: tpu, check: true, backend: 'wasm' });
    expect(r.check!.maxRelativeError).toBeLessThan(1e-4);
  });
});

describe('interleaved pipelines', () => {
  // 4 layers on 2 stages of 2 virtual stages: chunks of one layer, stage 0 runs layers 0 and 2.
  const spec = parseModelSpec({
    name: 'pp4', kind: 'decoder', layers: 4, dModel: 32, heads: 4, dKv: 8, dFf: 64, vocab: 64, seqLen: 16, batch: 8,
    dtype: 'float32', dropout: false, tiedEmbeddings: true, activation: 'gelu', positions: 'learned',
  });
  // A large epsilon makes Adam's step linear in the gradient, so the check compares gradients, not
  // the normalised step that turns rounding in near-zero gradients into whole steps.
  const linear = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1 };
  it.each([
    ['x:2', 'layers:x', { microbatches: 2, virtualStages: 2 }],
    ['2x2', 'layers:rows;heads:cols', { microbatches: 2, virtualStages: 2, recompute: 'full' }],
    ['2x2', 'layers:rows;batch:cols', { microbatches: 4, virtualStages: 2, zero: 3 }],
  ] as const)('on %s with %s %j: the same losses as one stage per device, and the unsplit model\'s weights to 1e-5', async (mesh, layout, o) => {
    const run = (virtualStages: number) => runPlan({ spec, mesh: parseMesh(mesh), plan: makePlan(layout, { ...o, virtualStages }), steps: 2, device: tpu, check: true, backend: 'wasm', adam: linear });
    const [interleaved, plain] = [await run(2), await run(1)];
    expect(interleaved.steps.map((s) => s.loss)).toEqual(plain.steps.map((s) => s.loss));
    expect(interleaved.check!.maxRelativeError).toBeLessThan(1e-5);
  });

  it('--check runs a linear step too where Adam\'s normalised step amplifies rounding (this model, data-parallel, default Adam)', async () => {
    const r = await runPlan({ spec, mesh: parseMesh('x:2'), plan: makePlan('batch:x'), steps: 2, device: tpu, check: true, backend: 'wasm' });
    // Default Adam: gradients near epsilon turn float32 rounding into whole steps.
    expect(r.check!.params).toBeGreaterThan(1e-4);
    expect(r.check!.linear!.params).toBeLessThan(1e-5);
    // Under 1e-4 it is not run.
    const quiet = await runPlan({ spec, mesh: parseMesh('x:2'), plan: makePlan('batch:x'), steps: 2, device: tpu, check: true, backend: 'wasm', adam: linear });
    expect(quiet.check!.linear).toBeUndefined();
  });
});

describe('sequence parallelism, sharded, equals the unsplit model', () => {
  // A step linear in the gradient (Adam's epsilon 1): the check compares gradients, as the norms'
  // and positions' gradients are summed over T in another order than the unsplit model sums them.
  const linear = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1 };
  it('over every model variant, layouts that take it, ZeRO, recompute and microbatches: weights to 2e-5 after 2 steps (fixed seed)', async () => {
    const meshes = ['2x2', '2x2x2'].map(parseMesh);
    const arb = variant.chain((v) => fc.constantFrom(...meshes).chain((mesh) => {
      const graph = buildGraph(specOf(v));
      const dims = v.kind === 'decoder' ? DIM_NAMES : DIM_NAMES.filter((d) => d !== 'layers');
      // Layouts whose heads or d_ff are split (the tensor-parallel axes T), on the same axes if both.
      const takes = (l: Layout) => layoutProblem(graph, mesh, compileLayout(l, mesh)) === null && sequenceParallelProblem(graph, mesh, l) === null;
      const layouts = validLayout(graph, mesh, dims).filter(takes);
      // Megatron-LM's layout: the vocabulary split on T too (a reduce-scatter out of the embedding).
      const vocabOnT = layouts.map((l) => new Map([...l, ['vocab', l.get('heads') ?? l.get('d_ff')!]]) as Layout).filter(takes);
      return fc.tuple(fc.constant(v), fc.constant(mesh), fc.oneof(layouts, vocabOnT),
        fc.constantFrom(0, 1, 2, 3), fc.constantFrom('none', 'selective', 'minimal', 'full'), fc.constantFrom(1, 2));
    }));
    const drawn = new Map<string, Set<unknown>>();
    let scatteredLength = 0;
    await fc.assert(fc.asyncProperty(arb, async ([v, mesh, layout, zero, recompute, microbatches]) => {
      const spec = specOf(v);
      const perReplica = spec.batch / (layout.get('batch') ?? []).reduce((p, a) => p * mesh.axes.find((x) => x.name === a)!.size, 1);
      fc.pre(perReplica % microbatches === 0);
      const T = [...(layout.get('heads') ?? []), ...(layout.get('d_ff') ?? [])];
      const vocabOnT = (layout.get('vocab') ?? []).some((a) => T.includes(a));
      for (const [k, x] of [...Object.entries(v), ['recompute', recompute], ['vocab on T', vocabOnT]] as [string, unknown][]) {
        (drawn.get(k) ?? drawn.set(k, new Set()).get(k)!).add(x);
      }
      scatteredLength++;
      const plan = makePlan(layout, { zero, recompute, microbatches, sequenceParallel: true });
      const r = await runPlan({ spec, mesh, plan, steps: 2, device: tpu, check: true, backend: 'wasm', adam: linear });
      expect(r.check!.loss).toBeLessThan(1e-5);
      expect(r.check!.maxRelativeError).toBeLessThan(2e-5);
    }), { numRuns: 32, seed: 20261207 });
    expect(Object.fromEntries([...drawn].map(([k, s]) => [k, s.size]))).toEqual({ kind: 2, activation: 3, positions: 2, dropout: 2, tiedEmbeddings: 2, recompute: 4, 'vocab on T': 2 });
    expect(scatteredLength).toBeGreaterThanOrEqual(24);
  });

  // Cases the draws above may miss: T on two axes with the vocabulary on one of them (a sum over
  // part of T: the whole block of length allreduced, each device keeping its share), context
  // parallelism beside it (each device's share of its share of length), and a pipeline.
  it.each([
    ['heads:rows+cols;d_ff:rows+cols;vocab:cols', { tiedEmbeddings: true }],
    ['heads:cols+rows;d_ff:cols+rows;vocab:rows', { dropout: true }],
    ['length:rows;heads:cols;d_ff:cols;vocab:cols', { positions: 'learned' }],
    ['layers:rows;heads:cols;d_ff:cols', { tiedEmbeddings: true, microbatches: 2 }],
  ] as const)('on 2x2 with %s %j: weights to 2e-5 after 2 steps', async (layout, o) => {
    const { microbatches = 1, ...v } = o as { microbatches?: number } & Partial<Variant>;
    const spec = specOf({ kind: 'decoder', activation: 'gelu', positions: 'rotary', dropout: false, tiedEmbeddings: false, ...v });
    const plan = makePlan(layout, { microbatches, sequenceParallel: true });
    const r = await runPlan({ spec, mesh: parseMesh('2x2'), plan, steps: 2, device: tpu, check: true, backend: 'wasm', adam: linear });
    expect(r.check!.loss).toBeLessThan(1e-5);
    expect(r.check!.maxRelativeError).toBeLessThan(2e-5);
  });
});
