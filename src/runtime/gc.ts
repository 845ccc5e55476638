/**
 * V8 collects garbage on helper threads besides the thread that allocates. On a mesh simulated
 * with one thread per core those helpers take cores from the devices: on this 2-core machine a
 * 2-device data-parallel step of `small` ran 1.55x faster than the unsplit step under the default
 * GC and 1.79x under `--single-threaded-gc`, side by side (bench/runtime, 2026-12-06). The flag
 * can only be given when node starts (setting it later aborts V8), so bin/mesh-search.js starts
 * `run`, `train` and `tune` with it; a program that calls runPlan starts node with it itself.
 */
export const SINGLE_THREADED_GC = '--single-threaded-gc';

/** The environment variable that keeps V8's default (parallel) GC for the runtime commands. */
export const PARALLEL_GC_ENV = 'MESH_SEARCH_PARALLEL_GC';

export type GcMode = 'single-threaded' | 'parallel';

/** How this process collects garbage: what a measured step time depends on. */
export function gcMode(execArgv: readonly string[] = process.execArgv): GcMode {
  return execArgv.includes(SINGLE_THREADED_GC) ? 'single-threaded' : 'parallel';
}
