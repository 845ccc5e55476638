import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { devicePresets } from '../src/cost/presets.js';
import { validateProfile } from '../src/cost/profile.js';
import { InputError } from '../src/errors.js';
import { planFromJson, planToJson } from '../src/lower/plan.js';

describe('plan files', () => {
  it('read back what they write', () => {
    const plan = planFromJson({ layout: 'batch:rows;d_ff:cols', zero: 2, recompute: 'selective', microbatches: 4, sequenceParallel: false, virtualStages: 1 });
    expect(planToJson(plan)).toEqual({ layout: 'batch:rows;d_ff:cols', zero: 2, recompute: 'selective', microbatches: 4, sequenceParallel: false, virtualStages: 1 });
  });

  it('never fail with anything but an InputError on any JSON value', () => {
    const plan = fc.record({
      layout: fc.oneof(fc.string(), fc.constantFrom('batch:rows', 'd_ff:cols;heads:cols'), fc.jsonValue()),
      zero: fc.oneof(fc.integer({ min: -1, max: 4 }), fc.jsonValue()),
      recompute: fc.oneof(fc.constantFrom('none', 'selective', 'full', 'some'), fc.jsonValue()),
      microbatches: fc.oneof(fc.integer({ min: -2, max: 9 }), fc.double(), fc.jsonValue()),
    }, { requiredKeys: [] });
    fc.assert(fc.property(fc.oneof(plan, fc.jsonValue()), (v) => {
      try {
        planFromJson(v);
      } catch (e) {
        expect(e).toBeInstanceOf(InputError);
      }
    }), { numRuns: 2000 });
  });
});

describe('device profile files', () => {
  it('accept every preset as written', () => {
    for (const p of devicePresets()) expect(validateProfile(JSON.parse(JSON.stringify(p))).name).toBe(p.name);
  });

  it('never fail with anything but an InputError, and name the field', () => {
    const base = JSON.parse(JSON.stringify(devicePresets()[0])) as Record<string, unknown>;
    const keys = Object.keys(base);
    fc.assert(fc.property(fc.constantFrom(...keys), fc.jsonValue(), (k, v) => {
      try {
        validateProfile({ ...base, [k]: v });
      } catch (e) {
        expect(e).toBeInstanceOf(InputError);
        expect((e as Error).message).toMatch(new RegExp(k.replace(/s$/, '')));
      }
    }), { numRuns: 1000 });
    expect(() => validateProfile({ ...base, efficiency: { ...(base.efficiency as object), matmul: 1.5 } })).toThrow(/efficiency.matmul must be in \(0, 1\]/);
  });
});
