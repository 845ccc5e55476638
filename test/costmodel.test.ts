import { describe, expect, it } from 'vitest';
import { estimatePlan } from '../src/cost/estimatePlan.js';
import { getDevice } from '../src/cost/presets.js';
import { collectiveTime, opTime, price } from '../src/cost/price.js';
import { makePricer } from '../src/cost/pricer.js';
import type { HardwareProfile } from '../src/cost/profile.js';
import { lower } from '../src/lower/lower.js';
import { makePlan } from '../src/lower/plan.js';
import { parseMesh } from '../src/mesh/mesh.js';
import { buildGraph, paramCount } from '../src/model/graph.js';
import { parseModelSpec } from '../src/model/spec.js';

const GiB = 2 ** 30;
const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

/** Korthikanti et al. 2022's 22B model (Table 3): h 6144, a 64, L 48, s 2048, b 4 per microbatch. */
function gpt22b(extra: Record<string, unknown> = {}) {
  return buildGraph(parseModelSpec({
    name: 'gpt-22b', layers: 48, dModel: 6144, heads: 64, dKv: 96, dFf: 4 * 6144, vocab: 51200, seqLen: 2048, batch: 4,
    activation: 'gelu', dropout: true, dtype: 'bf16', ...extra,
  }));
}

describe('activation memory against Korthikanti et al. 2022 (Sec. 4, Table 2)', () => {
  const g = gpt22b();
  const mesh = parseMesh('t:8');
  const layers = (plan: string, opts: Parameters<typeof makePlan>[1]) => lower(g, mesh, makePlan(plan, opts)).savedBytes.decoder! * 48;
  it('tensor parallelism alone: sbh(10 + 24/t + 5as/(ht)) per layer, 59.25 GiB for the 22B model at t = 8', () => {
    expect(layers('heads:t;d_ff:t', {}) / GiB).toBe(59.25);
  });
  it('sequence parallelism with selective recompute: 34sbh/t per layer, 9.5625 GiB', () => {
    expect(layers('heads:t;d_ff:t', { sequenceParallel: true, recompute: 'selective' }) / GiB).toBe(9.5625);
  });
  it('sequence parallelism alone: sbh/t (34 + 5as/h) per layer', () => {
    const s = 2048, b = 4, h = 6144, a = 64, t = 8;
    expect(rel(layers('heads:t;d_ff:t', { sequenceParallel: true }), 48 * ((s * b * h) / t) * (34 + (5 * a * s) / h))).toBeLessThan(1e-12);
  });
  // Minimal recompute (JAX's checkpoint_dots_with_no_batch_dims) keeps the layer input and the
  // outputs of the projections only, per layer in 2-byte elements: x (sbh), Q, K, V (3sbh/t),
  // the attention output projection (sbh), the MLP's first matmul (4sbh/t) and second (sbh);
  // sequence parallelism splits the three sbh-sized ones over t too.
  it('minimal recompute: sbh(6 + 14/t) per layer, and 20sbh/t with sequence parallelism', () => {
    const s = 2048, b = 4, h = 6144, t = 8;
    expect(layers('heads:t;d_ff:t', { recompute: 'minimal' })).toBe(48 * s * b * h * (6 + 14 / t));
    expect(layers('heads:t;d_ff:t', { sequenceParallel: true, recompute: 'minimal' })).toBe(48 * s * b * h * (20 / t));
  });
  it('minimal recompute without dropout keeps no MLP output (it feeds only the residual sum, which no backward reads, as JAX saves only what the backward needs): sbh(4 + 14/t), 18sbh/t', () => {
    const g0 = gpt22b({ dropout: false });
    const at = (opts: Parameters<typeof makePlan>[1]) => lower(g0, mesh, makePlan('heads:t;d_ff:t', opts)).savedBytes.decoder! * 48;
    const s = 2048, b = 4, h = 6144, t = 8;
    expect(at({ recompute: 'minimal' })).toBe(48 * s * b * h * (4 + 14 / t));
    expect(at({ sequenceParallel: true, recompute: 'minimal' })).toBe(48 * s * b * h * (18 / t));
  });
  it('fused attention keeps no s² tensors: like selective recompute without sequence parallelism', () => {
    const f = lower(gpt22b({ flashAttention: true }), mesh, makePlan('heads:t;d_ff:t')).savedBytes.decoder! * 48;
    expect(f).toBe(layers('heads:t;d_ff:t', { recompute: 'selective' }));
    expect(f).toBe(48 * 2048 * 4 * 6144 * (10 + 24 / 8));
  });
});

