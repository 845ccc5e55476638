import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { HOST_MEASURED, hostLinks, hostProfile, loadHostProfile } from '../src/cost/host.js';
import { collectiveTime, networkLevel, opTime, price, priceParts } from '../src/cost/price.js';
import { getDevice } from '../src/cost/presets.js';
import { lower } from '../src/lower/lower.js';
import { makePlan } from '../src/lower/plan.js';
import { microBatchOf, strategyOps } from '../src/lower/instantiate.js';
import { linAt, type OpRecord } from '../src/lower/records.js';
import { validateProfile, type HardwareProfile } from '../src/cost/profile.js';
import { parseMesh } from '../src/mesh/mesh.js';
import { maskSize } from '../src/layout/layout.js';
import { buildGraph } from '../src/model/graph.js';
import { getPreset } from '../src/model/presets.js';
import type { LoweredOp } from '../src/lower/program.js';
import { cli } from './support/cli.js';
import fc from 'fast-check';
import { threadOwners } from '../src/runtime/threads.js';
import { groupOf } from '../src/runtime/shard.js';
import { resolveRows } from '../src/calibrate/index.js';
import { fitPhysics } from '../src/calibrate/physics.js';
import { SYNTH_CASES, synthRows } from './calibrate.helpers.js';

const measured = JSON.parse(readFileSync(HOST_MEASURED, 'utf8'));

