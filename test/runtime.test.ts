import fc from 'fast-check';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { getDevice } from '../src/cost/presets.js';
import { lower } from '../src/lower/lower.js';
import { makePlan } from '../src/lower/plan.js';
import { parseMesh } from '../src/mesh/mesh.js';
import { buildGraph } from '../src/model/graph.js';
import { getPreset } from '../src/model/presets.js';
import { DeviceFault, Executor, initBackend, randomBatches, runPlan } from '../src/runtime/index.js';
import { train } from '../src/runtime/train.js';
import { DEFAULT_ADAM } from '../src/runtime/adam.js';
import { validLayout } from './support/arbitraries.js';
import { cli } from './support/cli.js';

const tiny = getPreset('tiny');
const graph = buildGraph(tiny);
const tpu = getDevice('tpu-v2');

describe('the simulated mesh', () => {
  it('a layout never changes the mathematics: after 3 Adam steps loss and every parameter match the unsplit model to 1e-4', async () => {
    const meshes = ['1', '2', '2x2', '2x4', '2x2x2'].map(parseMesh);
    const arb = fc.constantFrom(...meshes).chain((mesh) => fc.tuple(
      fc.constant(mesh), validLayout(graph, mesh),
      fc.constantFrom(0, 1, 2, 3), fc.constantFrom('none', 'selective', 'minimal', 'full'), fc.constantFrom(1, 2),
    ));
    await fc.assert(fc.asyncProperty(arb, async ([mesh, layout, zero, recompute, microbatches]) => {
      const plan = makePlan(layout, { zero, recompute, microbatches });
      const perReplica = tiny.batch / (layout.get('batch') ?? []).reduce((p, a) => p * mesh.axes.find((x) => x.name === a)!.size, 1);
      fc.pre(perReplica % microbatches === 0);
      const r = await runPlan({ spec: tiny, mesh, plan, steps: 3, device: tpu, check: true, backend: 'wasm' });
      expect(r.check!.maxRelativeError).toBeLessThan(1e-4);
      expect(r.steps.every((s) => Number.isFinite(s.loss))).toBe(true);
    }), { numRuns: 14 });
  });

  it('each collective sends, on each device, the bytes the lowering counts for it', async () => {
    await initBackend('wasm');
    for (const [m, l, opts] of [
      ['2x2', 'batch:rows;heads:cols;d_ff:cols;vocab:cols', { zero: 0 }],
      ['2x4', 'batch:cols;d_model:rows', { zero: 2, microbatches: 2 }],
      ['2x2x2', 'layers:x;batch:y;heads:z', { microbatches: 2 }],
      ['2x2', 'length:rows;batch:cols', { zero: 3, recompute: 'full' }],
    ] as const) {
      const program = lower(graph, parseMesh(m), makePlan(l, opts as never));
      const ex = new Executor(program, { seed: 1, adam: DEFAULT_ADAM, trace: false });
      ex.step(randomBatches(graph, 1)(0));
      let checked = 0;
      for (const rec of program.ops) {
        rec.collectives.forEach((c, i) => {
          const key = `${rec.phase}|${rec.name}#${i}`;
          // In a pipeline the embedding runs on the first stage only and the head on the last.
          const stage = program.stages > 1 && (rec.block === 'embed' || rec.block === 'head') ? (rec.block === 'embed' ? 0 : program.stages - 1) : -1;
          // Pipeline sends: activations leave every stage but the last, gradients every stage but the first
          // (the lowering prices a middle stage, which does both).
          const sends = rec.kind === 'send' ? (rec.phase === 'forward' ? (s: number) => s < program.stages - 1 : (s: number) => s > 0) : () => true;
          const devices = ex.devices.filter((d) => (stage < 0 || d.stage === stage) && sends(d.stage));
          const sent = devices.map((d) => d.sent.get(key) ?? 0);
          const expected = c.sent * rec.count;
          // A ring cuts the buffer into one piece per device: when its elements do not divide (the
          // 4-byte loss), pieces differ by a float, and only the group's total is exact.
          if (c.kind === 'send' || (c.bytes / 4) % c.groupSize === 0) {
            expect([m, l, key, sent]).toEqual([m, l, key, sent.map(() => expected)]);
          } else {
            expect([m, l, key, sent.reduce((a, b) => a + b, 0)]).toEqual([m, l, key, expected * devices.length]);
          }
          checked++;
        });
      }
      expect(checked).toBeGreaterThan(0);
    }
  });

  it('a layout that splits nothing sends nothing', async () => {
    await initBackend('wasm');
    const program = lower(graph, parseMesh('2x2'), makePlan('', { zero: 2, microbatches: 2 }));
    const ex = new Executor(program, { seed: 1, adam: DEFAULT_ADAM, trace: false });
    ex.step(randomBatches(graph, 1)(0));
    for (const d of ex.devices) expect([...d.sent.values()].reduce((a, b) => a + b, 0)).toBe(0);
  });
});

