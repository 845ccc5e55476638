import { collectiveTime, opTime } from '../cost/price.js';
import type { HardwareProfile } from '../cost/profile.js';
import { InputError } from '../errors.js';
import { axesOf } from '../layout/layout.js';
import { lower } from '../lower/lower.js';
import { planToJson, type Plan, type PlanJson } from '../lower/plan.js';
import type { Program } from '../lower/program.js';
import { formatMesh, type Mesh } from '../mesh/mesh.js';
import { buildGraph, type Graph } from '../model/graph.js';
import type { ModelSpec } from '../model/spec.js';
import { DEFAULT_ADAM, type AdamConfig } from './adam.js';
import { initBackend, type BackendChoice } from './backend.js';
import { Executor, type Fault } from './executor.js';
import { runReference } from './reference.js';
import { shardIndex } from './shard.js';
import { ThreadedMesh } from './threads.js';
import type { StepRecord, Trace } from './trace.js';
import { gcMode, type GcMode } from './gc.js';

export { DeviceFault, Executor, type Fault } from './executor.js';
export type { Trace, TraceEvent, StepRecord } from './trace.js';
export { initBackend, type BackendChoice } from './backend.js';
export { defaultThreads, ThreadedMesh } from './threads.js';

/** Most devices the simulator takes: each is a set of buffers in this process. */
export const MAX_DEVICES = 64;
/** Most bytes of model state and activations, all devices together, the simulator will hold. */
export const MAX_SIMULATED_BYTES = 2 * 2 ** 30;

export interface RunOptions {
  readonly spec: ModelSpec;
  readonly mesh: Mesh;
  readonly plan: Plan;
  readonly steps?: number;
  readonly backend?: BackendChoice;
  /** Hardware profile that prices each op's estimate (default: the caller's tpu-v2). */
  readonly device: HardwareProfile;
  /** Also train the unsplit reference and report the largest relative difference. */
  readonly check?: boolean;
  /** Collect trace events (always returned in `trace`; events only when true). */
  readonly trace?: boolean;
  readonly seed?: number;
  readonly adam?: AdamConfig;
  /** Global token batches [batch, seqLen + 1] per step; default: seeded random tokens. */
  readonly batches?: (step: number) => Int32Array;
  readonly fault?: Fault;
  /** The model as the user named it (a preset name), for the trace. */
  readonly modelName?: string;
  /** Worker threads that run the devices at once (default: one per core, at most one per device); 0: all in this thread, in lockstep. */
  readonly threads?: number;
}

export interface OpReport {
  readonly name: string;
  readonly phase: string;
  /** Seconds per execution on one simulated device: kernels plus its collectives. */
  readonly measured: number;
  /** The cost model's seconds per execution: opTime plus collectiveTime of each collective. */
  readonly estimated: number;
}

export interface RunResult {
  readonly plan: PlanJson;
  readonly backend: string;
  /** How this process collected garbage: step times on the threaded mesh depend on it (runtime/gc.ts). */
  readonly gc: GcMode;
  readonly steps: StepRecord[];
  readonly ops: OpReport[];
  readonly check?: {
    readonly maxRelativeError: number; readonly loss: number; readonly params: number; readonly worst: string;
    /**
     * When the weights differ by more than 1e-4: the same run with Adam's epsilon 1 (a step nearly
     * linear in the gradient), against the unsplit model under the same epsilon.
     */
    readonly linear?: { readonly params: number; readonly worst: string };
  };
  readonly trace: Trace;
}

/** Refuse what this machine cannot simulate, in one line. */
export function checkSimulable(program: Program): void {
  const { mesh } = program;
  if (mesh.size > MAX_DEVICES) {
    throw new InputError(`a mesh of ${mesh.size} devices is too large to simulate here (at most ${MAX_DEVICES})`);
  }
  const total = program.memory.total * mesh.size;
  if (total > MAX_SIMULATED_BYTES) {
    throw new InputError(`the shards would need ${(total / 2 ** 30).toFixed(1)} GiB across ${mesh.size} simulated devices, more than the ${MAX_SIMULATED_BYTES / 2 ** 30} GiB this simulator holds`);
  }
  // Not yet in the executor: refused rather than run as something else (its check would fail).
  if (program.stages > 1 && program.graph.spec.kind !== 'decoder') {
    throw new InputError('the runtime runs pipelines (layers on a mesh axis) of decoder-only models only');
  }
}

