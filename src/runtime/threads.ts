import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { Plan } from '../lower/plan.js';
import type { Program } from '../lower/program.js';
import { axesOf } from '../layout/layout.js';
import { deviceCoords, type Mesh } from '../mesh/mesh.js';
import { DTYPE_BYTES, type ModelSpec } from '../model/spec.js';
import type { AdamConfig } from './adam.js';
import type { BackendChoice } from './backend.js';
import { exchangeMemory, type ExchangeMemory } from './exchange.js';
import { DeviceFault, type Executor, type Fault, type OpTiming } from './executor.js';
import { shardIndex } from './shard.js';
import type { TraceEvent } from './trace.js';

/**
 * Devices that run at once: a pool of worker threads, no more than the cores (or the devices),
 * each running whole devices (contiguous blocks of device indices, so the innermost axes'
 * collectives stay inside a thread). A step is sent to every thread and ends when the slowest ends.
 */
export interface DeviceState {
  readonly index: number;
  readonly params: [string, Float32Array][];
  readonly m: [string, Float32Array][];
  readonly v: [string, Float32Array][];
}

export type ToWorker =
  | { type: 'setup'; spec: ModelSpec; mesh: Mesh; plan: Plan; seed: number; adam: AdamConfig; trace: boolean; backend: BackendChoice; memory: ExchangeMemory; thread: number }
  | { type: 'step'; tokens: Int32Array; fault: Fault | null }
  | { type: 'load'; states: DeviceState[]; stepIndex: number }
  | { type: 'report'; states: boolean };

export type FromWorker =
  | { type: 'ready'; backend: string }
  | { type: 'stepped'; loss: number }
  | { type: 'loaded' }
  | { type: 'report'; states: DeviceState[]; timings: [string, OpTiming][]; events: TraceEvent[]; sent: [number, [string, number][]][] }
  | { type: 'error'; aborted: boolean; message: string; fault?: { device: number; op: string; step: number; detail: string } };

/**
 * The compiled worker, two folders up from this module wherever it runs (src/runtime under tests,
 * dist/runtime, or a chunk in dist/bundle): a worker thread runs JavaScript (npm test builds dist/ first).
 */
function workerFile(): string {
  return fileURLToPath(new URL('../../dist/runtime/worker.js', import.meta.url));
}

const idle: Worker[] = [];

function takeWorker(): Worker {
  const w = idle.pop() ?? new Worker(workerFile());
  w.unref(); // an idle pool never keeps the process alive
  return w;
}

/** How many threads run a mesh by default: one per core, at most one per device. */
export function defaultThreads(mesh: Mesh): number {
  return Math.max(1, Math.min(availableParallelism(), mesh.size));
}

/** Floats of the largest buffer a device may offer a collective or a pipeline send. */
function slotCapacity(program: Program): number {
  let n = 16;
  const dtype = DTYPE_BYTES[program.graph.spec.dtype];
  for (const rec of program.ops) {
    for (const t of [...rec.inputs, rec.output]) n = Math.max(n, 3 * t.shape.reduce((a, b) => a * b, 1));
    for (const c of rec.collectives) n = Math.max(n, Math.ceil(c.bytes / Math.min(dtype, 4)));
  }
  return n + 16;
}

export interface ThreadedOptions {
  readonly spec: ModelSpec;
  readonly program: Program;
  readonly seed: number;
  readonly adam: AdamConfig;
  readonly trace: boolean;
  readonly backend: BackendChoice;
  readonly threads?: number;
}

/** The thread of each device: thread j runs the contiguous block of device indices d with floor(d · threads / devices) = j. */
export function threadOwners(mesh: Mesh, threads: number): number[] {
  return Array.from({ length: mesh.size }, (_, d) => Math.floor((d * threads) / mesh.size));
}

export class ThreadedMesh {
  private constructor(private readonly workers: Worker[], private readonly lossThread: number, readonly backend: string) {}

