import { InputError } from '../errors.js';
import type { OpClassName } from '../cost/profile.js';
import { readJsonFile } from '../inputs/index.js';
import type { RawRow } from './resolve.js';
import { OP_CLASSES } from './types.js';
import type { Trace, TraceEvent } from '../runtime/trace.js';

/** What `mesh-search run --trace` writes: one type, the runtime's (read here from files). */
export type { Trace, TraceEvent } from '../runtime/trace.js';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
}

/**
 * A trace as one benchmark row: the step time, and per device per step the seconds spent in each
 * op class and in collectives over each axis group, each the least over the steps (or the median):
 * other processes on the machine only ever add time to a step. With two or more steps the first is
 * left out of all of them: it compiles kernels and allocates buffers. The step time is read off
 * the simulated devices' clocks: a device's step runs from the end of its previous step (or its
 * first event) to the end of its last event of the step, waits for its peers included, and the
 * mesh's step is its slowest device's. Clocks of devices that never synchronise drift apart, so
 * one span over all devices would overstate it. `otherData.steps[].seconds` is the simulator's
 * wall time, which runs the devices one after another: used only when events carry no steps.
 */
/** How a trace's steps become one number: the median, or the least (contention only ever adds time). */
export type StepStatistic = 'median' | 'min';

export function traceToRow(value: unknown, file: string, statistic: StepStatistic = 'min'): RawRow {
  const pick = statistic === 'min' ? (xs: number[]) => xs.reduce((a, b) => Math.min(a, b), Infinity) : median;
  const source = { file, line: 1 };
  const bad = (problem: string): RawRow => ({ source, model: undefined, mesh: undefined, layout: undefined, stepTime: undefined, compute: {}, comm: {}, problem });
  if (typeof value !== 'object' || value === null) return bad('not a trace: expected { traceEvents, otherData }');
  const t = value as Partial<Trace>;
  const od = t.otherData;
  if (!Array.isArray(t.traceEvents)) return bad('not a trace: "traceEvents" is not a list');
  if (typeof od !== 'object' || od === null) return bad('not a mesh-search trace: no "otherData" with mesh, model, plan and steps');
  if (!Array.isArray(od.steps) || od.steps.length === 0) return bad('the trace records no steps (otherData.steps is empty)');
  const malformed = checkEvents(t.traceEvents) ?? checkSteps(od.steps);
  if (malformed) return bad(malformed);
  const plan = (od.plan ?? {}) as Partial<Trace['otherData']['plan']>;
  const skipFirst = od.steps.length >= 2;
  const used = od.steps.slice(skipFirst ? 1 : 0);
  const secs = used.map((s) => s?.seconds);
  let stepTime: unknown = secs.every((s) => typeof s === 'number') ? pick(secs as number[]) : secs.find((s) => typeof s !== 'number');
  // Per step, per device: first start and last end on that device's clock.
  const spans = new Map<number, Map<number, { start: number; end: number }>>();
  // Seconds by component ("matmul", "comm:rows+cols") and step (-1 when events carry no step).
  const sums = new Map<string, Map<number, number>>();
  const add = (key: string, step: number, s: number) => {
    const m = sums.get(key) ?? new Map<number, number>();
    m.set(step, (m.get(step) ?? 0) + s);
    sums.set(key, m);
  };
  const devices = new Set<number>();
  // A collective's time on a device includes its wait for the slowest peer: the idle gap on that
  // device's clock before it starts, as a real device's timer would count it.
  const events = (t.traceEvents as readonly TraceEvent[]).filter((e) => e?.ph === 'X' && typeof e.dur === 'number' && e.args);
  const ordered = [...events].sort((a, b) => a.tid - b.tid || a.ts - b.ts);
  const waited = new Map<TraceEvent, number>();
  for (let i = 1; i < ordered.length; i++) {
    const e = ordered[i];
    const prev = ordered[i - 1];
    if (e.cat === 'collective' && prev.tid === e.tid) waited.set(e, Math.max(0, e.ts - (prev.ts + prev.dur)));
  }
  for (const e of events) {
    devices.add(e.tid);
    const step = typeof e.args.step === 'number' ? e.args.step : -1;
    if (step >= 0 && typeof e.ts === 'number') {
      const byDevice = spans.get(step) ?? new Map<number, { start: number; end: number }>();
      const sp = byDevice.get(e.tid) ?? { start: Infinity, end: -Infinity };
      sp.start = Math.min(sp.start, e.ts);
      sp.end = Math.max(sp.end, e.ts + e.dur);
      byDevice.set(e.tid, sp);
      spans.set(step, byDevice);
    }
    if (skipFirst && step === 0) continue;
    const s = (e.dur + (waited.get(e) ?? 0)) * 1e-6;
    if (e.cat === 'collective') {
      const key = (e.args.axes ?? []).join('+');
      if (key) add(`comm:${key}`, step, s);
    } else if (e.cat === 'compute' && OP_CLASSES.includes(e.args.klass)) {
      add(e.args.klass, step, s);
    }
  }
  const compute: Partial<Record<OpClassName, number>> = {};
  const comm: Record<string, number> = {};
  const nDevices = Math.max(1, devices.size);
  for (const [key, bySteps] of sums) {
    // Per device per step; events without step numbers are spread over all the steps used.
    const v = bySteps.has(-1) ? bySteps.get(-1)! / (nDevices * used.length) : pick([...bySteps.values()].map((x) => x / nDevices));
    if (key.startsWith('comm:')) comm[key.slice(5)] = v;
    else compute[key as OpClassName] = v;
  }
  if (spans.size > 0) {
    const steps = [...spans.keys()].sort((a, b) => a - b);
    const times: number[] = [];
    for (const [i, s] of steps.entries()) {
      if (skipFirst && i === 0) continue;
      const prev = i > 0 ? spans.get(steps[i - 1]) : undefined;
      let slowest = 0;
      for (const [tid, sp] of spans.get(s)!) slowest = Math.max(slowest, sp.end - (prev?.get(tid)?.end ?? sp.start));
      times.push(slowest * 1e-6);
    }
    if (times.length) stepTime = pick(times);
  }
  return {
    source, model: od.model, mesh: od.mesh, layout: plan.layout, zero: plan.zero, zeroAxes: Array.isArray(plan.zeroAxes) ? plan.zeroAxes.join('+') : plan.zeroAxes, recompute: plan.recompute,
    microbatches: plan.microbatches, stepTime, compute, comm,
  };
}