describe('training', () => {
  const mesh = parseMesh('2x2');
  const plan = makePlan('batch:rows;heads:cols;d_ff:cols');

  it('lowers the loss on text clearly below its start', async () => {
    const r = await train({ spec: tiny, mesh, plan, steps: 150, backend: 'wasm' });
    const first = r.losses[0];
    const last = r.losses.slice(-10).reduce((a, b) => a + b) / 10;
    expect(first).toBeGreaterThan(4.5);
    expect(last).toBeLessThan(first * 0.6);
  });

  it('a resumed run gives the same losses as an uninterrupted one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ms-ckpt-'));
    const whole = await train({ spec: tiny, mesh, plan, steps: 8, backend: 'wasm' });
    await train({ spec: tiny, mesh, plan, steps: 4, backend: 'wasm', save: join(dir, 'c.json') });
    const resumed = await train({ spec: tiny, mesh, plan, steps: 8, backend: 'wasm', resume: join(dir, 'c.json') });
    expect(resumed.startStep).toBe(4);
    expect(resumed.losses).toEqual(whole.losses);
  });

  it('a fault in one device names the device and the op and leaves the last checkpoint intact', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ms-fault-'));
    const ckpt = join(dir, 'c.json');
    await train({ spec: tiny, mesh, plan, steps: 2, backend: 'wasm', save: ckpt });
    const before = readFileSync(ckpt, 'utf8');
    const run = train({ spec: tiny, mesh, plan, steps: 4, backend: 'wasm', save: ckpt, resume: ckpt, fault: { device: 3, op: 'decoder.ffn.w2', step: 3 } });
    await expect(run).rejects.toThrow(DeviceFault);
    await expect(train({ spec: tiny, mesh, plan, steps: 4, backend: 'wasm', save: ckpt, resume: ckpt, fault: { device: 3, op: 'decoder.ffn.w2', step: 3 } }))
      .rejects.toThrow(/device 3 failed in op decoder\.ffn\.w2 at step 3/);
    expect(readFileSync(ckpt, 'utf8')).toBe(before);
    expect(existsSync(ckpt)).toBe(true);
  });
});

describe('mesh-search run and train', () => {
  it('run --json --check --trace: steps, each op measured beside its estimate, a Chrome trace', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ms-run-'));
    const r = cli(['run', '--mesh', '2x2', '--model', 'tiny', '--layout', 'batch:rows;d_ff:cols', '--steps', '2', '--check', '--json', '--trace', join(dir, 't.json')]);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.steps.length).toBe(2);
    expect(out.check.maxRelativeError).toBeLessThan(1e-4);
    expect(out.ops.length).toBeGreaterThan(10);
    for (const o of out.ops) expect(o.measured).toBeGreaterThan(0);
    const trace = JSON.parse(readFileSync(join(dir, 't.json'), 'utf8'));
    const tracks = new Set(trace.traceEvents.map((e: { tid: number }) => e.tid));
    expect(tracks.size).toBe(4);
    const coll = trace.traceEvents.find((e: { cat: string }) => e.cat === 'collective');
    expect(coll).toMatchObject({ ph: 'X', args: { collective: 'allreduce', axes: expect.any(Array) } });
    expect(trace.otherData.plan.layout).toBe('batch:rows;d_ff:cols');
  });

  it('run --sequence-parallel --check: the residual stream scattered over the tensor-parallel axis, equal to the unsplit model', () => {
    const r = cli(['run', '--mesh', '2x2', '--model', 'tiny', '--layout', 'batch:rows;heads:cols;d_ff:cols;vocab:cols', '--sequence-parallel', '--check', '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.plan.sequenceParallel).toBe(true);
    expect(out.check.maxRelativeError).toBeLessThan(1e-4);
    // The embedding's reduce-scatter and the layers' allgathers ran, and were timed.
    expect(out.ops.find((o: { name: string }) => o.name === 'decoder.embed').measured).toBeGreaterThan(0);
  });

  it.each([
    [['run', '--mesh', '8x16', '--model', 'tiny', '--layout', ''], /too large to simulate here/],
    [['run', '--mesh', '2x2', '--model', 'gpt3-175b', '--layout', ''], /GiB across 4 simulated devices/],
    [['train', '--mesh', '2x2', '--model', 'tiny', '--layout', 'batch:rows', '--data', '/no/such.txt'], /cannot read training text/],
    [['run', '--mesh', '2', '--model', 'ED_SPEC', '--layout', 'layers:x', '--microbatches', '2'], /pipelines \(layers on a mesh axis\) of decoder-only models only/],
  ])('refuses what it cannot run with one line and exit 2: %j', (args, why) => {
    const ed = join(mkdtempSync(join(tmpdir(), 'ms-ed-')), 'ed.json');
    writeFileSync(ed, JSON.stringify({ name: 'ed', kind: 'encoder-decoder', layers: 2, dModel: 16, heads: 4, dKv: 4, dFf: 32, vocab: 32, seqLen: 8, batch: 4, dtype: 'float32' }));
    const r = cli((args as string[]).map((a) => (a === 'ED_SPEC' ? ed : a)));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(why);
    expect(r.stderr.trim().split('\n').length).toBe(1);
  });

  it('refuses a plan file made for another model', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ms-plan-'));
    const out = join(dir, 'p.json');
    expect(cli(['--mesh', '2x2', '--model', 'tiny', '--out', out, '--json']).code).toBe(0);
    const r = cli(['run', '--plan', out, '--model', 'gpt3-125m']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/made for model tiny, not gpt3-125m/);
  });
});