  static async start(o: ThreadedOptions): Promise<ThreadedMesh> {
    const { mesh, plan } = o.program;
    const k = Math.max(1, Math.min(o.threads ?? defaultThreads(mesh), mesh.size));
    const owner = threadOwners(mesh, k);
    const memory = exchangeMemory(mesh.size, slotCapacity(o.program), owner);
    const workers = Array.from({ length: k }, takeWorker);
    const replies = await guard(workers, () => all(workers, (_, thread) => ({
      type: 'setup', spec: o.spec, mesh, plan, seed: o.seed, adam: o.adam, trace: o.trace, backend: o.backend, memory, thread,
    })));
    // The loss is on the first device of the last stage.
    return new ThreadedMesh(workers, owner[lastStageFirst(o.program)], (replies[0] as { backend: string }).backend);
  }

  async step(tokens: Int32Array, fault: Fault | null = null): Promise<number> {
    const r = await guard(this.workers, () => all(this.workers, () => ({ type: 'step', tokens, fault })));
    return (r[this.lossThread] as { loss: number }).loss;
  }

  async load(states: DeviceState[], stepIndex: number): Promise<void> {
    await all(this.workers, () => ({ type: 'load', states, stepIndex }));
  }

  /** Move the threads' device states, timings, sent bytes and trace events into a holder executor. */
  async collect(into: Executor, withStates: boolean): Promise<void> {
    const r = (await all(this.workers, () => ({ type: 'report', states: withStates }))) as Extract<FromWorker, { type: 'report' }>[];
    for (const rep of r) {
      for (const s of rep.states) {
        const d = into.devices[s.index];
        for (const [key, x] of s.params) d.params.set(key, x);
        for (const [key, x] of s.m) d.adamM.set(key, x);
        for (const [key, x] of s.v) d.adamV.set(key, x);
      }
      for (const [name, t] of rep.timings) {
        const have = into.timings.get(name) ?? { compute: 0, collective: 0, executions: 0 };
        into.timings.set(name, { compute: have.compute + t.compute, collective: have.collective + t.collective, executions: have.executions + t.executions });
      }
      into.events.push(...rep.events);
      for (const [dev, sent] of rep.sent) for (const [key, b] of sent) into.devices[dev].sent.set(key, b);
    }
    into.events.sort((a, b) => a.tid - b.tid || a.ts - b.ts);
  }

  /** Give the threads back to the pool (they hold no state between runs). */
  close(): void {
    idle.push(...this.workers.splice(0));
  }
}

function lastStageFirst(program: Program): number {
  const axes = axesOf(program.plan.layout, 'layers');
  for (let d = 0; d < program.mesh.size; d++) if (shardIndex(program.mesh, axes, deviceCoords(program.mesh, d)) === program.stages - 1) return d;
  return 0;
}

/** A run that failed leaves its threads mid-step: end them rather than give them back. */
async function guard<T>(workers: Worker[], f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    for (const w of workers.splice(0)) void w.terminate();
    throw e;
  }
}

/** Send one message to every worker and wait for all their answers; a fault in one is raised once all have stopped. */
function all(workers: Worker[], make: (w: Worker, i: number) => ToWorker): Promise<FromWorker[]> {
  return Promise.all(workers.map((w, i) => new Promise<FromWorker>((resolve, reject) => {
    const onError = (e: Error) => reject(e);
    w.once('error', onError);
    w.once('message', (m: FromWorker) => {
      w.off('error', onError);
      resolve(m);
    });
    w.postMessage(make(w, i));
  }))).then((rs) => {
    const errors = rs.filter((r): r is Extract<FromWorker, { type: 'error' }> => r.type === 'error');
    if (errors.length === 0) return rs;
    const first = errors.find((e) => e.fault) ?? errors.find((e) => !e.aborted) ?? errors[0];
    if (first.fault) throw new DeviceFault(first.fault.device, first.fault.op, first.fault.step, first.fault.detail);
    throw new Error(`a simulated device's thread failed: ${first.message}`);
  });
}