describe('sequence parallelism (Korthikanti et al. 2022, Sec. 4.2.2)', () => {
  const g = gpt22b();
  const mesh = parseMesh('t:8');
  // The layer's activations' collectives (the weights' gradient syncs apart).
  const layerColls = (sp: boolean) => lower(g, mesh, makePlan('heads:t;d_ff:t', { sequenceParallel: sp })).ops
    .filter((o) => o.block === 'decoder' && o.phase !== 'sync').flatMap((o) => o.collectives.map((c) => ({ c, count: o.count })));
  it('turns every tensor-parallel allreduce of a layer into a reduce-scatter and an allgather of the same bytes on the wire', () => {
    const tp = layerColls(false), sp = layerColls(true);
    expect(tp.every(({ c }) => c.kind === 'allreduce')).toBe(true);
    expect(sp.some(({ c }) => c.kind === 'allreduce')).toBe(false);
    const sent = (xs: typeof tp) => xs.reduce((s, { c, count }) => s + c.sent * count, 0);
    const n = (xs: typeof tp, k: string) => xs.filter(({ c }) => c.kind === k).reduce((s, { count }) => s + count, 0);
    // Forward: 2 allreduces per layer become 2 reduce-scatters and 2 allgathers; backward the same,
    // and the weight gradients' inputs are gathered again (Korthikanti et al., Fig. 6: g and ḡ).
    expect(n(tp, 'allreduce')).toBe(4 * 48);
    expect(n(sp, 'reduce-scatter')).toBe(4 * 48);
    expect(n(sp, 'allgather')).toBe(6 * 48);
    // Each reduce-scatter + allgather pair sends what one allreduce sends; the two re-gathers are extra.
    const s = 2048, b = 4, h = 6144, t = 8;
    expect(sent(sp) - sent(tp)).toBeCloseTo(2 * 48 * ((t - 1) / t) * s * b * h * 2, -3);
  });
  it('allreduces the norms\' weight gradients over the tensor-parallel axes (Megatron-LM finalize_model_grads.py, _allreduce_layernorm_grads)', () => {
    // Each device sums its own share of the sequence; without SP every device sees the whole sequence.
    const syncs = (sp: boolean) => lower(g, mesh, makePlan('heads:t;d_ff:t', { sequenceParallel: sp })).ops.filter((o) => o.phase === 'sync' && /\.ln\d\.|lnf/.test(o.name));
    expect(syncs(false).every((o) => o.collectives.length === 0)).toBe(true);
    const on = syncs(true);
    expect(on.length).toBeGreaterThanOrEqual(4);
    for (const o of on) expect(o.collectives.map((c) => `${c.kind}:${c.axes.join('+')}`)).toEqual(['allreduce:t']);
  });
  it('is refused where no axis splits heads or d_ff, and where a device\'s share of length does not divide', () => {
    expect(() => lower(g, mesh, makePlan('vocab:t', { sequenceParallel: true }))).toThrow(/heads or d_ff/);
    const short = buildGraph(parseModelSpec({ name: 'short', layers: 2, dModel: 64, heads: 8, dKv: 8, dFf: 256, vocab: 64, seqLen: 8, batch: 2, dtype: 'bf16' }));
    expect(() => lower(short, parseMesh('c:2;t:8'), makePlan('length:c;heads:t;d_ff:t', { sequenceParallel: true }))).toThrow(/each device's 4 of length's 8 8 ways/);
  });

  it('with context parallelism too (length split, Megatron-LM\'s CP with SP): the same identity on each device\'s share of the sequence', () => {
    // On the t axis alone: every tensor-parallel allreduce of a layer becomes a reduce-scatter and an
    // allgather of s/c tokens, plus the two re-gathers; what crosses c (K and V's gather) is the same in both.
    const cpMesh = parseMesh('c:2;t:8');
    const colls = (sp: boolean) => lower(g, cpMesh, makePlan('length:c;heads:t;d_ff:t', { sequenceParallel: sp })).ops
      .filter((o) => o.block === 'decoder' && o.phase !== 'sync').flatMap((o) => o.collectives.map((c) => ({ c, count: o.count })));
    const on = (xs: ReturnType<typeof colls>, axes: string) => xs.filter(({ c }) => c.axes.join('+') === axes);
    const tp = colls(false), sp = colls(true);
    const sent = (xs: typeof tp) => xs.reduce((a, { c, count }) => a + c.sent * count, 0);
    const n = (xs: typeof tp, k: string) => xs.filter(({ c }) => c.kind === k).reduce((a, { count }) => a + count, 0);
    expect(n(on(tp, 't'), 'allreduce')).toBe(4 * 48);
    expect(n(on(sp, 't'), 'allreduce')).toBe(0);
    expect(n(on(sp, 't'), 'reduce-scatter')).toBe(4 * 48);
    expect(n(on(sp, 't'), 'allgather')).toBe(6 * 48);
    const s = 2048, c = 2, b = 4, h = 6144, t = 8;
    expect(sent(on(sp, 't')) - sent(on(tp, 't'))).toBeCloseTo(2 * 48 * ((t - 1) / t) * (s / c) * b * h * 2, -3);
    expect(sent(on(sp, 'c'))).toBe(sent(on(tp, 'c')));
    // K and V's gather over c: per layer forward, 2 tensors of b·(s/c)·(heads/t)·dk, (c−1)/c of them sent.
    const kv = on(tp, 'c').filter(({ c: x }) => x.kind === 'allgather');
    expect(kv.reduce((a, { c: x, count }) => a + x.sent * count, 0)).toBeCloseTo(2 * 48 * ((c - 1) / c) * s * b * (64 / t) * 96 * 2, -3);
  });
});

