import { describe, expect, it } from 'vitest';
import { estimatePlan } from '../src/cost/estimatePlan.js';
import { getDevice } from '../src/cost/presets.js';
import type { HardwareProfile } from '../src/cost/profile.js';
import { makeMesh, parseMesh, type Mesh } from '../src/mesh/mesh.js';
import { buildGraph } from '../src/model/graph.js';
import { getPreset } from '../src/model/presets.js';
import { parseModelSpec } from '../src/model/spec.js';
import { makePlan } from '../src/lower/plan.js';
import { allowedMesh, exhaustive, finestMesh, search, searchDevices } from '../src/search/index.js';
import { answer } from './search.helpers.js';

/** Every ordered factorisation of n into axes of size ≥ 2 (n itself included). */
function factorisations(n: number): number[][] {
  if (n === 1) return [[]];
  const out: number[][] = [];
  for (let f = 2; f <= n; f++) if (n % f === 0) for (const rest of factorisations(n / f)) out.push([f, ...rest]);
  return out;
}

const meshOf = (sizes: number[]): Mesh => makeMesh(sizes.map((size, i) => ({ name: `m${i}`, size })));

// Dimensions divisible by 2 and 3, so meshes of 12 devices have many valid layouts.
const spec = parseModelSpec({
  name: 'six', kind: 'decoder', layers: 6, dModel: 48, heads: 6, dKv: 8, dFf: 96, vocab: 72, seqLen: 12, batch: 12,
  activation: 'gelu', dropout: false, tiedEmbeddings: true, dtype: 'bfloat16',
});

