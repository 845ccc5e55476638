import { describe, expect, it } from 'vitest';
import { getDevice } from '../src/cost/presets.js';
import { getPreset } from '../src/model/presets.js';
import { exhaustive, search } from '../src/search/index.js';
import { floorsPay } from '../src/search/task.js';
import { answer } from './search.helpers.js';

/**
 * The search's fixed costs (what it spends besides pricing plans) are cut where that cannot change
 * its answer; these hold the shortcuts to it.
 */
describe('the search without work its answer does not need', () => {
  it('asks state floors only on meshes where two sets of axes have one product (a floor then serves several layouts)', () => {
    expect(floorsPay([16, 32])).toBe(false);
    expect(floorsPay([2, 4])).toBe(false);
    expect(floorsPay([2, 3])).toBe(false);
    expect(floorsPay([8])).toBe(false);
    expect(floorsPay([4, 4])).toBe(true);
    expect(floorsPay([2, 4, 8])).toBe(true);
    expect(floorsPay([1, 2])).toBe(true);
    expect(floorsPay([4, 4, 4, 8])).toBe(true);
    expect(floorsPay([2, 2, 2, 2, 2, 2, 2])).toBe(true);
  });

  it('finds the headline case\'s answer as the plain scan does: best, top, Pareto front, every figure', async () => {
    const s = { spec: getPreset('transformer-5b'), mesh: '16x32', profile: getDevice('tpu-v2') };
    const got = await search({ ...s, workers: 0 });
    const ref = exhaustive({ ...s, symmetry: false });
    expect(answer(got)).toEqual(answer(ref));
    expect(got.best!.time.step).toBe(ref.best!.time.step);
    expect(JSON.stringify([got.best, got.top, got.pareto])).toBe(JSON.stringify([ref.best, ref.top, ref.pareto]));
  }, 60_000);
});
