import { InputError } from '../errors.js';
import type { OpClassName } from '../cost/profile.js';
import { readJsonFile } from '../cli/inputs.js';
import type { RawRow } from './resolve.js';
import { OP_CLASSES } from './types.js';

/** One complete event of a runtime trace (Chrome trace-event JSON, as `mesh-search run --trace` writes). */
export interface TraceEvent {
  readonly name: string;
  readonly cat: 'compute' | 'collective';
  readonly ph: 'X';
  /** Start and duration in microseconds. */
  readonly ts: number;
  readonly dur: number;
  readonly pid: number;
  /** The device. */
  readonly tid: number;
  readonly args: {
    readonly op: string;
    readonly phase: string;
    readonly kind: string;
    readonly klass: OpClassName;
    readonly flops: number;
    readonly bytes: number;
    readonly axes: readonly string[];
    readonly collective: string | null;
    readonly step: number;
  };
}

export interface Trace {
  readonly traceEvents: readonly TraceEvent[];
  readonly otherData: {
    readonly mesh: string;
    readonly model: unknown;
    readonly plan: { layout: string; zero: number; recompute: string; microbatches: number };
    readonly backend: string;
    readonly steps: readonly { loss: number; seconds: number }[];
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
}

/**
 * A trace as one benchmark row: the median step time, and per device per step the seconds spent
 * in each op class and in collectives over each axis group. With two or more steps the first is
 * left out of all of them: it compiles kernels and allocates buffers. The step time is read off
 * the simulated devices' clocks (from the first event's start to the last event's end of the
 * step, over all devices), which is what a mesh of real devices running side by side would take;
 * `otherData.steps[].seconds` is the simulator's wall time, which runs the devices one after
 * another, and is used only when the events carry no step numbers.
 */
export function traceToRow(value: unknown, file: string): RawRow {
  const source = { file, line: 1 };
  const bad = (problem: string): RawRow => ({ source, model: undefined, mesh: undefined, layout: undefined, stepTime: undefined, compute: {}, comm: {}, problem });
  if (typeof value !== 'object' || value === null) return bad('not a trace: expected { traceEvents, otherData }');
  const t = value as Partial<Trace>;
  const od = t.otherData;
  if (!Array.isArray(t.traceEvents)) return bad('not a trace: "traceEvents" is not a list');
  if (typeof od !== 'object' || od === null) return bad('not a mesh-search trace: no "otherData" with mesh, model, plan and steps');
  if (!Array.isArray(od.steps) || od.steps.length === 0) return bad('the trace records no steps (otherData.steps is empty)');
  const plan = (od.plan ?? {}) as Partial<Trace['otherData']['plan']>;
  const skipFirst = od.steps.length >= 2;
  const used = od.steps.slice(skipFirst ? 1 : 0);
  const secs = used.map((s) => s?.seconds);
  let stepTime: unknown = secs.every((s) => typeof s === 'number') ? median(secs as number[]) : secs.find((s) => typeof s !== 'number');
  const spans = new Map<number, { start: number; end: number }>();
  const compute: Partial<Record<OpClassName, number>> = {};
  const comm: Record<string, number> = {};
  const devices = new Set<number>();
  for (const e of t.traceEvents as readonly TraceEvent[]) {
    if (e?.ph !== 'X' || typeof e.dur !== 'number' || !e.args) continue;
    devices.add(e.tid);
    if (skipFirst && typeof e.args.step === 'number' && e.args.step === 0) continue;
    if (typeof e.args.step === 'number' && typeof e.ts === 'number') {
      const sp = spans.get(e.args.step) ?? { start: Infinity, end: -Infinity };
      sp.start = Math.min(sp.start, e.ts);
      sp.end = Math.max(sp.end, e.ts + e.dur);
      spans.set(e.args.step, sp);
    }
    const s = e.dur * 1e-6;
    if (e.cat === 'collective') {
      const key = (e.args.axes ?? []).join('+');
      if (key) comm[key] = (comm[key] ?? 0) + s;
    } else if (e.cat === 'compute' && OP_CLASSES.includes(e.args.klass)) {
      compute[e.args.klass] = (compute[e.args.klass] ?? 0) + s;
    }
  }
  if (spans.size > 0) stepTime = median([...spans.values()].map((sp) => (sp.end - sp.start) * 1e-6));
  const per = Math.max(1, devices.size) * used.length;
  for (const k of Object.keys(compute) as OpClassName[]) compute[k] = compute[k]! / per;
  for (const k of Object.keys(comm)) comm[k] = comm[k] / per;
  return {
    source, model: od.model, mesh: od.mesh, layout: plan.layout, zero: plan.zero, recompute: plan.recompute,
    microbatches: plan.microbatches, stepTime, compute, comm,
  };
}

export function readTraceFile(path: string): RawRow {
  const v = readJsonFile(path, 'trace');
  if (typeof v !== 'object' || v === null) throw new InputError(`trace file ${path}: expected a JSON object`);
  return traceToRow(v, path);
}
