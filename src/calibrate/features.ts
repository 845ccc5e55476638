import type { HardwareProfile, OpClassName } from '../cost/profile.js';
import { latencySteps } from '../lower/collectives.js';
import { maskSize } from '../layout/layout.js';
import type { Program } from '../lower/program.js';
import { OP_CLASSES } from './types.js';

/** What one op class does in a step on one device: linear in 1/efficiency and the per-kernel cost. */
export interface ClassWork {
  /** Seconds at efficiency 1: Σ count · work / rate (FLOPs / peak for matmuls, bytes / memory bandwidth else). */
  readonly work: number;
  /** Kernel launches over the rate: Σ count / rate over ops with work (times halfWork·/efficiency: their cost). */
  readonly calls: number;
  /** The part of both in the backward (and recompute), which overlappable communication hides behind. */
  readonly backwardWork: number;
  readonly backwardCalls: number;
}

/** Collectives of one kind of exposure over one set of axes, summed over the step. */
export interface CommGroup {
  readonly axes: readonly string[];
  /** Σ count · bytes sent per device. */
  readonly sent: number;
  /** Σ count · latency steps of the ring. */
  readonly steps: number;
  readonly overlappable: boolean;
}

/** A program reduced to the numbers the step-time model is a function of (price.ts, term by term). */
export interface Features {
  readonly classes: Readonly<Record<OpClassName, ClassWork>>;
  readonly comm: readonly CommGroup[];
  /** Pipeline bubble as a fraction of the step: (stages − 1) / microbatches, 0 without a pipeline. */
  readonly bubble: number;
}

export function featuresOf(program: Program, profile: HardwareProfile): Features {
  const peak = profile.peakFlops[program.graph.spec.dtype];
  const acc = Object.fromEntries(OP_CLASSES.map((k) => [k, { work: 0, calls: 0, backwardWork: 0, backwardCalls: 0 }])) as Record<OpClassName, { work: number; calls: number; backwardWork: number; backwardCalls: number }>;
  const comm = new Map<string, { axes: string[]; sent: number; steps: number; overlappable: boolean }>();
  for (const op of program.ops) {
    const matmul = op.klass === 'matmul';
    const w = matmul ? op.flops : op.bytes;
    if (w > 0) {
      const a = acc[op.klass];
      const rate = matmul ? peak : profile.memoryBandwidth;
      a.work += (w / rate) * op.count;
      a.calls += op.count / rate;
      if (op.phase === 'backward' || op.phase === 'recompute') {
        a.backwardWork += (w / rate) * op.count;
        a.backwardCalls += op.count / rate;
      }
    }
    for (const c of op.collectives) {
      const n = c.kind === 'send' ? 2 : maskSize(program.mesh, c.mask);
      if (n <= 1) continue;
      const key = `${c.axes.join('+')}|${c.overlappable}`;
      const g = comm.get(key) ?? { axes: [...c.axes], sent: 0, steps: 0, overlappable: c.overlappable };
      g.sent += c.sent * op.count;
      g.steps += latencySteps(c.kind, n) * op.count;
      comm.set(key, g);
    }
  }
  const bubble = program.stages > 1 ? (program.stages - 1) / program.plan.microbatches : 0;
  return { classes: acc, comm: [...comm.values()], bubble };
}