/** A profile whose every constant is set by hand, so times can be worked out on paper. */
function handProfile(over: Partial<HardwareProfile> = {}): HardwareProfile {
  return {
    name: 'hand', description: '', peakFlops: { bfloat16: 100e12, float16: 100e12, float32: 25e12 }, memoryBytes: 1e12,
    memoryBandwidth: 1e12, levels: [{ name: 'one', devices: 1e9, link: { bandwidth: 50e9, latency: 2e-6, efficiency: { allreduce: 0.8 } } }],
    efficiency: { matmul: 0.9, elementwise: 0.5, softmax: 0.5, reduction: 0.5 }, overlap: 0, gemmHalfSize: 128, launchOverhead: 5e-6,
    collectiveLatency: 10e-6, sources: {}, ...over,
  };
}

describe('the roofline of one GEMM, by hand', () => {
  const p = handProfile();
  it('a large GEMM is compute-bound: FLOPs / (peak · η_max · Π x/(x+h)) + launch', () => {
    const [m, n, k] = [4096, 4096, 2048];
    const flops = 2 * m * n * k, bytes = 2 * (m * k + k * n + m * n);
    const t = opTime(p, { klass: 'matmul', flops, bytes, gemm: { batch: 1, m, n, k, scales: null }, kernel: true }, 100e12);
    const eta = 0.9 * (m / (m + 128)) * (n / (n + 128)) * (k / (k + 128));
    expect(rel(t, flops / (100e12 * eta) + 5e-6)).toBeLessThan(1e-12);
  });
  it('a matrix-vector product is memory-bound: bytes / (HBM · η_mem) + launch', () => {
    const [m, n, k] = [1, 8192, 8192];
    const flops = 2 * m * n * k, bytes = 2 * (m * k + k * n + m * n);
    const t = opTime(p, { klass: 'matmul', flops, bytes, gemm: { batch: 1, m, n, k, scales: null }, kernel: true }, 100e12);
    expect(rel(t, bytes / (1e12 * 0.5) + 5e-6)).toBeLessThan(1e-12);
  });
  it('the lowering hands the FFN its local GEMM: m = b·s, n = d_ff / t, k = d_model', () => {
    const g = gpt22b();
    const op = lower(g, parseMesh('t:8'), makePlan('heads:t;d_ff:t', { microbatches: 2 })).ops.find((o) => o.name === 'decoder.ffn.w1' && o.phase === 'forward')!;
    expect(op.gemm).toEqual({ batch: 1, m: 2 * 2048, n: (4 * 6144) / 8, k: 6144, scales: null });
  });
});

