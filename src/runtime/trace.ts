import type { PlanJson } from '../lower/plan.js';
import type { GcMode } from './gc.js';
import type { OpClass } from '../model/graph.js';
import type { ModelSpec } from '../model/spec.js';

/**
 * One complete event of Chrome's trace-event format on one device: a compute op, a collective (from
 * when its last member arrived), or a wait (threads only: for peers to arrive, or for a device that
 * shares this device's thread to finish its kernels).
 */
export interface TraceEvent {
  readonly name: string;
  readonly cat: 'compute' | 'collective' | 'wait';
  readonly ph: 'X';
  /** Start and duration, µs, on the simulated device's clock. */
  readonly ts: number;
  readonly dur: number;
  readonly pid: 0;
  /** The device index: one track per device. */
  readonly tid: number;
  readonly args: {
    readonly op: string;
    readonly phase: string;
    readonly kind: string;
    readonly klass: OpClass;
    readonly flops: number;
    readonly bytes: number;
    readonly axes: readonly string[];
    readonly collective: string | null;
    readonly step: number;
  };
}

export interface StepRecord {
  readonly loss: number;
  readonly seconds: number;
}

/** What `run --trace` writes, what Perfetto opens and what calibration reads. */
export interface Trace {
  readonly traceEvents: TraceEvent[];
  readonly otherData: {
    readonly mesh: string;
    readonly model: string | ModelSpec;
    readonly plan: PlanJson;
    readonly backend: string;
    /** How the measuring process collected garbage (runtime/gc.ts); absent in traces written before it was recorded. */
    readonly gc?: GcMode;
    readonly steps: StepRecord[];
  };
}