/** Seeded random token rows, [batch, seqLen + 1]. */
export function randomBatches(graph: Graph, seed: number): (step: number) => Int32Array {
  return (step) => {
    const { batch, seqLen } = graph.spec;
    const out = new Int32Array(batch * (seqLen + 1));
    let x = (seed * 2654435761 + step * 40503 + 1) >>> 0;
    for (let i = 0; i < out.length; i++) {
      x ^= x << 13; x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5; x >>>= 0;
      out[i] = x % graph.dimSizes.vocab;
    }
    return out;
  };
}

/** Assemble a weight's global value from the devices' blocks: for checking only. */
export function globalParams(ex: Executor): Map<string, Float32Array> {
  const { graph, plan, layout, mesh } = ex.program;
  const out = new Map<string, Float32Array>();
  for (const dev of ex.devices) {
    for (const { w, key, layer } of ex.weightKeys(dev)) {
      const dims = graph.tensors.get(w)!.dims;
      const gshape = dims.map((d) => graph.dimSizes[d]);
      const lshape = dims.map((d) => graph.dimSizes[d] / layout.split[d]);
      // Shared weights are read where they are used: the embedding on the first stage, the rest on the last.
      const b = graph.blocks.find((bl) => bl.ops.some((o) => o.inputs.includes(w)))!;
      if (layer === null && dev.stage !== (b.name === 'embed' ? 0 : ex.program.stages - 1)) continue;
      let local = dev.params.get(key)!;
      if (plan.zero >= 3 && ex.sharded(w) && local.length !== lshape.reduce((a, c) => a * c, 1)) {
        // ZeRO-3 keeps a chunk: collect the group's chunks (checking, not a device, does this).
        const n = lshape.reduce((a, c) => a * c, 1);
        local = new Float32Array(n);
        for (const peer of ex.devices) {
          if (!sameBlock(ex, dev, peer, dims)) continue;
          const [s] = ex.chunkOf(peer, n, w);
          local.set(peer.params.get(key)!, s);
        }
      }
      if (!out.has(key)) out.set(key, new Float32Array(gshape.reduce((a, c) => a * c, 1)));
      const g = out.get(key)!;
      const off = dims.map((d, i) => shardIndex(mesh, axesOf(plan.layout, d), dev.coords) * lshape[i]);
      place(g, gshape, local, lshape, off);
    }
  }
  return out;
}

function sameBlock(ex: Executor, a: { coords: readonly number[] }, b: { coords: readonly number[] }, dims: readonly string[]): boolean {
  const { plan, mesh } = ex.program;
  return dims.every((d) => shardIndex(mesh, axesOf(plan.layout, d as never), a.coords) === shardIndex(mesh, axesOf(plan.layout, d as never), b.coords))
    && shardIndex(mesh, axesOf(plan.layout, 'layers'), a.coords) === shardIndex(mesh, axesOf(plan.layout, 'layers'), b.coords);
}

function place(g: Float32Array, gshape: number[], local: Float32Array, lshape: number[], off: number[]): void {
  const r = lshape.length;
  const idx = new Array<number>(r).fill(0);
  for (let e = 0; e < local.length; e++) {
    let at = 0;
    for (let k = 0; k < r; k++) at = at * gshape[k] + off[k] + idx[k];
    g[at] = local[e];
    for (let k = r - 1; k >= 0; k--) {
      if (++idx[k] < lshape[k]) break;
      idx[k] = 0;
    }
  }
}

/** Largest relative difference of two weight sets: per weight, max |a − b| / max |b|. */
export function compareParams(a: Map<string, Float32Array>, b: Map<string, Float32Array>): { max: number; worst: string } {
  let max = 0;
  let worst = '';
  for (const [key, ref] of b) {
    const x = a.get(key);
    if (!x) throw new Error(`weight ${key} is missing from the run`);
    let d = 0, s = 0;
    for (let i = 0; i < ref.length; i++) {
      d = Math.max(d, Math.abs(x[i] - ref[i]));
      s = Math.max(s, Math.abs(ref[i]));
    }
    const rel = d / (s || 1);
    if (rel > max || Number.isNaN(rel)) {
      max = Number.isNaN(rel) ? Infinity : rel;
      worst = key;
    }
  }
  return { max, worst };
}

