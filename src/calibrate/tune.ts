import type { Estimate } from '../cost/estimate.js';
import type { HardwareProfile } from '../cost/profile.js';
import { InputError } from '../errors.js';
import { parseLayout } from '../layout/layout.js';
import { planFromJson, planToJson, type Plan, type PlanJson } from '../lower/plan.js';
import { price } from '../cost/price.js';
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
  /**
   * Round-robin passes over the plans (default 1): each plan is measured once per pass and keeps its
   * fastest run. Load from outside only slows a run, and a burst of it hits one pass of every plan
   * alike rather than all the passes of one plan. Every other pass runs the plans in reverse order,
   * so load that grows or falls over a tune does not always favour the plans run first.
   */
  readonly passes?: number;
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
    /** Every plan it ran, fastest measured first, with the calibrated profile's estimate. */
    readonly runs: readonly TunedChoice[];
    /** Whether the new choice measured at least as fast as every other plan it ran. */
    readonly fastestMeasured: boolean;
  };
}

const planKey = (p: PlanJson) => `${p.layout}|${p.zero}|${p.recompute}|${p.microbatches}|${p.sequenceParallel}|${p.virtualStages}|${p.zeroAxes ?? ''}`;

/** What the simulated mesh runs (src/runtime checkSimulable): pipelines of decoder-only models only. */
const runnableOn = (spec: ModelSpec) => (e: Estimate) => spec.kind === 'decoder' || !parseLayout(e.plan.layout).has('layers');

/**
 * Which of the ranked plans to run: the best plan of each layout, the first ceil(runs/2) layouts
 * in rank order, the rest at even steps down the remaining layouts; plans of layouts already
 * taken fill what is left when there are fewer layouts than runs.
 */
export function spreadRuns(ranked: readonly Estimate[], runs: number): Estimate[] {
  const perLayout: Estimate[] = [];
  const seen = new Set<string>();
  for (const e of ranked) if (!seen.has(e.plan.layout)) (seen.add(e.plan.layout), perLayout.push(e));
  const head = Math.min(perLayout.length, Math.ceil(runs / 2));
  const chosen = perLayout.slice(0, head);
  const rest = perLayout.slice(head);
  const tail = Math.min(rest.length, runs - head);
  for (let i = 0; i < tail; i++) chosen.push(rest[Math.floor(((i + 1) * rest.length) / tail) - 1]);
  for (const e of ranked) if (chosen.length < runs && !chosen.includes(e)) chosen.push(e);
  return chosen;
}

/**
 * The closed loop: search with the base profile, run its best plans on the simulated mesh,
 * calibrate on their traces, search again with the calibrated profile, and run its choice.
 */
export async function tune(opts: TuneOptions): Promise<TuneReport> {
  const say = opts.onProgress ?? (() => {});
  // Runs that teach the fit: the best plan of each of the best layouts for half of them, then the
  // best plan of layouts spread evenly down the ranking, so the measured step times span a range
  // (the top plans alone are near ties, same layout under other strategies, whose order is noise).
  const searched = await search({ spec: opts.spec, mesh: opts.mesh, profile: opts.base, top: 64 * opts.runs, workers: opts.workers });
  const runnable = runnableOn(opts.spec);
  const first = { best: searched.top.find(runnable) ?? null, top: searched.top.filter(runnable) };
  if (!first.best) throw new InputError(`no plan of ${opts.spec.name} fits on this mesh with ${opts.base.name}: nothing to tune`);
  const ctx = newContext(opts.base.name);
  const passes = opts.passes ?? 1;
  const rejected: Rejection[] = [];
  // Per plan, its fastest run so far (the row calibration reads).
  const fastest = new Map<string, Measurement>();
  const measureOnce = async (e: Estimate, i: number, pass: number): Promise<void> => {
    const key = planKey(e.plan);
    say(`running ${e.plan.layout || '(replicated)'} zero ${e.plan.zero} recompute ${e.plan.recompute} microbatches ${e.plan.microbatches}${passes > 1 ? ` (pass ${pass + 1} of ${passes})` : ''}`);
    const trace = await opts.measure(planFromJson(e.plan));
    const raw = traceToRow(trace, `tune run ${i + 1}`);
    const m = resolveRow(raw, ctx);
    if (isRejection(m)) {
      rejected.push(m);
      throw new InputError(`the runtime's trace of plan ${key} cannot be read: ${m.reason}`);
    }
    const known = fastest.get(key);
    if (!known || m.stepTime < known.stepTime) fastest.set(key, m);
  };
  /** Plans not measured yet, each `passes` times round-robin; a plan measured before keeps its runs. */
  const measureAll = async (es: readonly Estimate[], from: number): Promise<void> => {
    const todo = es.filter((e, j) => !fastest.has(planKey(e.plan)) && es.findIndex((x) => planKey(x.plan) === planKey(e.plan)) === j);
    for (let pass = 0; pass < passes; pass++) {
      const order = [...todo.keys()];
      if (pass % 2 === 1) order.reverse();
      for (const j of order) await measureOnce(todo[j], from + j, pass);
    }
  };
  const run = async (e: Estimate, i: number): Promise<number> => {
    await measureAll([e], i);
    return fastest.get(planKey(e.plan))!.stepTime;
  };
  const chosen = spreadRuns(first.top, opts.runs);
  await measureAll(chosen, 0);
  const rows: Measurement[] = [...fastest.values()];
  say(`calibrating on ${rows.length} measured plans`);
  const report = calibrate({ rows, rejected, devices: [] }, opts.base, [`tune: ${rows.length} runs of ${opts.spec.name}`], { method: opts.fit ?? 'physics' });
  const again = await search({ spec: opts.spec, mesh: opts.mesh, profile: report.profile, top: 8 * opts.runs, workers: opts.workers });
  const second = { best: again.top.find(runnable) ?? null };
  if (!second.best) throw new InputError('the calibrated profile leaves no feasible plan the simulated mesh runs');
  const oldMeasured = await run(first.best, 0);
  const newMeasured = await run(second.best, rows.length);
  const changed = planKey(first.best.plan) !== planKey(second.best.plan);
  const runs = [...fastest.values()]
    .map((m) => ({ plan: planToJson(m.program.plan), estimated: price(m.program, report.profile).time.step, measured: m.stepTime }))
    .sort((a, b) => a.measured - b.measured);
  return {
    ...report,
    tune: {
      changed,
      old: { plan: first.best.plan, estimated: first.best.time.step, measured: oldMeasured },
      new: { plan: second.best.plan, estimated: second.best.time.step, measured: newMeasured },
      speedup: oldMeasured / newMeasured,
      measuredPlans: fastest.size,
      runs,
      fastestMeasured: runs.every((r) => newMeasured <= r.measured),
    },
  };
}
