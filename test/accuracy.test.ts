import { describe, expect, it } from 'vitest';
import { readBenchFile } from '../src/calibrate/bench.js';
import { compareRow, groupRowsByDevice, summarizeErrors } from '../src/calibrate/validate.js';
import { datasheetDevice, getDevice } from '../src/cost/presets.js';

// Published step times of real runs (data/published/README.md): recorded numbers, not timings of
// this machine. A change to the cost model that moves the estimates off them fails here.
const { groups, rejected } = groupRowsByDevice(readBenchFile('data/published/steps.csv'));
/** A chip's rows under their presets: profiles of one chip on different networks are one family. */
const family = (chip: string) => {
  const gs = groups.filter((x) => (x.profile.chip ?? x.profile.name) === chip);
  return summarizeErrors(gs.flatMap((g) => g.rows.map((m) => compareRow(m, g.profile, g.profile.name).error)));
};

describe('the presets against published step times', () => {
  it('read every published row', () => {
    expect(rejected).toEqual([]);
    expect(groups.map((g) => g.profile.name).sort()).toEqual(['a100-80g', 'h100-a3-high', 'h100-sxm', 'tpu-v4', 'tpu-v5e']);
  });
  for (const chip of ['a100-80g', 'tpu-v4', 'tpu-v5e', 'h100']) {
    it(`${chip}: mean |error| ≤ 5%, max ≤ 10%, no bias beyond ±2% (issue 10's goal)`, () => {
      const s = family(chip);
      expect(s.rows).toBeGreaterThanOrEqual(6);
      expect(s.meanAbsError).toBeLessThanOrEqual(0.05);
      expect(s.maxAbsError).toBeLessThanOrEqual(0.1);
      expect(Math.abs(s.signedMeanError)).toBeLessThanOrEqual(0.02);
    });
  }
  it('A3 VMs start from the v5e fit\'s overlap between slices (MaxText under XLA, between hosts over Google\'s data-centre network)', () => {
    const overlapOf = (p: ReturnType<typeof getDevice>, level: string) => p.levels.find((l) => l.name === level)!.link.overlap ?? 1;
    expect(overlapOf(datasheetDevice('h100-a3-high'), 'tcpx')).toBe(overlapOf(getDevice('tpu-v5e'), 'dcn'));
    expect(overlapOf(datasheetDevice('h100-sxm'), 'infiniband')).toBe(1);
  });
  it('and inside a VM from the v5e fit\'s overlap inside a slice (MaxText\'s FSDP under XLA, over the fast links)', () => {
    const overlapOf = (p: ReturnType<typeof getDevice>, level: string) => p.levels.find((l) => l.name === level)!.link.overlap ?? 1;
    expect(overlapOf(datasheetDevice('h100-a3-high'), 'nvlink')).toBe(overlapOf(getDevice('tpu-v5e'), 'ici'));
  });
});
