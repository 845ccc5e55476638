import { buildGraph } from '../model/graph.js';
import { lower } from '../lower/lower.js';
import type { Plan } from '../lower/plan.js';
import type { Mesh } from '../mesh/mesh.js';
import type { ModelSpec } from '../model/spec.js';
import { DEFAULT_ADAM, type AdamConfig } from './adam.js';
import { initBackend, type BackendChoice } from './backend.js';
import { loadCheckpoint, saveCheckpoint } from './checkpoint.js';
import { DEFAULT_TEXT, loadText, textBatches } from './data.js';
import { Executor, type Fault } from './executor.js';
import { checkSimulable } from './index.js';
import { ThreadedMesh } from './threads.js';
import { checkWritable } from '../inputs/index.js';

/** The most steps a checkpoint may claim (the CLI's --steps bound). */
export const MAX_TRAIN_STEPS = 10_000_000;

export interface TrainOptions {
  readonly spec: ModelSpec;
  readonly mesh: Mesh;
  readonly plan: Plan;
  /** Steps to reach (a resumed run counts the steps already done). */
  readonly steps: number;
  readonly backend?: BackendChoice;
  readonly data?: string;
  readonly save?: string;
  /** Save every N steps as well as at the end (default: only at the end). */
  readonly saveEvery?: number;
  readonly resume?: string;
  readonly seed?: number;
  readonly adam?: AdamConfig;
  readonly fault?: Fault;
  readonly onStep?: (step: number, loss: number, seconds: number) => void;
  /** Worker threads for the devices (default: one per core, at most one per device); 0: lockstep in this thread. */
  readonly threads?: number;
  /** Asked between steps: true stops the run after the last complete step (and saves it, with `save`). */
  readonly stop?: () => boolean;
}

export interface TrainResult {
  readonly backend: string;
  /** Loss of every step from the first, the resumed ones included. */
  readonly losses: number[];
  readonly startStep: number;
  readonly tokensPerSecond: number;
  /** The run stopped early because `stop` said so. */
  readonly interrupted: boolean;
}

/** Learning rate for training the small model on text: larger than the check's 1e-3 (empirically, 3e-3 trains `tiny` fastest without diverging). */
export const TRAIN_ADAM: AdamConfig = { ...DEFAULT_ADAM, lr: 3e-3 };

export async function train(opts: TrainOptions): Promise<TrainResult> {
  // The output path is checked before any work: a typo never costs a training run.
  if (opts.save) checkWritable(opts.save, 'the checkpoint');
  const graph = buildGraph(opts.spec);
  const program = lower(graph, opts.mesh, opts.plan);
  checkSimulable(program);
  const bytes = loadText(opts.data ?? DEFAULT_TEXT, opts.spec);
  let backend = await initBackend(opts.backend ?? 'auto');
  let seed = opts.seed ?? 1;
  const adam = opts.adam ?? TRAIN_ADAM;
  const lockstep = opts.threads === 0;
  // Lockstep: this executor runs the devices. Threads: it holds their states for checkpoints only.
  const ex = new Executor(program, { seed, adam, trace: false, ...(lockstep ? {} : { owns: () => false }) });
  let losses: number[] = [];
  if (opts.resume) ({ seed, losses } = loadCheckpoint(opts.resume, ex, MAX_TRAIN_STEPS));
  let mesh: ThreadedMesh | null = null;
  if (lockstep) {
    if (opts.fault) ex.fault = opts.fault;
  } else {
    mesh = await ThreadedMesh.start({ spec: opts.spec, program, seed, adam, trace: false, backend: opts.backend ?? 'auto', threads: opts.threads });
    backend = mesh.backend;
    if (opts.resume) await mesh.load(ex.devices.map((d) => ({ index: d.index, params: [...d.params], m: [...d.adamM], v: [...d.adamV] })), ex.stepIndex);
  }
  const save = async () => {
    if (mesh) await mesh.collect(ex, true);
    saveCheckpoint(opts.save!, ex, seed, losses);
  };
  const batches = textBatches(bytes, opts.spec, seed);
  const startStep = ex.stepIndex;
  let seconds = 0;
  let interrupted = false;
  try {
    while (ex.stepIndex < opts.steps) {
      // A turn of the event loop between steps, so that a signal handler can ask the run to stop.
      await new Promise<void>((r) => setImmediate(r));
      if (opts.stop?.()) {
        interrupted = true;
        break;
      }
      const t0 = performance.now();
      const loss = mesh ? await mesh.step(batches(ex.stepIndex), opts.fault ?? null) : ex.step(batches(ex.stepIndex));
      if (mesh) ex.stepIndex++;
      const dt = (performance.now() - t0) / 1e3;
      seconds += dt;
      losses.push(loss);
      opts.onStep?.(ex.stepIndex, loss, dt);
      if (opts.save && opts.saveEvery && ex.stepIndex % opts.saveEvery === 0 && ex.stepIndex < opts.steps) await save();
    }
    if (opts.save) await save();
  } finally {
    mesh?.close();
  }
  const steps = ex.stepIndex - startStep;
  return { backend, losses, startStep, tokensPerSecond: steps ? (steps * opts.spec.batch * opts.spec.seqLen) / seconds : 0, interrupted };
}
