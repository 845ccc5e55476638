import { describe, expect, it } from 'vitest';
import { calibrate, resolveRows } from '../src/calibrate/index.js';
import { measureCases, SIM_CASES } from '../src/calibrate/simulate.js';
import { spreadRuns, tune } from '../src/calibrate/tune.js';
import fc from 'fast-check';
import type { Estimate } from '../src/cost/estimate.js';
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
    expect(cases.length).toBe(11);
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
    expect(t.runs.length).toBe(t.measuredPlans);
    const times = t.runs.map((r) => r.measured);
    expect(times).toEqual([...times].sort((a, b) => a - b));
    expect(t.fastestMeasured).toBe(t.new.measured <= times[0]);
  });

  it('with passes, tune runs its plans round-robin, each once per pass, every other pass in reverse, and calibrates on each plan\'s fastest run', async () => {
    const { traceToRow } = await import('../src/calibrate/trace.js');
    const { newContext, resolveRow } = await import('../src/calibrate/resolve.js');
    const { describePlan } = await import('../src/lower/plan.js');
    const spec = getPreset('tiny');
    const mesh = parseMesh('2x2');
    const order: string[] = [];
    const times = new Map<string, number[]>();
    const ctx = newContext(base.name);
    const report = await tune({
      spec, mesh, base, runs: 3, workers: 0, passes: 2,
      measure: async (plan) => {
        const trace = (await runPlan({ spec, mesh, plan, steps: 2, device: base, trace: true, modelName: 'tiny' })).trace;
        const key = describePlan(plan);
        order.push(key);
        const m = resolveRow(traceToRow(trace, 't.json'), ctx);
        if ('reason' in m) throw new Error(m.reason);
        times.set(key, [...(times.get(key) ?? []), m.stepTime]);
        return trace;
      },
    });
    // The three plans calibrated on: A B C C B A (every other pass reversed), then any plan the loop chose besides them, twice in a row.
    const first = order.slice(0, 3);
    expect(new Set(first).size).toBe(3);
    expect(order.slice(3, 6)).toEqual([...first].reverse());
    for (const k of order.slice(6)) expect(first).not.toContain(k);
    for (const [k, ts] of times) expect(ts.length, k).toBe(2);
    // Each plan's measured time is its fastest run; the calibration rows are those runs.
    for (const r of report.tune.runs) expect(r.measured).toBe(Math.min(...times.get(describePlan(planFromJson(r.plan)))!));
    expect(report.rows.used).toBe(3);
  });

  it('spreadRuns takes the best layouts, then layouts spread down the ranking, one plan each while layouts last', () => {
    fc.assert(fc.property(fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 1, maxLength: 60 }), fc.integer({ min: 1, max: 12 }), (layoutIds, runs) => {
      const ranked = layoutIds.map((id, i) => ({ plan: { layout: `l${id}`, zero: i % 4 } }) as unknown as Estimate);
      const chosen = spreadRuns(ranked, runs);
      const layouts = [...new Set(layoutIds)].map((id) => `l${id}`);
      expect(chosen.length).toBe(Math.min(runs, ranked.length));
      expect(new Set(chosen).size).toBe(chosen.length);
      expect(chosen[0]).toBe(ranked[0]);
      const distinct = new Set(chosen.map((e) => e.plan.layout)).size;
      expect(distinct).toBe(Math.min(layouts.length, chosen.length));
      // With more layouts than runs, the worst layout is among those run.
      if (layouts.length > runs && runs >= 2) expect(chosen.some((e) => e.plan.layout === layouts.at(-1))).toBe(true);
    }), { seed: 13, numRuns: 300 });
  });
});