const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The first event a trace reader cannot take as written (wrong types, negative times), named; null when all are fine. */
function checkEvents(events: readonly unknown[]): string | null {
  for (let i = 0; i < events.length; i++) {
    const e = events[i];
    const at = `traceEvents[${i}]`;
    if (!isObject(e)) return `${at} is not an object`;
    if (e.ph !== 'X') continue;
    if (!finite(e.ts) || !finite(e.dur) || e.dur < 0) return `${at}: "ts" and "dur" must be finite numbers (microseconds), "dur" >= 0`;
    if (!Number.isSafeInteger(e.tid) || (e.tid as number) < 0) return `${at}: "tid" must be a device number, got ${JSON.stringify(e.tid)}`;
    if (e.args === undefined) continue;
    if (!isObject(e.args)) return `${at}: "args" must be an object`;
    const a = e.args;
    if (a.step !== undefined && (!Number.isSafeInteger(a.step) || (a.step as number) < 0)) return `${at}: args.step must be a step number, got ${JSON.stringify(a.step)}`;
    if (a.axes !== undefined && a.axes !== null && !(Array.isArray(a.axes) && a.axes.every((x) => typeof x === 'string'))) return `${at}: args.axes must be a list of axis names, got ${JSON.stringify(a.axes)}`;
    if (a.klass !== undefined && typeof a.klass !== 'string') return `${at}: args.klass must be an op class name, got ${JSON.stringify(a.klass)}`;
  }
  return null;
}

function checkSteps(steps: readonly unknown[]): string | null {
  for (let i = 0; i < steps.length; i++) {
    const s = steps[i];
    if (!isObject(s)) return `otherData.steps[${i}] is not an object with loss and seconds`;
    if (s.seconds !== undefined && !finite(s.seconds)) return `otherData.steps[${i}].seconds must be a number, got ${JSON.stringify(s.seconds)}`;
  }
  return null;
}

export function readTraceFile(path: string, statistic?: StepStatistic): RawRow {
  const v = readJsonFile(path, 'trace');
  if (typeof v !== 'object' || v === null) throw new InputError(`trace file ${path}: expected a JSON object`);
  return traceToRow(v, path, statistic);
}
