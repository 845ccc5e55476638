import { describe, expect, it } from 'vitest';
import { readBenchFile } from '../src/calibrate/bench.js';
import { compareRow, groupRowsByDevice, summarizeErrors } from '../src/calibrate/validate.js';

// Published step times of real runs (data/published/README.md): recorded numbers, not timings of
// this machine. A change to the cost model that moves the estimates off them fails here.
const { groups, rejected } = groupRowsByDevice(readBenchFile('data/published/steps.csv'));
const family = (name: string) => {
  const g = groups.find((x) => x.profile.name === name)!;
  return summarizeErrors(g.rows.map((m) => compareRow(m, g.profile, name).error));
};

describe('the presets against published step times', () => {
  it('read every published row', () => {
    expect(rejected).toEqual([]);
    expect(groups.map((g) => g.profile.name).sort()).toEqual(['a100-80g', 'h100-sxm', 'tpu-v4', 'tpu-v5e']);
  });
  for (const name of ['a100-80g', 'tpu-v4']) {
    it(`${name}: mean |error| ≤ 5%, max ≤ 10%, no bias beyond ±2% (issue 10's goal)`, () => {
      const s = family(name);
      expect(s.meanAbsError).toBeLessThanOrEqual(0.05);
      expect(s.maxAbsError).toBeLessThanOrEqual(0.1);
      expect(Math.abs(s.signedMeanError)).toBeLessThanOrEqual(0.02);
    });
  }
  // Not yet at the goal: these bounds hold today's figures so they cannot get worse unnoticed.
  it('tpu-v5e stays within today\'s 6% mean and 17% max (goal not met: multi-slice growth and the 128B rows)', () => {
    const s = family('tpu-v5e');
    expect(s.meanAbsError).toBeLessThanOrEqual(0.06);
    expect(s.maxAbsError).toBeLessThanOrEqual(0.17);
  });
});
