import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { getDevice } from '../src/cost/presets.js';
import { axisLink, collectiveTime, torusOf } from '../src/cost/price.js';
import type { HardwareProfile } from '../src/cost/profile.js';
import { torusShape } from '../src/cost/torus.js';
import { parseMesh } from '../src/mesh/mesh.js';
import { buildGraph } from '../src/model/graph.js';
import { makePricer } from '../src/cost/pricer.js';
import { makeSpace } from '../src/search/space.js';
import { makePlan } from '../src/lower/plan.js';
import { getPreset } from '../src/model/presets.js';

const v5p = getDevice('tpu-v5p');
const v5e = getDevice('tpu-v5e');

/**
 * JAX's assignment of logical mesh axes to a torus's physical axes (jax/_src/mesh_utils.py,
 * _create_device_mesh_for_nd_torus), written here from its description: the logical axes from the
 * last (most communication) to the first, each taking the subset of the unassigned physical axes
 * whose sizes multiply to its size, preferring more physical axes, among equals the first subset
 * in itertools.combinations order. Returns per logical axis the number of physical axes it got,
 * or null where JAX finds no exact assignment.
 */
function jaxAssignment(physical: readonly number[], logical: readonly number[]): number[] | null {
  const left = [...physical];
  const got = logical.map(() => 0);
  const subsets = (k: number, from = 0): number[][] => (k === 0 ? [[]] : left.flatMap((_, i) => (i < from ? [] : subsets(k - 1, i + 1).map((s) => [i, ...s]))));
  for (let a = logical.length - 1; a >= 0; a--) {
    if (logical[a] === 1) continue;
    let done = false;
    for (let k = physical.length; k >= 1 && !done; k--) {
      for (const s of subsets(k)) {
        if (s.reduce((p, i) => p * left[i], 1) === logical[a]) {
          got[a] = k;
          for (const i of s) left[i] = 0;
          done = true;
          break;
        }
      }
    }
    if (!done) return null;
  }
  return got;
}

const popcount = (x: number) => x.toString(2).split('').filter((c) => c === '1').length;

