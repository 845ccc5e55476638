import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { getDevice } from '../src/cost/presets.js';
import { ENGINES } from '../src/engine/index.js';
import { makePlan } from '../src/lower/plan.js';
import { parseMesh } from '../src/mesh/mesh.js';
import { getPreset } from '../src/model/presets.js';
import { checkExport } from './engine.check.js';
import { runMain } from './support/capture.js';

const PRESETS = [
  ['transformer-5b', 'tpu-v2', '16x32'],
  ['gpt3-175b', 'a100-80g', '4x4x4x8'],
  ['llama2-70b', 'h100-sxm', '8x8'],
] as const;

describe('mesh-search --engine E --export E', () => {
  for (const engine of ENGINES) {
    it(`${engine}: on each preset, a config that passes the fixture check, or one line saying ${engine} cannot run it`, async () => {
      for (const [model, device, mesh] of PRESETS) {
        const r = await runMain(['--engine', engine, '--mesh', mesh, '--model', model, '--device', device, '--export', engine]);
        // Progress lines (a search past 2 s on a loaded machine) are not the answer.
        const lines = r.stderr.trim().split('\n').filter((l) => !/^mesh-search: \[[# ]+\]/.test(l));
        expect(lines, `${engine} ${model}: ${r.stderr}`).toHaveLength(1);
        if (r.code !== 0) {
          expect([2, 3]).toContain(r.code);
          expect(r.stdout).toBe('');
          expect(lines[0]).toMatch(new RegExp(`^mesh-search: \\S+ cannot run ${getPreset(model).name}`));
          continue;
        }
        const m = /best \S+ plan (\S+) zero (\d) recompute (\w+) microbatches (\d+):/.exec(lines[0]);
        expect(m, lines[0]).not.toBeNull();
        const plan = makePlan(m![1] === '(replicated)' ? '' : m![1], { zero: Number(m![2]), recompute: m![3], microbatches: Number(m![4]) });
        const input = { plan, mesh: parseMesh(mesh), spec: getPreset(model), profile: getDevice(device) };
        expect(checkExport(engine, r.stdout, input), `${engine} ${model}`).toEqual([]);
      }
    }, 240_000);
  }

  it("the headline command's best Mesh-TF plan is the paper's, and Mesh-TF can run it", async () => {
    const r = await runMain(['--mesh', '16x32', '--model', 'transformer-5b', '--engine', 'mesh-tf', '--json']);
    expect(r.code).toBe(0);
    const best = JSON.parse(r.stdout).best;
    expect(best.plan).toEqual({ layout: 'batch:rows;heads:cols;d_ff:cols;vocab:cols', zero: 0, recompute: 'none', microbatches: 1, sequenceParallel: false, virtualStages: 1 });
    // Without --engine the best plan uses ZeRO, which Mesh-TF has not.
    const free = JSON.parse((await runMain(['--mesh', '16x32', '--model', 'transformer-5b', '--json'])).stdout).best;
    expect(free.plan.zero).toBeGreaterThan(0);
    expect(free.time.step).toBeLessThan(best.time.step);
  });

  it('rejects an unknown engine and --export with --json in one line', async () => {
    const a = await runMain(['--mesh', '4x8', '--model', 'mtf-lm-s0', '--engine', 'jax']);
    expect(a.code).toBe(2);
    const b = await runMain(['--mesh', '4x8', '--model', 'mtf-lm-s0', '--export', 'maxtext', '--json']);
    expect(b.code).toBe(2);
    expect(b.stderr).toMatch(/does not go with --json/);
  });

  it('estimate --engine says whether the engine can express the plan, and why not', async () => {
    const args = ['estimate', '--mesh', '16x32', '--model', 'transformer-5b', '--layout', 'batch:rows;heads:cols', '--zero', '3', '--recompute', 'selective', '--engine', 'mesh-tf', '--json'];
    const r = await runMain(args);
    expect(r.code).toBe(0);
    const e = JSON.parse(r.stdout).engine;
    expect(e.expressible).toBe(false);
    expect(e.reasons.join('\n')).toMatch(/no ZeRO: zero 3/);
    expect(e.reasons.join('\n')).toMatch(/recompute selective/);
    const ok = JSON.parse((await runMain(['estimate', '--mesh', '16x32', '--model', 'transformer-5b', '--layout', 'batch:rows;d_ff:cols;heads:cols;vocab:cols', '--engine', 'mesh-tf', '--json'])).stdout).engine;
    expect(ok).toEqual({ name: 'mesh-tf', expressible: true, reasons: [] });
  });

  it('report --engine refuses in one line a model the engine cannot build', async () => {
    const r = await runMain(['report', '--mesh', '4x8', '--model', 'llama2-7b', '--device', 'h100-sxm', '--engine', 'mesh-tf', '--out', join(tmpdir(), 'mesh-search-engine-report.html')]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toEqual(['mesh-search: Mesh-TF cannot run llama2-7b: Mesh-TF has no rotary position embedding (it has learned)']);
  });

  it('estimate --engine deepspeed prices ZeRO 0 and 1 with the gradient sync after the backward: nothing of it hidden', async () => {
    const base = ['estimate', '--mesh', '8x8', '--model', 'gpt3-1.3b', '--device', 'a100-80g', '--layout', 'batch:rows+cols', '--json'];
    for (const zero of ['0', '1']) {
      const plain = JSON.parse((await runMain([...base, '--zero', zero])).stdout);
      const ds = JSON.parse((await runMain([...base, '--zero', zero, '--engine', 'deepspeed'])).stdout);
      // Pure data parallelism: every collective is gradient sync, so all of it is exposed.
      expect(ds.time.exposedCommunication).toBeCloseTo(ds.time.communication, 9);
      expect(plain.time.exposedCommunication).toBeLessThan(plain.time.communication);
      expect(ds.time.step).toBeGreaterThan(plain.time.step);
      // DeepSpeed runs eager PyTorch kernels: compute at the preset's eagerCompute of the fused speed
      // (launch costs unscaled), the communication as it is.
      const eager = getDevice('a100-80g').eagerCompute!;
      expect(ds.time.compute / plain.time.compute).toBeGreaterThan(1 / eager - 0.02);
      expect(ds.time.compute / plain.time.compute).toBeLessThanOrEqual(1 / eager + 1e-9);
      expect(ds.time.communication).toBeCloseTo(plain.time.communication, 12);
    }
    // ZeRO-3 (partitioned gradients, overlap_comm): DeepSpeed overlaps as the profile says.
    const z3 = JSON.parse((await runMain([...base, '--zero', '3', '--engine', 'deepspeed'])).stdout);
    expect(z3.time.exposedCommunication).toBeLessThan(z3.time.communication);
  });
});
