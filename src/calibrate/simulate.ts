import type { HardwareProfile } from '../cost/profile.js';
import { makePlan } from '../lower/plan.js';
import { parseMesh } from '../mesh/mesh.js';
import { getPreset } from '../model/presets.js';
import type { ModelSpec } from '../model/spec.js';
import type { RawRow } from './resolve.js';
import { traceToRow, type StepStatistic } from './trace.js';

/** One plan to run on a simulated mesh. */
export interface SimCase {
  readonly mesh: string;
  readonly layout: string;
  readonly zero?: number;
  readonly recompute?: string;
  readonly microbatches?: number;
  readonly sequenceParallel?: boolean;
}

/**
 * 22 plans of the `tiny` model over 4 mesh shapes, with data, tensor, sequence and pipeline parallelism,
 * ZeRO, recompute and microbatches. Axes with one name have one size in every mesh here: the
 * simulator's collectives cost more on larger groups, and calibration fits one link per axis name.
 */
export const SIM_CASES: readonly SimCase[] = [
  { mesh: '2x2', layout: 'batch:rows;d_ff:cols;heads:cols;vocab:cols' },
  { mesh: '2x2', layout: 'batch:rows+cols' },
  { mesh: '2x2', layout: 'batch:rows+cols', zero: 3 },
  { mesh: '2x2', layout: 'd_ff:rows;heads:cols', recompute: 'full' },
  { mesh: '2x2', layout: 'layers:rows;batch:cols', microbatches: 2 },
  { mesh: '2x2', layout: 'batch:rows;d_ff:cols;heads:cols;vocab:cols', sequenceParallel: true },
  { mesh: 'x:4', layout: 'batch:x' },
  { mesh: 'x:4', layout: 'd_ff:x;heads:x;vocab:x' },
  { mesh: 'x:4', layout: 'batch:x', zero: 2, microbatches: 2 },
  { mesh: 'x:4', layout: 'heads:x', recompute: 'selective' },
  { mesh: 'x:4', layout: 'vocab:x;d_ff:x' },
  { mesh: 'x:4', layout: 'd_ff:x;heads:x;vocab:x', sequenceParallel: true },
  { mesh: 'y:2', layout: 'batch:y' },
  { mesh: 'y:2', layout: 'd_ff:y;heads:y' },
  { mesh: 'y:2', layout: 'layers:y', microbatches: 4 },
  { mesh: 'y:2', layout: '', recompute: 'full' },
  { mesh: 'y:2', layout: 'd_model:y' },
  { mesh: 'rows:2;cols:2;z:2', layout: 'batch:rows+z;d_ff:cols;heads:cols' },
  { mesh: 'rows:2;cols:2;z:2', layout: 'batch:z;vocab:rows;d_ff:cols' },
  { mesh: 'rows:2;cols:2;z:2', layout: 'batch:rows+cols+z' },
  { mesh: 'rows:2;cols:2;z:2', layout: 'layers:z;batch:rows;heads:cols', microbatches: 2 },
  { mesh: 'rows:2;cols:2;z:2', layout: 'batch:rows;d_ff:cols+z', zero: 1 },
];

export interface SimOptions {
  readonly base: HardwareProfile;
  /** A preset name (default tiny) or a spec. */
  readonly model?: string | ModelSpec;
  readonly steps?: number;
  readonly backend?: string;
  readonly statistic?: StepStatistic;
  /** Round-robin passes over the cases; each case keeps its fastest (default 1). */
  readonly passes?: number;
  readonly onRun?: (c: SimCase, seconds: number, trace: unknown) => void;
}

/**
 * Run each case on the simulated mesh (the runtime, loaded only here) and read its trace as a row.
 * With several passes the cases run round-robin and each keeps its fastest pass: the load of a
 * shared machine drifts over minutes, and interleaving spreads it over the cases.
 */
export async function measureCases(cases: readonly SimCase[], opts: SimOptions): Promise<RawRow[]> {
  const runtime = await import('../runtime/index.js');
  const model = opts.model ?? 'tiny';
  const spec = typeof model === 'string' ? getPreset(model) : model;
  const best: (RawRow | undefined)[] = cases.map(() => undefined);
  // A throwaway run first: V8 compiles the executor and tfjs its kernels on the first use.
  if (cases.length) {
    const c = cases[0];
    await runtime.runPlan({ spec, mesh: parseMesh(c.mesh), plan: makePlan(c.layout, c), steps: 2, backend: (opts.backend ?? 'auto') as never, device: opts.base });
  }
  for (let pass = 0; pass < (opts.passes ?? 1); pass++) {
    for (const [i, c] of cases.entries()) {
      const t0 = performance.now();
      const r = await runtime.runPlan({
        spec, mesh: parseMesh(c.mesh), plan: makePlan(c.layout, c), steps: opts.steps ?? 6,
        backend: (opts.backend ?? 'auto') as never, device: opts.base, trace: true, modelName: typeof model === 'string' ? model : undefined,
      });
      const row = traceToRow(r.trace, `simulated run ${i + 1} (${c.mesh} ${c.layout || 'replicated'})`, opts.statistic);
      const prev = best[i];
      if (!prev || (typeof row.stepTime === 'number' && typeof prev.stepTime === 'number' && row.stepTime < prev.stepTime)) best[i] = row;
      opts.onRun?.(c, (performance.now() - t0) / 1e3, r.trace);
    }
  }
  return best as RawRow[];
}