describe('communication, by hand', () => {
  it('pure data parallelism sends 2(n−1)/n · 2Ψ bytes per step and takes the alpha-beta time of its allreduces', () => {
    const g = buildGraph(parseModelSpec({ name: 'dp', layers: 2, dModel: 256, heads: 4, dKv: 64, dFf: 1024, vocab: 1000, seqLen: 64, batch: 16, dtype: 'bf16', dropout: false }));
    const mesh = parseMesh('d:8');
    const p = handProfile();
    const prog = lower(g, mesh, makePlan('batch:d'));
    const psi = paramCount(g);
    const syncs = prog.ops.filter((o) => o.phase === 'sync');
    const bytes = syncs.reduce((s, o) => s + o.collectives.reduce((x, c) => x + c.sent, 0) * o.count, 0);
    expect(rel(bytes, ((2 * 7) / 8) * 2 * psi)).toBeLessThan(1e-12);
    // One allreduce per weight tensor per layer: 2(n−1)/n·B/(β·η) + 2(n−1)·α + the call's own latency.
    let byHand = 0;
    for (const o of syncs) for (const c of o.collectives) byHand += o.count * (((2 * 7) / 8) * c.bytes / (50e9 * 0.8) + 2 * 7 * 2e-6 + 10e-6);
    const t = syncs.reduce((s, o) => s + o.collectives.reduce((x, c) => x + collectiveTime(p, mesh, c), 0) * o.count, 0);
    expect(rel(t, byHand)).toBeLessThan(1e-12);
    // With no overlap the whole sync is exposed; with full overlap only its last bucket (one layer's share).
    // The only other collective is the 4-byte loss allreduce of the forward (for reporting).
    const others = prog.ops.filter((o) => o.phase !== 'sync').flatMap((o) => o.collectives.map((c) => ({ c, count: o.count })));
    expect(others.map(({ c }) => `${c.kind} ${c.bytes}`)).toEqual(['allreduce 4']);
    const loss = 2 * 7 * 2e-6 + 10e-6 + ((2 * 7) / 8) * 4 / (50e9 * 0.8);
    const e0 = price(prog, p);
    const e1 = price(prog, handProfile({ overlap: 1, levels: [{ name: 'one', devices: 1e9, link: { bandwidth: 1e15, latency: 0 } }], collectiveLatency: 0 }));
    expect(rel(e0.time.exposedCommunication, t + loss)).toBeLessThan(1e-12);
    expect(e1.time.exposedCommunication).toBeLessThan(e1.time.compute);
  });
  it('Megatron\'s tensor parallelism (Shoeybi et al. 2019, Fig. 3: f and g): two allreduces of b·s·h in each layer\'s forward, two in its backward; tensorParallelOverlap hides the backward\'s only', () => {
    const L = 2, b = 16, s = 64, h = 256;
    const g = buildGraph(parseModelSpec({ name: 'tp', layers: L, dModel: h, heads: 4, dKv: 64, dFf: 4 * h, vocab: 1000, seqLen: s, batch: b, dtype: 'bf16', dropout: false }));
    const mesh = parseMesh('t:4');
    const prog = lower(g, mesh, makePlan('heads:t;d_ff:t'));
    const colls = prog.ops.flatMap((o) => o.collectives.map((c) => ({ phase: o.phase, kind: c.kind, bytes: c.bytes, count: o.count })));
    for (const phase of ['forward', 'backward'] as const) {
      const mine = colls.filter((c) => c.phase === phase);
      expect(mine.reduce((n, c) => n + c.count, 0)).toBe(2 * L);
      for (const c of mine) expect([c.kind, c.bytes]).toEqual(['allreduce', b * s * h * 2]);
    }
    expect(colls.every((c) => c.phase === 'forward' || c.phase === 'backward')).toBe(true);
    // One allreduce of b·s·h 2-byte values on a ring of 4: 2(n−1)/n · B/(β·η) + 2(n−1)·α + the call's latency.
    const one = ((2 * 3) / 4) * (b * s * h * 2) / (50e9 * 0.8) + 2 * 3 * 2e-6 + 10e-6;
    // The forward's are always exposed (the next op reads them); o of the backward's hide.
    for (const o of [0, 0.5, 1]) {
      const e = price(prog, handProfile({ tensorParallelOverlap: o }));
      expect(rel(e.time.exposedCommunication, 2 * L * one + (1 - o) * 2 * L * one)).toBeLessThan(1e-12);
    }
  });
  it('a collective across two levels runs level by level: inside at the fast link, across on the inner group\'s share', () => {
    const p = handProfile({ levels: [
      { name: 'node', devices: 4, link: { bandwidth: 100e9, latency: 1e-6 } },
      { name: 'net', devices: 1e9, link: { bandwidth: 10e9, latency: 5e-6 } },
    ] });
    const mesh = parseMesh('a:2;b:4');
    const inner = collectiveTime(p, mesh, { kind: 'allgather', mask: 2, sent: 1e9 });
    const both = collectiveTime(p, mesh, { kind: 'allgather', mask: 3, sent: 1e9 });
    expect(inner).toBeCloseTo(1e9 / 100e9 + 3 * 1e-6 + 10e-6, 12);
    // Allgather of a buffer B = 1e9 · 8/7 (what a flat ring of 8 would send as 1e9): 3/4 · B inside
    // at 100 GB/s, then 1/2 · B/4 across at 10 GB/s; 3 steps at 1 µs, 1 at 5 µs, one call.
    const B = (1e9 * 8) / 7;
    expect(both).toBeCloseTo((0.75 * B) / 100e9 + (0.5 * B) / 4 / 10e9 + 3 * 1e-6 + 5e-6 + 10e-6, 12);
  });
});

