import { describe, expect, it } from 'vitest';
import { resolveRows } from '../src/calibrate/index.js';
import { fitPhysics } from '../src/calibrate/physics.js';
import { getDevice } from '../src/cost/presets.js';
import { price } from '../src/cost/price.js';
import type { HardwareProfile } from '../src/cost/profile.js';
import { synthRows } from './calibrate.helpers.js';

/**
 * A profile without a GEMM shape curve (like `host`, whose matmul rate was measured at the model's
 * own GEMM shapes) prices every GEMM at efficiency × peak. The physics fit must fit it as it is:
 * starting from a curve the base does not have (and reading its absence as h = 64, as it once did)
 * fits a different model, which pays for the curve with efficiencies pinned at 1.
 */
describe('the physics fit of a profile without a GEMM shape curve', () => {
  const { gemmHalfSize: _dropped, ...rest } = getDevice('tpu-v2');
  const base: HardwareProfile = { ...rest, name: 'no-curve', efficiency: { matmul: 1, elementwise: 1, softmax: 1, reduction: 1 } };
  const truth: HardwareProfile = { ...base, name: 'truth', efficiency: { matmul: 0.62, elementwise: 0.41, softmax: 0.41, reduction: 0.41 } };

  it('fits it without adding one, and prices the rows its efficiencies generated', () => {
    expect(base.gemmHalfSize).toBeUndefined();
    const { rows, rejected } = resolveRows(synthRows(truth), base);
    expect(rejected).toEqual([]);
    const { profile, summary } = fitPhysics(rows, base);
    expect(summary.parameters.map((p) => p.name)).not.toContain('gemmHalfSize');
    expect(profile.gemmHalfSize ?? 0).toBe(0);
    // Step times alone under the fit's priors: the constants trade off, the rows stay priced.
    expect(profile.efficiency.matmul).toBeLessThan(0.75);
    expect(summary.inSampleMape).toBeLessThan(0.03);
    for (const m of rows) expect(Math.abs(price(m.program, profile).time.step / m.stepTime - 1)).toBeLessThan(0.08);
  });
});

/**
 * A runtime trace measures each op class's and each axis group's seconds on a device, not only the
 * step: the physics fit prices those too, so the constants behind each part are pinned by it.
 * From step times alone the priors let efficiencies trade against links (the test above).
 */
describe('the physics fit of rows with per-class and per-axis times', () => {
  const { gemmHalfSize: _dropped, ...rest } = getDevice('tpu-v2');
  const base: HardwareProfile = { ...rest, name: 'no-curve', efficiency: { matmul: 1, elementwise: 1, softmax: 1, reduction: 1 } };
  const truth: HardwareProfile = { ...base, name: 'truth', efficiency: { matmul: 0.62, elementwise: 0.41, softmax: 0.41, reduction: 0.41 } };

  it('recovers the efficiencies that generated them', () => {
    const { rows } = resolveRows(synthRows(truth, 'mtf-lm-s0', { components: true }), base);
    expect(rows.every((m) => Object.keys(m.components.compute).length > 0)).toBe(true);
    const { profile, summary } = fitPhysics(rows, base);
    expect(summary.observations).toBeGreaterThan(rows.length);
    expect(profile.efficiency.matmul / 0.62).toBeCloseTo(1, 1);
    expect(profile.efficiency.elementwise / 0.41).toBeCloseTo(1, 1);
  });
});