describe('the mesh shape as part of the search', () => {
  const profiles: [string, HardwareProfile][] = [
    ['one level (tpu-v2)', getDevice('tpu-v2')],
    ['nodes of 4 (a100-80g, smaller memory)', { ...getDevice('a100-80g'), memoryBytes: 2 ** 21, levels: [{ ...getDevice('a100-80g').levels[0], devices: 4 }, getDevice('a100-80g').levels[1]] }],
    ['nodes of 2 and racks of 4', { ...getDevice('a100-80g'), levels: [
      { name: 'nvlink', devices: 2, link: { bandwidth: 300e9, latency: 3e-6 } },
      { name: 'rack', devices: 4, link: { bandwidth: 50e9, latency: 5e-6 } },
      { name: 'ib', devices: 1e9, link: { bandwidth: 25e9, latency: 1e-5 } }] }],
    // HBM so slow that norms and residuals dominate: sequence parallelism, which splits them, wins.
    // A 3x4 torus (cost/torus.ts) with slow links: which torus dimensions an axis spans depends on its place in the mesh.
    ['a 2D torus (tpu-v5e, slow ICI)', { ...getDevice('tpu-v5e'), memoryBytes: 2 ** 21, levels: [{ ...getDevice('tpu-v5e').levels[0], link: { bandwidth: 2e8, latency: 1e-6 } }, { ...getDevice('tpu-v5e').levels[1], link: { bandwidth: 1e8, latency: 2e-5 } }] }],
    ['slow HBM, nodes of 4 (a100-80g): sequence parallelism wins', { ...getDevice('a100-80g'), memoryBandwidth: 1e6, levels: [{ ...getDevice('a100-80g').levels[0], devices: 4 }, getDevice('a100-80g').levels[1]] }],
  ];
  for (const [name, profile] of profiles) {
    it(`finds the best of a brute force over every allowed mesh of 12 devices and every plan on it: ${name}`, async () => {
      const meshes = factorisations(12).map(meshOf).filter((m) => allowedMesh(m, profile));
      // The rule bites: 4x3 (an axis of stride 3 across units of 4) is out under nodes of 4.
      if (profile.levels[0].devices === 4) expect(meshes.map((m) => m.axes.map((a) => a.size).join('x'))).not.toContain('4x3');
      let best: { step: number; memory: number } | null = null;
      for (const mesh of meshes) {
        const r = exhaustive({ spec, mesh, profile, top: 1, paretoSlack: 0, symmetry: true });
        if (!r.best) continue;
        const cand = { step: r.best.time.step, memory: r.best.memory.total };
        if (!best || cand.step < best.step || (cand.step === best.step && cand.memory < best.memory)) best = cand;
      }
      const got = await searchDevices({ spec, devices: 12, profile, workers: 0, top: profile.levels[0].torus ? 24 : 3 });
      expect(best).not.toBeNull();
      expect(got.best!.time.step).toBe(best!.step);
      expect(got.best!.memory.total).toBe(best!.memory);
      if (name.includes('sequence parallelism wins')) expect(got.best!.plan.sequenceParallel).toBe(true);
      // The reported mesh is in the space, and its plan estimated on it is what was reported.
      const mesh = parseMesh(got.mesh);
      expect(mesh.size).toBe(12);
      expect(allowedMesh(mesh, profile)).toBe(true);
      const again = estimatePlan(buildGraph(spec), mesh, makePlan(got.best!.plan.layout, got.best!.plan), profile);
      expect(again.time.step).toBe(got.best!.time.step);
      // One entry per mesh and plan (on a torus several searches reach the same meshes), best first.
      const keys = got.top.map((e) => JSON.stringify([e.mesh, e.plan]));
      expect(new Set(keys).size).toBe(keys.length);
      expect(got.top.map((e) => e.time.step)).toEqual([...got.top.map((e) => e.time.step)].sort((a, b) => a - b));
    });
  }

  it('on a torus, searches every order of the slice\'s primes and lists each mesh and plan once', async () => {
    // 12 chips of tpu-v5e (a 3x4 torus): three orders of 3, 2, 2, which all reach the one-axis mesh.
    const got = await searchDevices({ spec, devices: 12, profile: getDevice('tpu-v5e'), workers: 0, top: 40 });
    const keys = got.top.map((e) => JSON.stringify([e.mesh, e.plan]));
    expect(keys.length).toBe(40);
    expect(new Set(keys).size).toBe(keys.length);
    expect(got.top.some((e) => e.mesh.axes.length === 1)).toBe(true);
  });

  it('on a torus, the merged Pareto front is the whole space\'s: within the slack of the best of all orders', async () => {
    // gpt3-1.3b on 24 chips of tpu-v5e: an order whose best is slower lists plans past 1.25x the best of all.
    for (const paretoSlack of [0.25, 0.1]) {
      const got = await searchDevices({ spec: getPreset('gpt3-1.3b'), devices: 24, profile: getDevice('tpu-v5e'), workers: 0, top: 3, paretoSlack });
      expect(got.pareto.length).toBeGreaterThan(1);
      for (const e of got.pareto) expect(e.time.step).toBeLessThanOrEqual(got.best!.time.step * (1 + paretoSlack));
      // And no entry dominated by another.
      for (const e of got.pareto) expect(got.pareto.some((f) => f !== e && f.time.step <= e.time.step && f.memory.total <= e.memory.total)).toBe(false);
    }
  });

  it('searches the finest mesh: prime axes inside each level', () => {
    const f = finestMesh(1024, getDevice('a100-80g'));
    expect(f.mesh.axes.map((a) => a.size)).toEqual(new Array(10).fill(2));
    expect(f.segment).toEqual([1, 1, 1, 1, 1, 1, 1, 0, 0, 0]);
    expect(finestMesh(512, getDevice('tpu-v2')).mesh.axes).toHaveLength(9);
    expect(() => finestMesh(12, getDevice('a100-80g'))).toThrow(/not a whole number of a100-80g's nvlink units of 8 devices/);
    // 2^12 devices make 12 prime axes, the most the search takes; 2^13 are refused in the user's terms.
    expect(finestMesh(4096, getDevice('tpu-v2')).mesh.axes).toHaveLength(12);
    expect(() => finestMesh(8192, getDevice('tpu-v2'))).toThrow(/^--devices 8192 factors into 13 prime axes \(2x2x2x2x2x2x2x2x2x2x2x2x2\); the search handles at most 12/);
    expect(() => finestMesh(1e9, getDevice('tpu-v2'))).toThrow(/^--devices 1000000000 factors into 18 prime axes/);
  });
});

describe('many axes and many workers', () => {
  const s = { spec: getPreset('gpt3-1.3b'), mesh: 'a:2;b:2;c:2;d:2;e:2;f:2', profile: getDevice('a100-80g'), top: 4 };

  it('gives the same best plan, top list and Pareto front with 0, 1 and 2 workers on a 6-axis mesh', async () => {
    const inline = answer(await search({ ...s, workers: 0 }));
    expect(answer(await search({ ...s, workers: 1 }))).toEqual(inline);
    expect(answer(await search({ ...s, workers: 2 }))).toEqual(inline);
  });

  it('searches 12 axes, and refuses 13 in one line', async () => {
    // Only batch divides by 2 here, so a valid layout puts batch on some nvlink axes (the inner 3)
    // and some InfiniBand axes (the outer 9), and by symmetry only how many of each matters:
    // 40 layouts, each estimated by the lowering (not the search's pricer) at every strategy.
    const odd = parseModelSpec({
      name: 'odd', kind: 'decoder', layers: 3, dModel: 15, heads: 3, dKv: 5, dFf: 45, vocab: 81, seqLen: 9, batch: 4096,
      activation: 'gelu', dropout: false, tiedEmbeddings: false, dtype: 'bfloat16',
    });
    const twelve = Array.from({ length: 12 }, (_, i) => `a${i}:2`).join(';');
    const profile = getDevice('h100-sxm');
    const r = await search({ spec: odd, mesh: twelve, profile, workers: 0, top: 2 });
    const mesh = parseMesh(twelve);
    const graph = buildGraph(odd);
    let best = Infinity;
    for (let ib = 0; ib <= 9; ib++) {
      for (let nv = 0; nv <= 3; nv++) {
        const axes = [...Array.from({ length: ib }, (_, i) => `a${i}`), ...Array.from({ length: nv }, (_, i) => `a${9 + i}`)];
        const layout = axes.length ? `batch:${axes.join('+')}` : '';
        for (const zero of axes.length ? [0, 1, 2, 3] : [0]) {
          for (const recompute of ['none', 'selective', 'full']) {
            for (let m = 1; (4096 / 2 ** axes.length) % m === 0; m *= 2) {
              const e = estimatePlan(graph, mesh, makePlan(layout, { zero, recompute, microbatches: m }), profile);
              if (e.feasible) best = Math.min(best, e.time.step);
            }
          }
        }
      }
    }
    expect(r.best!.time.step).toBe(best);
    expect(r.searched.valid).toBeGreaterThan(0);
    await expect(search({ spec: odd, mesh: `${twelve};z:2`, profile: getDevice('h100-sxm'), workers: 0 })).rejects.toThrow(/at most 12/);
  });
});

describe('a time limit', () => {
  it('returns the best plan found with a proven lower bound at or below the true optimum', async () => {
    const s = { spec: getPreset('gpt3-175b'), mesh: '4x4x4x8', profile: getDevice('a100-80g'), workers: 0 };
    const full = await search(s);
    expect(full.searched.gap).toBeUndefined();
    const cut = await search({ ...s, timeLimit: 1e-3 });
    expect(cut.searched.lowerBound).toBeDefined();
    expect(cut.searched.lowerBound!).toBeLessThanOrEqual(full.best!.time.step);
    if (cut.best) {
      expect(cut.best.time.step).toBeGreaterThanOrEqual(full.best!.time.step);
      expect(cut.searched.gap).toBeCloseTo(cut.best.time.step / cut.searched.lowerBound! - 1, 12);
    }
  });
});