// Above this parameter difference, --check also runs the linear-step comparison (runPlan).
export const LINEAR_CHECK_ABOVE = 1e-4;
const LINEAR_EPS = 1;

/** Execute a plan on a simulated mesh for some steps: the programmatic `mesh-search run`. */
export async function runPlan(opts: RunOptions): Promise<RunResult> {
  const graph = buildGraph(opts.spec);
  const program = lower(graph, opts.mesh, opts.plan);
  checkSimulable(program);
  let backend = await initBackend(opts.backend ?? 'auto');
  const seed = opts.seed ?? 1;
  const adam = opts.adam ?? DEFAULT_ADAM;
  const steps = opts.steps ?? 1;
  const batches = opts.batches ?? randomBatches(graph, seed);
  const tracing = opts.trace ?? false;
  const records: StepRecord[] = [];
  let ex: Executor;
  if (opts.threads === 0) {
    ex = new Executor(program, { seed, adam, trace: tracing });
    if (opts.fault) ex.fault = opts.fault;
    for (let s = 0; s < steps; s++) {
      const t0 = performance.now();
      const loss = ex.step(batches(s));
      records.push({ loss, seconds: (performance.now() - t0) / 1e3 });
    }
  } else {
    // The threads hold the devices; this executor holds what they report (no weights of its own until then).
    ex = new Executor(program, { seed, adam, trace: tracing, owns: () => false });
    const mesh = await ThreadedMesh.start({ spec: opts.spec, program, seed, adam, trace: tracing, backend: opts.backend ?? 'auto', threads: opts.threads });
    backend = mesh.backend;
    for (let s = 0; s < steps; s++) {
      const t0 = performance.now();
      const loss = await mesh.step(batches(s), opts.fault ?? null);
      records.push({ loss, seconds: (performance.now() - t0) / 1e3 });
    }
    await mesh.collect(ex, opts.check === true);
    mesh.close();
  }
  const ops = opReports(ex, opts.device);
  let check: RunResult['check'];
  if (opts.check) {
    const ref = runReference(graph, Array.from({ length: steps }, (_, s) => batches(s)), seed, adam);
    let loss = 0;
    records.forEach((r, i) => (loss = Math.max(loss, Math.abs(r.loss - ref.losses[i]) / Math.abs(ref.losses[i]))));
    const p = compareParams(globalParams(ex), ref.params);
    check = { maxRelativeError: Math.max(loss, p.max), loss, params: p.max, worst: p.worst };
    if (p.max > LINEAR_CHECK_ABOVE && adam.eps < LINEAR_EPS) {
      // Adam's step is the gradient over its running magnitude: where that magnitude is near epsilon,
      // float32 rounding that differs with the order of a sum (sharded or not) moves a weight by a
      // whole step. Run again with epsilon 1, where the step is nearly linear in the gradient:
      // that difference is the sharded program's own.
      const again = await runPlan({ ...opts, trace: false, fault: undefined, adam: { ...adam, eps: LINEAR_EPS } });
      check = { ...check, linear: { params: again.check!.params, worst: again.check!.worst } };
    }
  }
  const gc = gcMode();
  const trace: Trace = {
    traceEvents: ex.events,
    otherData: { mesh: formatMesh(opts.mesh), model: opts.modelName ?? opts.spec, plan: planToJson(opts.plan), backend, gc, steps: records },
  };
  return { plan: planToJson(opts.plan), backend, gc, steps: records, ops, ...(check ? { check } : {}), trace };
}

/** Each lowered record's measured time beside the cost model's estimate, per execution on one device. */
export function opReports(ex: Executor, profile: HardwareProfile): OpReport[] {
  const { program } = ex;
  const peak = profile.peakFlops[program.graph.spec.dtype];
  const out: OpReport[] = [];
  for (const rec of program.ops) {
    const t = ex.timings.get(`${rec.phase}|${rec.name}`);
    if (!t || t.executions === 0) continue;
    const estimated = opTime(profile, rec, peak) + rec.collectives.reduce((s, c) => s + collectiveTime(profile, program.mesh, c), 0);
    out.push({ name: rec.name, phase: rec.phase, measured: (t.compute + t.collective) / t.executions, estimated });
  }
  return out;
}
