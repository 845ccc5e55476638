import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { estimatePlan } from '../src/cost/estimatePlan.js';
import { getDevice } from '../src/cost/presets.js';
import { makePlan, planToJson } from '../src/lower/plan.js';
import { parseMesh } from '../src/mesh/mesh.js';
import { buildGraph } from '../src/model/graph.js';
import { getPreset } from '../src/model/presets.js';
import { runMain } from './support/capture.js';

/**
 * The plan options of the cost-model issue on the command line: --sequence-parallel,
 * --virtual-stages and --node-size reach the estimate, and a plan file's own values are kept.
 */
const GPT = ['--model', 'gpt3-175b', '--device', 'a100-80g'];
const MESH = 'pp:4;tp:8';
const LAYOUT = 'layers:pp;heads:tp;d_ff:tp';
const makePlanJson = () => planToJson(makePlan(LAYOUT, { recompute: 'selective', microbatches: 16 }));
const json = async (args: string[]) => {
  const r = await runMain(args);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout);
};

describe('plan flags', () => {
  const graph = buildGraph(getPreset('gpt3-175b'));
  const mesh = parseMesh(MESH);
  const a100 = getDevice('a100-80g');
  const opts = { recompute: 'selective' as const, microbatches: 16 };

  it('--sequence-parallel and --virtual-stages price the plan that has them', async () => {
    const e = await json(['estimate', '--mesh', MESH, ...GPT, '--layout', LAYOUT, '--recompute', 'selective', '--microbatches', '16', '--sequence-parallel', '--virtual-stages', '3', '--json']);
    expect(e.plan).toMatchObject({ sequenceParallel: true, virtualStages: 3 });
    const want = estimatePlan(graph, mesh, makePlan(LAYOUT, { ...opts, sequenceParallel: true, virtualStages: 3 }), a100);
    expect(e.time.step).toBe(want.time.step);
    // Not what the plan without them costs: the flags change the answer (a third of the bubble
    // with three chunks per device, the (p-1)/(V·m) of the interleaved schedule; SP's smaller activations).
    const sp = estimatePlan(graph, mesh, makePlan(LAYOUT, { ...opts, sequenceParallel: true }), a100);
    const plain = estimatePlan(graph, mesh, makePlan(LAYOUT, opts), a100);
    // (within 1%: each chunk's sends, V times as many, add to the microbatch time)
    expect(e.time.bubble / sp.time.bubble).toBeCloseTo(1 / 3, 2);
    expect(sp.memory.activations).toBeLessThan(plain.memory.activations);
  });

  it('estimate --plan keeps the plan file\'s sequence parallelism and virtual stages', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ms-flags-'));
    const out = join(dir, 'plan.json');
    const file = { plan: { ...makePlanJson(), sequenceParallel: true, virtualStages: 3 }, mesh: MESH, model: 'gpt3-175b', device: 'a100-80g' };
    writeFileSync(out, JSON.stringify(file));
    const e = await json(['estimate', '--plan', out, '--json']);
    expect(e.plan).toEqual(file.plan);
    // Flags override the file, as they do for the ZeRO stage.
    const f = await json(['estimate', '--plan', out, '--no-sequence-parallel', '--virtual-stages', '2', '--json']);
    expect(f.plan).toEqual({ ...file.plan, sequenceParallel: false, virtualStages: 2 });
  });

  it('--node-size puts that many devices in the innermost level', async () => {
    const h = ['--mesh', 'dp:8;tp:8', '--model', 'gpt3-175b', '--device', 'h100-sxm', '--layout', 'batch:dp;heads:tp;d_ff:tp', '--zero', '3', '--json'];
    const nvl72 = await json(['estimate', ...h, '--node-size', '72']);
    const dgx = await json(['estimate', ...h]);
    const base = getDevice('h100-sxm');
    const wide = { ...base, levels: [{ ...base.levels[0], devices: 72 }, ...base.levels.slice(1)] };
    const want = estimatePlan(graph, parseMesh('dp:8;tp:8'), makePlan('batch:dp;heads:tp;d_ff:tp', { zero: 3 }), wide);
    expect(nvl72.time.step).toBe(want.time.step);
    // 64 devices on NVLink move ZeRO-3's traffic faster than 8 nodes over InfiniBand.
    expect(nvl72.time.communication).toBeLessThan(dgx.time.communication);
  });

  it('refuses bad values in one line', async () => {
    for (const [args, why] of [
      [['--virtual-stages', '0'], /--virtual-stages must be an integer from 1 to 1024/],
      [['--virtual-stages', '2.5'], /--virtual-stages/],
      [['--node-size', '-1'], /--node-size must be an integer/],
      [['--node-size', String(a100.levels[1].devices)], new RegExp(`--node-size ${a100.levels[1].devices} is not smaller than a100-80g's next level`)],
    ] as const) {
      const r = await runMain(['estimate', '--mesh', MESH, ...GPT, '--layout', LAYOUT, ...args]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(why);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    }
  });
});
