import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { getDevice } from '../src/cost/presets.js';
import { InputError } from '../src/errors.js';
import { getPreset } from '../src/model/presets.js';
import { exhaustive, search, SearchFailed } from '../src/search/index.js';
import { answer, tinyMesh, tinyProfile, tinySpec } from './search.helpers.js';

const setup = fc.record({
  spec: tinySpec(),
  mesh: tinyMesh(),
  profile: tinyProfile(),
  objective: fc.constantFrom('time' as const, 'memory' as const),
  top: fc.integer({ min: 1, max: 4 }),
  paretoSlack: fc.constantFrom(0, 0.25, 1),
});

/** The search's answer, or the message of the InputError it threw. */
async function attempt(s: Parameters<typeof search>[0], workers: number): Promise<unknown> {
  try {
    return answer(await search({ ...s, workers }));
  } catch (e) {
    if (e instanceof InputError) return { error: e.message };
    throw e;
  }
}

describe('search', () => {
  it('returns the same optimum, top list, Pareto front and closest plan as a plain exhaustive scan (inline)', async () => {
    await fc.assert(fc.asyncProperty(setup, async (s) => {
      const ref = exhaustive({ ...s, symmetry: true });
      const got = (await attempt(s, 0)) as Record<string, unknown>;
      if (ref.maxUsed < s.mesh.size) {
        // A mesh larger than the model can use: the search says so instead of idling devices.
        expect(got.error).toMatch(/more than random can use.*ran out of divisors/);
        return;
      }
      expect(got).toEqual(answer(ref));
      // Whatever was pruned, the best is never beaten by any plan of the whole space.
      if (ref.best) expect(ref.searched.valid).toBeGreaterThan(0);
    }), { numRuns: 40, seed: 3 });
  });

  it('gives the same answer with 0, 1 and 2 workers and by default, and as the exhaustive scan', async () => {
    await fc.assert(fc.asyncProperty(setup, async (s) => {
      const inline = await attempt(s, 0);
      expect(await attempt(s, 1)).toEqual(inline);
      expect(await attempt(s, 2)).toEqual(inline);
      // The default: inline, then a pool once the search has run a while (here at once).
      expect(await attempt({ ...s, workers: undefined, inlineSeconds: 0 }, undefined as unknown as number)).toEqual(inline);
      const ref = exhaustive({ ...s, symmetry: true });
      if (ref.maxUsed === s.mesh.size) expect(inline).toEqual(answer(ref));
    }), { numRuns: 6, seed: 7 });
  });

  it('counts the whole space: what it priced plus what it pruned is every valid plan', async () => {
    const spec = getPreset('mtf-lm-s0');
    const r = await search({ spec, mesh: '4x8', profile: getDevice('tpu-v2'), workers: 0 });
    const ref = exhaustive({ spec, mesh: '4x8', profile: getDevice('tpu-v2') });
    expect(r.searched.valid).toBe(ref.searched.valid);
    expect(r.searched.pruned).toBeGreaterThan(0);
    expect(r.searched.valid - r.searched.pruned).toBeLessThan(ref.candidates);
    expect(r.best!.time.step).toBe(ref.best!.time.step);
  });
});

describe('progress', () => {
  it('reports a fraction that only grows and ends at 1', async () => {
    const seen: number[] = [];
    await search({ spec: getPreset('tiny'), mesh: '2x4', profile: getDevice('tpu-v2'), workers: 0, onProgress: (p) => seen.push(p.fraction) });
    expect(seen.length).toBeGreaterThan(2);
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
    expect(seen[seen.length - 1]).toBe(1);
  });
});

describe('a worker that crashes', () => {
  const s = { spec: getPreset('tiny'), mesh: '2x4', profile: getDevice('tpu-v2') };

  it('has its share retried once and the answer is whole', async () => {
    const clean = answer(await search({ ...s, workers: 0 }));
    const switched = await search({ ...s, inlineSeconds: 0 });
    expect(switched.searched.workers).toBeGreaterThan(0);
    expect(answer(switched)).toEqual(clean);
    for (const share of [0, 70]) {
      expect(answer(await search({ ...s, workers: 2, faults: { share, times: 1 } }))).toEqual(clean);
      expect(answer(await search({ ...s, workers: 0, faults: { share, times: 1 } }))).toEqual(clean);
    }
  });

  it('fails the search with a clear message when it crashes again', async () => {
    await expect(search({ ...s, workers: 2, faults: { share: 3, times: 2 } }))
      .rejects.toThrow(/the search failed: a worker crashed twice on the same share \(layouts .*\): .*exit/);
    await expect(search({ ...s, workers: 0, faults: { share: 70, times: 2 } })).rejects.toBeInstanceOf(SearchFailed);
  });
});

describe('when no plan works', () => {
  it('says which dimensions ran out of divisors on a mesh larger than the model can use', async () => {
    await expect(search({ spec: getPreset('tiny'), mesh: '256x256', profile: getDevice('tpu-v2'), workers: 0 }))
      .rejects.toThrow(/has 65536 devices, more than tiny can use: no valid layout puts more than 256 of them to work; its dimensions ran out of divisors: batch \(8\), length \(32\).* divide by no mesh axis; d_ff \(256\) at most 256 ways/);
  });

  it('counts no more plans that fit than it priced, the sequence-parallel variants apart', async () => {
    await fc.assert(fc.asyncProperty(setup, async (s) => {
      let r;
      try {
        r = await search({ ...s, workers: 0 });
      } catch (e) {
        if (e instanceof InputError) return;
        throw e;
      }
      const { valid, pruned, feasible, sequenceParallel } = r.searched;
      expect(feasible).toBeLessThanOrEqual(valid - pruned);
      expect(sequenceParallel).toBeGreaterThanOrEqual(0);
      // Where the best plan fits, at least one plan was counted as fitting (unless only its SP variant fits).
      if (r.best && !r.best.plan.sequenceParallel) expect(feasible).toBeGreaterThan(0);
    }), { seed: 9, numRuns: 40 });
    const h = await search({ spec: getPreset('transformer-5b'), mesh: '16x32', profile: getDevice('tpu-v2'), workers: 0 });
    expect(h.searched.sequenceParallel).toBeGreaterThan(0);
    expect(h.searched.feasible).toBeLessThanOrEqual(h.searched.valid - h.searched.pruned);
  });

  it('reports no best plan and the least-memory plan when nothing fits', async () => {
    const profile = { ...getDevice('tpu-v2'), memoryBytes: 2 ** 30 };
    const r = await search({ spec: getPreset('transformer-5b'), mesh: '2x2', profile, workers: 0 });
    expect(r.best).toBeNull();
    expect(r.top).toEqual([]);
    expect(r.searched.feasible).toBe(0);
    expect(r.searched.pruned).toBeLessThan(r.searched.valid);
    const ref = exhaustive({ spec: getPreset('transformer-5b'), mesh: '2x2', profile, symmetry: true });
    expect(r.closest).toEqual(ref.closest);
    expect(r.closest!.memory.total).toBeGreaterThan(profile.memoryBytes);
  });
});