describe('the host profile', () => {
  it('is built from bench/host.bench.mjs\'s measurements, each cited', () => {
    const p = loadHostProfile();
    expect(p.peakFlops.float32).toBe(measured.matmulFlops);
    expect(p.memoryBandwidth).toBe(measured.memoryBandwidth);
    const links = hostLinks(measured.collectives, measured.sharedMemoryBandwidth);
    expect(p.levels[0]).toMatchObject({ name: 'thread', perThread: true, link: { bandwidth: links.thread, latency: 0, reduction: 'gather' } });
    expect(p.levels[1].link).toEqual({ bandwidth: links.shared, latency: measured.sharedMemoryLatency, reduction: 'gather' });
    for (const k of ['peakFlops', 'memoryBandwidth', 'levels.shared memory', 'levels.thread', 'concurrentDevices', 'launchOverhead']) expect(p.sources[k]).toMatch(/bench\/host\.bench\.mjs/);
  });

  it('takes the shared-memory level from the ping-pong when a re-measured crossing comes out as taking no time', () => {
    const c = { ...measured.collectives, acrossSeconds: measured.collectives.withinSeconds };
    expect(hostLinks(c, 1.5e9).shared).toBe(1.5e9);
    expect(hostProfile({ ...measured, collectives: c, sharedMemoryBandwidth: 1.5e9 }).levels[1].link.bandwidth).toBe(1.5e9);
  });

  it('prices a kernel of no size at the measured per-kernel overhead, and a large one at the measured rate', () => {
    const p = hostProfile({ ...measured, kernelOverheadSeconds: 2e-5, memoryBandwidth: 1e9, matmulFlops: 1e10, matmulOverheadSeconds: 1e-4 });
    const op = (klass: string, flops: number, bytes: number) => ({ klass, flops, bytes, gemm: null, kernel: true }) as unknown as LoweredOp;
    expect(opTime(p, op('elementwise', 0, 1), 1e10)).toBeCloseTo(2e-5 + 1e-9, 12);
    expect(opTime(p, op('elementwise', 0, 1e9), 1e10)).toBeCloseTo(1 + 2e-5, 9);
    expect(opTime(p, op('matmul', 1e10, 0), 1e10)).toBeCloseTo(1 + 1e-4, 9);
  });

  it('prices the small model\'s softmax and layer norm, as the lowering records them, at the seconds per element bench/host measured', () => {
    // The softmax's efficiency, for a copy of the profile without its per-phase figures (below).
    const host = loadHostProfile();
    const p = { ...host, elementSeconds: { ...host.elementSeconds, softmax: undefined } };
    // 4 devices of batch 4: each device's attention scores are bench/host's 4x4x128x128 tensor.
    const ops = lower(buildGraph(getPreset('small')), parseMesh('x:4'), makePlan('batch:x')).ops.filter((o) => o.phase === 'forward');
    for (const [name, perElement, elements] of [['decoder.self.softmax', measured.ops.softmaxSecondsPerElement, 4 * 4 * 128 * 128], ['decoder.ln1', measured.ops.layernormSecondsPerElement, 4 * 128 * 256]] as const) {
      const op = ops.find((o) => o.name === name)!;
      const beyondLaunch = opTime(p, op, p.peakFlops.float32) - (op.kernel ? p.launchOverhead! : 0);
      // The layer norm's scale and bias (2 KiB) ride along with its 1 MiB.
      expect(Math.abs(beyondLaunch / (elements * perElement) - 1)).toBeLessThan(0.005);
    }
  });

  it('prices the small model\'s einsums, every matmul record the lowering makes of a 2-device data-parallel step, at the rate bench/host measured of them', () => {
    const p = loadHostProfile();
    const rate = measured.ops.modelEinsum.flopsPerSecond;
    expect(p.efficiency.matmul).toBeCloseTo(Math.min(1, rate / measured.matmulFlops), 12);
    // bench/host timed each einsum forward and in both backward forms at this shard: the lowering's
    // matmul records are those (no more, no fewer: the FLOPs agree), each at the measured rate plus
    // the per-kernel costs (launch, and the small-GEMM overhead of efficiencyHalfWork).
    const ops = lower(buildGraph(getPreset('small')), parseMesh('x:2'), makePlan('batch:x')).ops.filter((o) => o.klass === 'matmul' && o.phase !== 'recompute');
    const g = buildGraph(getPreset('small'));
    const size = (d: string) => (d === 'batch' ? g.dimSizes.batch / 2 : g.dimSizes[d as keyof typeof g.dimSizes]);
    let benchFlops = 0;
    for (const b of g.blocks) for (const o of b.ops.filter((x) => x.kind === 'einsum')) {
      const dims = new Set([...o.inputs, o.output].flatMap((id) => g.tensors.get(id)!.dims));
      benchFlops += 3 * (b.repeat ?? 1) * 2 * [...dims].reduce((a, d) => a * size(d), 1);
    }
    const flops = ops.reduce((a, o) => a + o.flops * o.count, 0);
    expect(flops / benchFlops).toBeCloseTo(1, 6);
    const seconds = ops.reduce((a, o) => a + (opTime(p, o, p.peakFlops.float32) - (o.kernel ? p.launchOverhead! : 0)) * o.count, 0);
    expect(Math.abs(seconds / (flops / rate) - 1)).toBeLessThan(0.02);
  });

  it('prices the activation, forward and backward, at the seconds per element bench/host measured of the runtime\'s GELU', () => {
    const p = loadHostProfile();
    const act = measured.ops.act;
    expect(p.elementSeconds?.act).toEqual({ forward: act.forwardSecondsPerElement, backward: act.backwardSecondsPerElement });
    expect(p.sources['elementSeconds.act']).toMatch(/bench\/host\.bench\.mjs/);
    // A 2-device data-parallel step: each device's GELU runs over 8 sequences x 128 positions x 1024 (d_ff).
    const ops = lower(buildGraph(getPreset('small')), parseMesh('x:2'), makePlan('batch:x')).ops.filter((o) => o.kind === 'act');
    const elements = 8 * 128 * 1024;
    const forward = ops.filter((o) => o.phase === 'forward'), backward = ops.filter((o) => o.phase === 'backward');
    expect(forward.length).toBeGreaterThan(0);
    expect(backward.length).toBeGreaterThan(0);
    for (const o of forward) expect(opTime(p, o, p.peakFlops.float32) - (o.kernel ? p.launchOverhead! : 0)).toBeCloseTo(elements * act.forwardSecondsPerElement, 12);
    for (const o of backward) expect(opTime(p, o, p.peakFlops.float32) - (o.kernel ? p.launchOverhead! : 0)).toBeCloseTo(elements * act.backwardSecondsPerElement, 12);
    // A profile file may say it too, for an elementwise kind with work only, in seconds.
    expect(() => validateProfile({ ...p, elementSeconds: { einsum: { forward: 1e-9, backward: 1e-9 } } })).toThrow(/elementSeconds\.einsum is not an elementwise op kind/);
    expect(() => validateProfile({ ...p, elementSeconds: { act: { forward: -1, backward: 1e-9 } } })).toThrow(/elementSeconds\.act\.forward must be a number from 0 to 1 s/);
    // The step's price reads the same figure: without it the step is cheaper by at least the difference.
    const program = lower(buildGraph(getPreset('small')), parseMesh('x:2'), makePlan('batch:x'));
    const without = { ...p, elementSeconds: { ...p.elementSeconds, act: undefined } };
    expect(price(program, p).time.step).toBeGreaterThan(price(program, without).time.step);
  });

  it('prices the softmax and the loss, forward and backward, at the seconds per element bench/host measured of each phase of the runtime\'s op', () => {
    const p = loadHostProfile();
    const phases = measured.ops.phases;
    // A 2-device data-parallel step: each device holds 8 of the 16 sequences; the small model's
    // attention scores are 8 x 4 heads x 128 x 128 positions and its logits 8 x 128 x 256 (its vocabulary).
    const ops = lower(buildGraph(getPreset('small')), parseMesh('x:2'), makePlan('batch:x')).ops;
    for (const [kind, elements] of [['softmax', 8 * 4 * 128 * 128], ['xent', 8 * 128 * 256]] as const) {
      expect(p.elementSeconds?.[kind]).toEqual({ forward: phases[kind].forwardSecondsPerElement, backward: phases[kind].backwardSecondsPerElement });
      expect(p.sources[`elementSeconds.${kind}`]).toMatch(/bench\/host\.bench\.mjs/);
      for (const phase of ['forward', 'backward'] as const) {
        const records = ops.filter((o) => o.kind === kind && o.phase === phase);
        expect(records.length, `${kind} ${phase}`).toBeGreaterThan(0);
        const per = phase === 'forward' ? phases[kind].forwardSecondsPerElement : phases[kind].backwardSecondsPerElement;
        for (const o of records) expect(opTime(p, o, p.peakFlops.float32) - (o.kernel ? p.launchOverhead! : 0)).toBeCloseTo(elements * per, 12);
      }
    }
    // The softmax's backward has no exponential: measured at a fifth of its forward or less, where
    // pricing it by its bytes (the forward's twice over) would make it twice the forward.
    expect(phases.softmax.backwardSecondsPerElement).toBeLessThan(phases.softmax.forwardSecondsPerElement / 5);
  });

  it('calibration slows the kinds it prices per element with the elementwise ops (synthetic rows, the rest held)', () => {
    const p = loadHostProfile();
    const slower = 1 / 0.7;
    const truth: HardwareProfile = {
      ...p,
      efficiency: { ...p.efficiency, elementwise: 0.7 * p.efficiency.elementwise, softmax: 0.7 * p.efficiency.softmax, reduction: 0.7 * p.efficiency.reduction },
      elementSeconds: Object.fromEntries(Object.entries(p.elementSeconds!).map(([k, x]) => [k, { forward: x!.forward * slower, backward: x!.backward * slower }])),
    };
    // The small model, on whichever of the synthetic plans its 4 heads allow (none over 8 devices of one axis).
    const cases = SYNTH_CASES.filter((c) => !c.mesh.includes('8'));
    expect(cases.length).toBeGreaterThanOrEqual(8);
    const { rows, rejected } = resolveRows(synthRows(truth, 'small', { cases }), p);
    expect(rejected).toEqual([]);
    const fit = fitPhysics(rows, p, ['efficiency.matmul', 'gemmHalfSize', 'launchOverhead', 'overlap', 'tensorParallelOverlap', 'levels']);
    expect(fit.summary.parameters.map((x) => x.name)).toEqual(['efficiency.elementwise']);
    // The prior pulls toward the base (2% here); with the per-element kinds left unscaled the fit
    // lands 11% off, as the elementwise ops alone must then make up their time.
    expect(Math.abs(fit.profile.efficiency.elementwise / 0.7 - 1)).toBeLessThan(0.04);
    for (const k of ['act', 'softmax', 'xent']) expect(fit.profile.elementSeconds![k]!.backward / truth.elementSeconds![k]!.backward).toBeCloseTo(1, 1);
  });

  it('prices a reduction as the device threads run it: each device posts its buffer once, each thread reads the ones it lacks and sums once for its own devices', () => {
    // One axis over all the devices, B a device's buffer, L of a group's n devices on each thread.
    const host = loadHostProfile();
    const shared = host.levels.find((l) => l.name === 'shared memory')!.link;
    const rate = host.levels.find((l) => l.name === 'thread')!.link.bandwidth;
    const B = 4 * 2 ** 20;
    for (const [n, threads, L] of [[2, 2, 1], [4, 4, 1], [8, 8, 1], [4, 2, 2], [8, 2, 4], [8, 4, 2]]) {
      const p = { ...host, concurrentDevices: threads };
      const mesh = parseMesh(`x:${n}`);
      // Each thread: L posts and n − L reads, B each, one crossing (post and read) at the shared-memory rate.
      const crossings = (n / (2 * L)) * B / shared.bandwidth;
      const fixed = (n / L - 1) * shared.latency + (p.collectiveLatency ?? 0);
      const ar = collectiveTime(p, mesh, { kind: 'allreduce', mask: 1, sent: ((2 * (n - 1)) / n) * B });
      // The allreduce sums the n buffers once (a copy, then 3B per buffer added) and copies the sum to the L − 1 others.
      expect(ar - 2 * fixed).toBeCloseTo(crossings + ((2 + 3 * (n - 1) + 2 * (L - 1)) / L) * B / rate, 9);
      // A reduce-scatter sums each device's 1/n chunk over the n.
      const rs = collectiveTime(p, mesh, { kind: 'reduce-scatter', mask: 1, sent: ((n - 1) / n) * B });
      expect(rs - fixed).toBeCloseTo(crossings + ((2 + 3 * (n - 1)) / n) * B / rate, 9);
      // An allgather is a ring's: each thread reads the n - 1 other pieces, a latency each.
      const ag = collectiveTime(p, mesh, { kind: 'allgather', mask: 1, sent: ((n - 1) / n) * B });
      expect(ag - (n - 1) * shared.latency).toBeCloseTo(((n - 1) / n) * B / shared.bandwidth, 9);
    }
  });

  it('prices the allreduces bench/host measured, on a 2x2 mesh of two threads, at their measured times: two of them exactly (they set the two links), the third within 10%', () => {
    const p = { ...loadHostProfile(), concurrentDevices: 2 };
    const mesh = parseMesh('rows:2;cols:2');
    const c = measured.collectives;
    const B = 4 * c.floats;
    // Per thread: its two devices' share of the collective, one after the other.
    const perThread = (mask: number) => 2 * collectiveTime(p, mesh, { kind: 'allreduce', mask, sent: ((2 * (maskSize(mesh, mask) - 1)) / maskSize(mesh, mask)) * B });
    expect(perThread(0b10) / c.withinSeconds).toBeCloseTo(1, 9);
    // The measured `across` has no latency in it beyond what a crossing costs: take the priced one off.
    const lat = p.levels.find((l) => l.name === 'shared memory')!.link.latency;
    expect((perThread(0b01) - 2 * 2 * lat) / c.acrossSeconds).toBeCloseTo(1, 9);
    // All four: a group spanning both threads, two devices on each, from the two links above.
    const four = perThread(0b11) - 2 * 2 * lat;
    expect(Math.abs(four / c.fourSeconds - 1)).toBeLessThan(0.1);
  });

  it('prices an axis on the thread level exactly where every one of its groups lies within one thread\'s devices (the runtime\'s assignment)', () => {
    fc.assert(fc.property(fc.array(fc.constantFrom(1, 2, 3, 4), { minLength: 1, maxLength: 4 }), fc.constantFrom(1, 2, 3, 4, 8), (sizes, cores) => {
      const p = { ...loadHostProfile(), concurrentDevices: cores };
      const mesh = parseMesh(sizes.map((n, i) => `a${i}:${n}`).join(';'));
      const owner = threadOwners(mesh, Math.min(cores, mesh.size));
      for (let a = 0; a < mesh.axes.length; a++) {
        if (mesh.axes[a].size === 1) continue;
        const within = Array.from({ length: mesh.size }, (_, d) => groupOf(mesh, [mesh.axes[a].name], d)).every((g) => g.every((d) => owner[d] === owner[g[0]]));
        expect(p.levels[networkLevel(p, mesh, a)].name).toBe(within ? 'thread' : 'shared memory');
      }
    }), { numRuns: 300, seed: 7 });
  });

  it('a collective within a thread costs its sums at the thread\'s rate, with no crossing and no latency, less than across threads', () => {
    // 2x2 on two threads: devices 0-1 on one, 2-3 on the other, so cols lies within a thread and rows across.
    const p = { ...loadHostProfile(), concurrentDevices: 2 };
    const mesh = parseMesh('rows:2;cols:2');
    const B = 4 * 2 ** 20;
    const within = collectiveTime(p, mesh, { kind: 'allreduce', mask: 0b10, sent: B });
    const across = collectiveTime(p, mesh, { kind: 'allreduce', mask: 0b01, sent: B });
    // The thread sums the two buffers once (2B + 3B) and copies the sum for the other device (2B): 7B over 2 devices.
    expect(within).toBeCloseTo((3.5 * B) / p.levels[0].link.bandwidth, 9);
    expect(across).toBeGreaterThan(within);
  });

  it('--device host prices an estimate; an unknown device names host among the presets', () => {
    const r = cli(['estimate', '--mesh', '2x2', '--model', 'small', '--layout', 'batch:rows;heads:cols', '--device', 'host', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).time.step).toBeGreaterThan(0);
    const bad = cli(['estimate', '--mesh', '2x2', '--model', 'small', '--layout', '', '--device', 'hots']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/host/);
  });

  it('devices that share a core take that many times as long for everything they run; a device\'s own per-class and per-axis times stay its own', () => {
    // Four devices on two cores, nothing hidden: kernels, the optimizer and the collectives (copies
    // on each device's own thread) all queue for the cores, so the step is exactly twice a lone core's.
    const alone = { ...getDevice('tpu-v2'), overlap: 0, tensorParallelOverlap: 0, concurrentDevices: undefined };
    const shared = { ...alone, concurrentDevices: 2 };
    const graph = buildGraph(getPreset('small'));
    const mesh = parseMesh('2x2');
    // A pipeline whose stage axis is outer to the threads' blocks of devices (each thread runs one stage); an inner one is below.
    for (const [layout, zero] of [['batch:rows+cols', 2], ['batch:rows;heads:cols;d_ff:cols', 1], ['d_model:rows;heads:cols;d_ff:cols', 0], ['batch:cols;layers:rows', 0]] as const) {
      const program = lower(graph, mesh, makePlan(layout, { zero, microbatches: layout.includes('layers') ? 4 : 1 }));
      expect(price(program, shared).time.step / price(program, alone).time.step).toBeCloseTo(2, 9);
      const a = priceParts(program, alone), b = priceParts(program, shared);
      for (const k of Object.keys(a.classTime)) expect(b.classTime[k]).toBeCloseTo(a.classTime[k], 12);
      expect(b.commTime).toEqual(a.commTime);
    }
  });

  describe('a pipeline on shared cores, against closed forms', () => {
    // A hand profile where every kernel takes exactly one second and nothing else takes any time
    // (rates at their validation limits: the rest is a billionth of it), on 2 cores.
    const lambda = 1;
    const base = getDevice('tpu-v2');
    const kernelOnly: HardwareProfile = {
      ...base, name: 'kernels only', peakFlops: { bfloat16: 1e18, float16: 1e18, float32: 1e18 }, memoryBandwidth: 1e16, vectorFlops: undefined,
      levels: [{ name: 'free', devices: 1 << 20, link: { bandwidth: 1e18, latency: 0 } }], axisLinks: undefined,
      efficiency: { matmul: 1, elementwise: 1, softmax: 1, reduction: 1 }, efficiencyHalfWork: undefined, gemmHalfSize: undefined,
      launchOverhead: lambda, collectiveLatency: 0, overlap: 0, tensorParallelOverlap: 0, concurrentDevices: 2,
    };
    const graph = buildGraph(getPreset('small'));
    const mesh = parseMesh('rows:2;cols:2;z:2');
    const M = 2;
    // The same work per device (batch, heads and layers each split in 2), with the stage axis inner
    // (z: each thread's block of 4 devices, rows fixed, holds 2 devices of each stage) or outer (rows:
    // the first thread holds stage 0's 4 devices, the second stage 1's).
    const inner = lower(graph, mesh, makePlan('batch:rows;heads:cols;layers:z', { microbatches: M }));
    const outer = lower(graph, mesh, makePlan('layers:rows;heads:cols;batch:z', { microbatches: M }));
    // Kernels a device of the slower stage launches per microbatch (an op with no work launches none), and per step in the optimizer.
    const launches = (r: { kernel: boolean; flops: number; bytes: number }) => (r.kernel && (r.flops > 0 || r.bytes > 0) ? 1 : 0);
    const perMicrobatch = (program: typeof inner) => {
      const l = program.lowering, mb = microBatchOf(l, program.plan);
      const by = { all: 0, first: 0, last: 0 };
      for (const r of [...l.forward, ...l.backward] as OpRecord[]) by[r.stage] += launches({ kernel: r.kernel, flops: linAt(r.flops, mb), bytes: linAt(r.bytes, mb) }) * r.perStage;
      return by.all + Math.max(by.first, by.last);
    };
    const optimizer = (program: typeof inner) => strategyOps(program.lowering, program.plan).filter((o) => o.kind !== 'send').reduce((n, o) => n + launches(o) * o.count, 0);
    const T = perMicrobatch(inner), O = optimizer(inner);
    const near = (x: number, y: number) => expect(Math.abs(x / y - 1)).toBeLessThan(1e-6);

    it('the two layouts have the same work per device', () => {
      expect(perMicrobatch(outer)).toBe(T);
      expect(optimizer(outer)).toBe(O);
      expect(T).toBeGreaterThan(0);
    });

    it('1F1B: a thread of one stage runs M + p − 1 microbatches of its 4 devices; a thread of both stages, the larger of its own M microbatches of 4 and the pipeline\'s M + p − 1 of 2', () => {
      near(price(outer, kernelOnly).time.step, (M + 1) * 4 * T * lambda + 4 * O * lambda);
      near(price(inner, kernelOnly).time.step, Math.max(M * 4, (M + 1) * 2) * T * lambda + 4 * O * lambda);
      // On cores of their own: M + p − 1 microbatches of one device, either way.
      const alone = { ...kernelOnly, concurrentDevices: undefined };
      for (const program of [inner, outer]) near(price(program, alone).time.step, (M + 1) * T * lambda + O * lambda);
    });

    it('one microbatch at a time (the runtime): each microbatch runs stage after stage, each stage on its threads at once', () => {
      const sequential: HardwareProfile = { ...kernelOnly, pipelineSchedule: 'sequential' };
      // Inner: each thread runs its 2 devices of stage 0, then its 2 of stage 1, on its own: 4 per microbatch.
      near(price(inner, sequential).time.step, M * (2 + 2) * T * lambda + 4 * O * lambda);
      // Outer: the first thread's 4 devices of stage 0, then the second's 4 of stage 1, the other idle: 8.
      near(price(outer, sequential).time.step, M * (4 + 4) * T * lambda + 4 * O * lambda);
      // On cores of their own: p stages one after another, per microbatch.
      const alone = { ...sequential, concurrentDevices: undefined };
      for (const program of [inner, outer]) near(price(program, alone).time.step, M * 2 * T * lambda + O * lambda);
    });

    it('the host profile runs its pipelines one microbatch at a time, as the runtime does', () => {
      expect(loadHostProfile().pipelineSchedule).toBe('sequential');
      expect(loadHostProfile().sources.pipelineSchedule).toMatch(/src\/runtime\/executor\.ts/);
    });
  });
});
