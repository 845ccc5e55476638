import type { Estimate } from '../cost/estimate.js';
import type { HardwareProfile } from '../cost/profile.js';
import { InputError } from '../errors.js';
import { planFromJson, type Plan, type PlanJson } from '../lower/plan.js';
import type { Mesh } from '../mesh/mesh.js';
import type { ModelSpec } from '../model/spec.js';
import { search } from '../search/index.js';
import { calibrate } from './calibrate.js';
import type { FitOptions } from './fit.js';
import { isRejection, newContext, resolveRow } from './resolve.js';
import { traceToRow } from './trace.js';
import type { CalibrationReport, Measurement, Rejection } from './types.js';

/** Runs a plan on the simulated mesh and returns its trace (the runtime's `run --trace`). */
export type Measure = (plan: Plan) => Promise<unknown>;

export interface TuneOptions {
  readonly spec: ModelSpec;
  readonly mesh: Mesh;
  readonly base: HardwareProfile;
  /** How many of the search's best plans to run and calibrate on. */
  readonly runs: number;
  readonly measure: Measure;
  readonly workers?: number;
  readonly onProgress?: (line: string) => void;
  /** How to fit (default: physics, the profile's constants through the cost model itself). */
  readonly fit?: FitOptions['method'];
}

export interface TunedChoice {
  readonly plan: PlanJson;
  /** The step time the profile that chose it predicted. */
  readonly estimated: number;
  /** Its median step time on the simulated mesh. */
  readonly measured: number;
}

/** `tune --json`: the calibration report of DESIGN.md plus what the closed loop decided. */
export interface TuneReport extends CalibrationReport {
  readonly tune: {
    readonly changed: boolean;
    readonly old: TunedChoice;
    readonly new: TunedChoice;
    /** Measured old / measured new: above 1 when the recalibrated choice is faster. */
    readonly speedup: number;
    readonly measuredPlans: number;
  };
}

const planKey = (p: PlanJson) => `${p.layout}|${p.zero}|${p.recompute}|${p.microbatches}`;

/**
 * The closed loop: search with the base profile, run its best plans on the simulated mesh,
 * calibrate on their traces, search again with the calibrated profile, and run its choice.
 */
/** What the simulated mesh runs (src/runtime checkSimulable): no sequence parallelism or interleaving yet. */
const runnable = (e: Estimate) => !e.plan.sequenceParallel && e.plan.virtualStages === 1;

export async function tune(opts: TuneOptions): Promise<TuneReport> {
  const say = opts.onProgress ?? (() => {});
  // The best plans, one per layout first: the same layout under other strategies teaches the fit
  // little about the links; then the next best plans fill the runs.
  const searched = await search({ spec: opts.spec, mesh: opts.mesh, profile: opts.base, top: 8 * opts.runs, workers: opts.workers });
  const first = { best: searched.top.find(runnable) ?? null, top: searched.top.filter(runnable) };
  if (!first.best) throw new InputError(`no plan of ${opts.spec.name} fits on this mesh with ${opts.base.name}: nothing to tune`);
  const ctx = newContext(opts.base.name);
  const rows: Measurement[] = [];
  const rejected: Rejection[] = [];
  const measured = new Map<string, number>();
  const run = async (e: Estimate, i: number): Promise<number> => {
    const key = planKey(e.plan);
    const known = measured.get(key);
    if (known !== undefined) return known;
    say(`running ${e.plan.layout || '(replicated)'} zero ${e.plan.zero} recompute ${e.plan.recompute} microbatches ${e.plan.microbatches}`);
    const trace = await opts.measure(planFromJson(e.plan));
    const raw = traceToRow(trace, `tune run ${i + 1}`);
    const m = resolveRow(raw, ctx);
    if (isRejection(m)) {
      rejected.push(m);
      throw new InputError(`the runtime's trace of plan ${key} cannot be read: ${m.reason}`);
    }
    rows.push(m);
    measured.set(key, m.stepTime);
    return m.stepTime;
  };
  const layouts = new Set<string>();
  const chosen: Estimate[] = [];
  for (const e of first.top) if (chosen.length < opts.runs && !layouts.has(e.plan.layout)) (layouts.add(e.plan.layout), chosen.push(e));
  for (const e of first.top) if (chosen.length < opts.runs && !chosen.includes(e)) chosen.push(e);
  for (const [i, e] of chosen.entries()) await run(e, i);
  say(`calibrating on ${rows.length} measured plans`);
  const report = calibrate({ rows, rejected, devices: [] }, opts.base, [`tune: ${rows.length} runs of ${opts.spec.name}`], { method: opts.fit ?? 'physics' });
  const again = await search({ spec: opts.spec, mesh: opts.mesh, profile: report.profile, top: 8 * opts.runs, workers: opts.workers });
  const second = { best: again.top.find(runnable) ?? null };
  if (!second.best) throw new InputError('the calibrated profile leaves no feasible plan the simulated mesh runs');
  const oldMeasured = await run(first.best, 0);
  const newMeasured = await run(second.best, rows.length);
  const changed = planKey(first.best.plan) !== planKey(second.best.plan);
  return {
    ...report,
    tune: {
      changed,
      old: { plan: first.best.plan, estimated: first.best.time.step, measured: oldMeasured },
      new: { plan: second.best.plan, estimated: second.best.time.step, measured: newMeasured },
      speedup: oldMeasured / newMeasured,
      measuredPlans: measured.size,
    },
  };
}