describe('recompute, by hand (Narayanan et al. 2021, Sec. 3.5: a layer\'s forward is 24bsh² + 4bs²h FLOPs)', () => {
  const [L, h, s, b] = [6, 256, 128, 8];
  const g = buildGraph(parseModelSpec({
    name: 'rc', layers: L, dModel: h, heads: 4, dKv: h / 4, dFf: 4 * h, vocab: 512, seqLen: s, batch: b, dtype: 'bf16',
    activation: 'gelu', dropout: false, flashAttention: false,
  }));
  // Matmuls at 0.9 of 100 TFLOP/s whatever their shape, everything else free: compute is matmul FLOPs.
  const flops = handProfile({ gemmHalfSize: 0, launchOverhead: 0, memoryBandwidth: 1e24, vectorFlops: undefined });
  const rate = 100e12 * 0.9;
  const compute = (mesh: string, layout: string, recompute: 'none' | 'selective' | 'minimal' | 'full', microbatches = 1, profile = flops) =>
    estimatePlan(g, parseMesh(mesh), makePlan(layout, { recompute, microbatches }), profile).time.compute;
  for (const [mesh, layout, t] of [['d:1', '', 1], ['t:4', 'heads:t;d_ff:t', 4]] as const) {
    it(`full recompute adds one forward of every layer, selective only QKᵀ and AV (4bs²h), on ${mesh}`, () => {
      for (const M of [1, 2]) {
        const none = compute(mesh, layout, 'none', M);
        expect(rel(compute(mesh, layout, 'full', M) - none, (L * (24 * b * s * h * h + 4 * b * s * s * h)) / t / rate)).toBeLessThan(1e-9);
        expect(rel(compute(mesh, layout, 'selective', M) - none, (L * 4 * b * s * s * h) / t / rate)).toBeLessThan(1e-9);
        // Minimal runs no projection again: its matmuls are selective's; its elementwise ops are free here.
        expect(rel(compute(mesh, layout, 'minimal', M) - none, (L * 4 * b * s * s * h) / t / rate)).toBeLessThan(1e-9);
      }
    });
    it(`full recompute as XLA compiles it (fullRecompute 'needed') leaves out the MLP's output projection (8bsh²) and its reduction, on ${mesh}`, () => {
      // The MLP's output feeds only the residual sum, whose backward reads nothing: dead code in the rerun.
      const needed: HardwareProfile = { ...flops, fullRecompute: 'needed' };
      const est = (recompute: 'none' | 'full', p: HardwareProfile, M = 1) => estimatePlan(g, parseMesh(mesh), makePlan(layout, { recompute, microbatches: M }), p);
      const rerun = L * (16 * b * s * h * h + 4 * b * s * s * h);
      for (const M of [1, 2]) {
        expect(rel(est('full', needed, M).time.compute - est('none', needed, M).time.compute, rerun / t / rate)).toBeLessThan(1e-9);
      }
      // The FLOPs it reports are the ones it runs: per device, and over the mesh.
      expect(rel(est('full', needed).flops.perDevice - est('none', needed).flops.perDevice, rerun / t)).toBeLessThan(1e-12);
      expect(rel(est('full', needed).flops.matmulPerStep - est('none', needed).flops.matmulPerStep, rerun)).toBeLessThan(1e-12);
      // Under tensor parallelism the projection's output is a partial sum: its all-reduce of bsh
      // 2-byte elements (2(t−1)/t of the buffer sent) is not run again either.
      const dropped = est('full', flops).communication.bytesPerDevice - est('full', needed).communication.bytesPerDevice;
      expect(dropped).toBeCloseTo(t === 1 ? 0 : L * ((2 * (t - 1)) / t) * 2 * b * s * h, 3);
    });
    it(`minimal recompute also runs the elementwise ops again: between selective and full once memory traffic costs, on ${mesh}`, () => {
      const hbm = handProfile({ gemmHalfSize: 0, launchOverhead: 0, memoryBandwidth: 1e12, vectorFlops: undefined });
      const [sel, min, full] = (['selective', 'minimal', 'full'] as const).map((r) => compute(mesh, layout, r, 1, hbm));
      expect(min).toBeGreaterThan(sel);
      expect(min).toBeLessThan(full);
    });
  }
});