describe('TPU slices as tori (src/cost/torus.ts)', () => {
  it('gives the slice topologies the Cloud TPU docs list', () => {
    // Cloud TPU v5p docs, "v5p slice topologies" (chips: topology), and v4-384 (192 chips, 4x4x12).
    const v5pShapes: [number, string][] = [[4, '1x2x2'], [8, '2x2x2'], [16, '2x2x4'], [32, '2x4x4'], [64, '4x4x4'], [128, '4x4x8'], [256, '4x8x8'], [512, '8x8x8'],
      [1024, '8x8x16'], [2048, '8x16x16'], [4096, '16x16x16'], [6144, '16x16x24'], [192, '4x4x12']];
    for (const [n, shape] of v5pShapes) expect(`${n}: ${torusShape(n, v5p.levels[0].torus!).join('x')}`).toBe(`${n}: ${shape}`);
    // Cloud TPU v5e docs, "v5e slice topologies".
    const v5eShapes: [number, string][] = [[1, '1x1'], [4, '2x2'], [8, '2x4'], [16, '4x4'], [32, '4x8'], [64, '8x8'], [128, '8x16'], [256, '16x16']];
    for (const [n, shape] of v5eShapes) expect(`${n}: ${torusShape(n, v5e.levels[0].torus!).join('x')}`).toBe(`${n}: ${shape}`);
  });

  it('gives each axis as many torus dimensions as JAX assigns it, on whole-cube v5p slices and v5e slices, where the inner axis is whole dimensions (MaxText\'s fsdp x tensor meshes)', () => {
    let compared = 0;
    for (const [profile, sizes] of [[v5p, [64, 128, 256, 512, 1024, 2048, 4096]], [v5e, [16, 32, 64, 128, 256]]] as const) {
      for (const n of sizes) {
        const shape = torusShape(n, profile.levels[0].torus!);
        // Inner axes made of the fastest dimensions: 1, the last, the last two, ...
        for (let k = 0; k <= shape.length; k++) {
          const tensor = shape.slice(shape.length - k).reduce((a, b) => a * b, 1);
          const mesh = parseMesh(`fsdp:${n / tensor};tensor:${tensor}`);
          const t = torusOf(profile, mesh)!;
          const jax = jaxAssignment(shape, [n / tensor, tensor])!;
          expect(jax).not.toBeNull();
          expect(`${shape.join("x")} ${mesh.axes.map((a) => a.size).join("x")}: ${[popcount(t.spans[0]), popcount(t.spans[1])]}`).toBe(`${shape.join("x")} ${mesh.axes.map((a) => a.size).join("x")}: ${jax}`);
          compared++;
        }
      }
    }
    expect(compared).toBeGreaterThan(30);
    // Under a cube JAX may differ: on v5p-32 (2x2x4) it gives a tensor axis of 4 the two short dimensions, this rule the long one.
    expect(jaxAssignment([2, 2, 4], [4, 4])).toEqual([1, 2]);
    expect(torusOf(v5p, parseMesh('fsdp:4;tensor:4'))!.spans.map(popcount)).toEqual([2, 1]);
  });

  it('prices a ring along one dimension of a v5p slice at a third of the chip\'s ICI, and one over every dimension at all of it', () => {
    // v5p-128 (4x4x4): tensor 4 along one dimension, fsdp 16 along the other two (MaxText's 32B script).
    const mesh = parseMesh('fsdp:16;tensor:4');
    const ici = v5p.levels[0].link;
    const eff = ici.efficiency?.allgather ?? 1;
    const bytes = 3 * 2 ** 30;
    const ring = (n: number, link: number) => ((n - 1) / n) * bytes / link;
    const call = v5p.collectiveLatency ?? 0;
    expect(collectiveTime(v5p, mesh, { kind: 'allgather', mask: 0b10, sent: ((4 - 1) / 4) * bytes }) - 3 * ici.latency - call).toBeCloseTo(ring(4, (ici.bandwidth * eff) / 3), 9);
    expect(collectiveTime(v5p, mesh, { kind: 'allgather', mask: 0b01, sent: ((16 - 1) / 16) * bytes }) - 15 * ici.latency - call).toBeCloseTo(ring(16, (ici.bandwidth * eff * 2) / 3), 9);
    expect(collectiveTime(v5p, mesh, { kind: 'allgather', mask: 0b11, sent: ((64 - 1) / 64) * bytes }) - 63 * ici.latency - call).toBeCloseTo(ring(64, ici.bandwidth * eff), 9);
    expect(axisLink(v5p, mesh, 1).bandwidth).toBeCloseTo(ici.bandwidth / 3, 3);
    // Across slices (dcn) nothing changes; tpu-v2 gives each axis its per-link figure as before.
    const two = parseMesh('dcn:2;fsdp:16;tensor:4');
    expect(axisLink(v5p, two, 0)).toEqual(v5p.levels[1].link);
    expect(torusOf(getDevice('tpu-v2'), parseMesh('16x32'))).toBeNull();
    // The 128B v5e rows: fsdp 16 and tensor 16 each along one dimension of the 16x16 slice.
    const e = parseMesh('dcn:2;fsdp:16;tensor:16');
    expect([axisLink(v5e, e, 1).bandwidth, axisLink(v5e, e, 2).bandwidth]).toEqual([v5e.levels[0].link.bandwidth / 2, v5e.levels[0].link.bandwidth / 2]);
  });

  it('an axis past the slice leaves the slice its whole unit: a 32-wide axis of a 16x32 v5e mesh spans both dimensions of the 16x16 slice', () => {
    const mesh = parseMesh('16x32');
    const t = torusOf(v5e, mesh)!;
    expect(t.on).toEqual([false, true]);
    expect(popcount(t.spans[1])).toBe(2);
  });

  it('axes of one size that span dimensions shared with others are not mirror images: their plans price differently', () => {
    // 2x4x2 on a 2x2x4 torus: the inner 2 shares its dimension with the 4, the outer 2 does not.
    const profile: HardwareProfile = { ...v5p, levels: [{ ...v5p.levels[0], devices: 16 }, v5p.levels[1]] };
    const mesh = parseMesh('a:2;b:4;c:2');
    const t = torusOf(profile, mesh)!;
    expect(t.spans.map(popcount)).toEqual([1, 2, 1]);
    const graph = buildGraph(getPreset('tiny'));
    const space = makeSpace(graph, mesh, profile);
    expect(space.twin).toEqual([-1, -1, -1]);
    const pricer = makePricer(graph, mesh, profile);
    const x = pricer(makePlan('batch:a+b'));
    const y = pricer(makePlan('batch:c+b'));
    expect(y.step).toBeGreaterThan(x.step);
    // Where no other axis shares their dimensions, equal axes are mirror images (2x2x4: one dimension each).
    const plain = parseMesh('a:2;c:2;b:4');
    expect(makeSpace(graph, plain, profile).twin.some((j) => j >= 0)).toBe(true);
  });

  it('mirror-image plans (axes the space calls twins) price equal on tori, for random meshes of up to four axes', () => {
    const graph = buildGraph(getPreset('tiny'));
    fc.assert(fc.property(fc.array(fc.constantFrom(1, 2, 2, 4), { minLength: 2, maxLength: 4 }), fc.constantFrom(2, 3), fc.nat(), (sizes, dims, seed) => {
      const mesh = parseMesh(sizes.map((s, i) => `a${i}:${s}`).join(';'));
      const profile: HardwareProfile = { ...v5p, levels: [{ ...v5p.levels[0], devices: mesh.size, torus: { dims } }, v5p.levels[1]] };
      const space = makeSpace(graph, mesh, profile);
      const pricer = makePricer(graph, mesh, profile);
      const names = mesh.axes.map((a) => a.name);
      for (let j = 0; j < names.length; j++) {
        const i = space.twin[j];
        if (i < 0) continue;
        // batch over twin i and one other axis k, against batch over twin j and k.
        const k = (seed % names.length);
        if (k === i || k === j) continue;
        const a = pricer(makePlan(`batch:${names[Math.min(i, k)]}+${names[Math.max(i, k)]}`));
        const b = pricer(makePlan(`batch:${names[Math.min(j, k)]}+${names[Math.max(j, k)]}`));
        expect(b.step).toBe(a.step);
      }
    }), { seed: 29, numRuns: 200 });
  });
});
