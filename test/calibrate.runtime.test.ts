import { describe, expect, it } from 'vitest';
import { calibrate, resolveRows } from '../src/calibrate/index.js';
import { measureCases, SIM_CASES } from '../src/calibrate/simulate.js';
import { tune } from '../src/calibrate/tune.js';
import { estimatePlan } from '../src/cost/estimatePlan.js';
import { getDevice } from '../src/cost/presets.js';
import { planFromJson } from '../src/lower/plan.js';
import { parseMesh } from '../src/mesh/mesh.js';
import { buildGraph } from '../src/model/graph.js';
import { getPreset } from '../src/model/presets.js';
import { runPlan } from '../src/runtime/index.js';

const base = getDevice('tpu-v2');

describe('calibration on the simulated mesh', () => {
  it('lowers the leave-one-plan-out step-time error on runtime traces below the uncalibrated preset', async () => {
    const cases = SIM_CASES.filter((c) => c.mesh === '2x2' || c.mesh === 'y:2');
    expect(cases.length).toBe(10);
    const loaded = resolveRows(await measureCases(cases, { base, steps: 4 }), base);
    expect(loaded.rejected).toEqual([]);
    expect(loaded.rows.every((m) => m.components.compute.matmul! > 0)).toBe(true);
    const r = calibrate(loaded, base);
    // The TPU preset prices the tiny model in microseconds; tfjs on this CPU takes milliseconds.
    expect(r.before.mape).toBeGreaterThan(0.9);
    expect(r.after.mape).toBeLessThan(0.66 * r.before.mape);
    expect(r.profile.efficiency.matmul).toBeLessThan(base.efficiency.matmul);
  });

  it('tune runs the best plans, recalibrates, and chooses the best plan under the calibrated profile', async () => {
    const spec = getPreset('tiny');
    const mesh = parseMesh('2x2');
    const report = await tune({
      spec, mesh, base, runs: 4, workers: 0,
      measure: async (plan) => (await runPlan({ spec, mesh, plan, steps: 3, device: base, trace: true, modelName: 'tiny' })).trace,
    });
    const t = report.tune;
    expect(t.measuredPlans).toBeGreaterThanOrEqual(4);
    expect(t.old.measured).toBeGreaterThan(0);
    expect(t.new.measured).toBeGreaterThan(0);
    expect(t.changed).toBe(JSON.stringify(t.old.plan) !== JSON.stringify(t.new.plan));
    const graph = buildGraph(spec);
    const oldUnderCalibrated = estimatePlan(graph, mesh, planFromJson(t.old.plan), report.profile).time.step;
    expect(t.new.estimated).toBeLessThanOrEqual(oldUnderCalibrated * (1 + 1e-9));
    expect(estimatePlan(graph, mesh, planFromJson(t.new.plan), report.profile).time.step).toBeCloseTo(t.new.estimated, 12);
    expect(report.rows.used).toBe(4);
  });
});