describe('pipelines', () => {
  const g = buildGraph(parseModelSpec({ name: 'pp', layers: 8, dModel: 256, heads: 4, dKv: 64, dFf: 1024, vocab: 512, seqLen: 64, batch: 32, dtype: 'bf16', dropout: false }));
  const mesh = parseMesh('p:4');
  // No launch cost, no GEMM shape curve and links that cost nothing: a microbatch's work is the
  // same whatever the microbatch count (and HBM so fast that re-reading weights per microbatch
  // costs nothing), so M · t_mb is one number C for every plan below.
  const fast = handProfile({ levels: [{ name: 'one', devices: 1e9, link: { bandwidth: 1e18, latency: 0 } }], collectiveLatency: 0, gemmHalfSize: 0, launchOverhead: 0, memoryBandwidth: 1e18 });
  it('the bubble is (p−1)/(V·m) of the ideal step, m microbatches of the slowest stage', () => {
    const runs = ([[4, 1], [8, 1], [8, 2], [4, 2], [16, 2]] as const).map(([M, V]) => ({ M, V, e: estimatePlan(g, mesh, makePlan('layers:p', { microbatches: M, virtualStages: V }), fast) }));
    const C = (runs[0].e.time.bubble * 1 * 4) / 3;
    for (const { M, V, e } of runs) {
      // (to 1e-7: the sends at 1e18 B/s still take picoseconds, V times more when interleaved)
      expect(rel(e.time.bubble, ((4 - 1) / (V * M)) * C)).toBeLessThan(1e-7);
      // The ideal step is the compute less the optimizer's, which no microbatch count changes.
      expect(Math.abs(e.time.compute - runs[0].e.time.compute)).toBeLessThan(1e-7 * C);
      expect(e.time.compute).toBeGreaterThan(C);
    }
  });
  it('interleaving sends V times as many messages', () => {
    const one = estimatePlan(g, mesh, makePlan('layers:p', { microbatches: 4 }), getDevice('a100-80g'));
    const two = estimatePlan(g, mesh, makePlan('layers:p', { microbatches: 4, virtualStages: 2 }), getDevice('a100-80g'));
    expect(two.communication.bytesPerDevice).toBeCloseTo(2 * one.communication.bytesPerDevice, 6);
  });
  it('holds the embedding on the first stage and the head on the last, and prices the busier one', () => {
    const big = buildGraph(parseModelSpec({ name: 'v', layers: 4, dModel: 256, heads: 4, dKv: 64, dFf: 1024, vocab: 65536, seqLen: 64, batch: 8, dtype: 'bf16', dropout: false }));
    const p = lower(big, parseMesh('p:2'), makePlan('layers:p', { microbatches: 2 }));
    const layer = 4 * 256 * 256 + 2 * 256 * 1024 + 4 * 256; // attention, FFN, two norms
    const head = 65536 * 256 + 2 * 256; // softmax weight and the final norm
    const embed = 65536 * 256 + 64 * 256; // token and position embeddings
    const first = 2 * (2 * layer + embed), last = 2 * (2 * layer + head);
    // The last stage also keeps the logits (b·s·vocab), so it is the busier one here.
    expect(first).not.toBe(last);
    expect(p.memory.params).toBe(last);
    expect(p.memory.activations).toBeGreaterThan(8 / 2 * 64 * 65536 * 2);
  });
  it('refuses interleaving that the layers or microbatches cannot take', () => {
    expect(() => lower(g, mesh, makePlan('layers:p', { microbatches: 4, virtualStages: 3 }))).toThrow(/virtual stages/);
    expect(() => lower(g, mesh, makePlan('layers:p', { microbatches: 2, virtualStages: 2 }))).toThrow(/divisible/);
    expect(() => lower(g, mesh, makePlan('batch:p', { virtualStages: 2 }))).toThrow(/pipeline/);
  });
});

describe('the fast pricer caches the strategy terms by ZeRO stage', () => {
  it('so they must not depend on the microbatch count: the pricer equals the estimate on every microbatch count', () => {
    const g = gpt22b({ layers: 2, batch: 64 });
    const mesh = parseMesh('2x4');
    const pr = makePricer(g, mesh, getDevice('a100-80g'));
    for (const zero of [0, 1, 2, 3] as const) for (const M of [1, 2, 8]) {
      const plan = makePlan('batch:rows;heads:cols;d_ff:cols', { zero, microbatches: M, sequenceParallel: true });
      const e = estimatePlan(g, mesh, plan, getDevice('a100-80g'));
      const f = pr(plan);
      expect(rel(f.step, e.time.step)).toBeLessThan(1e-12);
      expect(rel(f.bytesPerDevice, e.communication.bytesPerDevice)).toBeLessThan(1e-12);
      expect(rel(f.memory, e.memory.total)).toBeLessThan(1e-12);
    }
  });
});
