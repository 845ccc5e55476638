import type { CommandModule } from 'yargs';
import { InputError } from '../../errors.js';
import { tune, type TuneReport } from '../../calibrate/tune.js';
import { describePlan, planFromJson } from '../../lower/plan.js';
import { fmtSeconds } from '../format.js';
import { availableParallelism } from 'node:os';
import { checkWritable, enumFlag, intFlag, loadDevice, loadMesh, loadModel, workersFlag, writeAtomic } from '../../inputs/index.js';
import { formatReport } from './calibrate.js';
import { BACKENDS, MAX_STEPS } from './runtimeArgs.js';

interface Args {
  mesh?: string;
  model?: string;
  device: string;
  runs: string;
  steps: string;
  passes: string;
  backend: string;
  workers?: string;
  out?: string;
  json?: boolean;
}

export function formatTune(r: TuneReport, out?: string): string {
  const t = r.tune;
  const line = (what: string, c: TuneReport['tune']['old']) =>
    `${what} ${describePlan(planFromJson(c.plan))}\n    estimated ${fmtSeconds(c.estimated)}, measured ${fmtSeconds(c.measured)} per step on the simulated mesh`;
  return [
    formatReport(r, out).trimEnd(),
    '',
    `ran ${t.measuredPlans} plans on the simulated mesh, fastest measured first:`,
    ...t.runs.map((c) => `  ${fmtSeconds(c.measured).padStart(10)} measured  ${fmtSeconds(c.estimated).padStart(10)} calibrated estimate  ${describePlan(planFromJson(c.plan))}`),
    line('before calibration the search chose', t.old),
    line('after calibration it chooses        ', t.new),
    t.changed
      ? `the choice changed: measured ${t.speedup >= 1 ? `${t.speedup.toFixed(2)}x faster` : `${(1 / t.speedup).toFixed(2)}x slower`} than the old one`
      : 'the choice did not change',
    t.fastestMeasured ? 'the choice measured fastest of the plans run' : 'a plan it ran measured faster than the choice (within the noise of the simulated mesh, or a miss of the calibrated model)',
  ].join('\n') + '\n';
}

export const tuneCommand: CommandModule<object, Args> = {
  command: 'tune',
  describe: 'Closed loop: search, run the best plans on the simulated mesh, calibrate on their traces, search again',
  builder: (y) =>
    y
      .option('mesh', { type: 'string', describe: 'mesh shape to simulate, e.g. 2x2' })
      .option('model', { type: 'string', default: 'small', describe: 'model preset or JSON spec, small enough to simulate (small, tiny)' })
      .option('device', { type: 'string', default: 'host', describe: 'base profile the first search uses and calibration starts from (host: this machine, bench/host.bench.mjs)' })
      .option('runs', { type: 'string', default: '8', describe: 'how many of the best plans to run and calibrate on' })
      .option('steps', { type: 'string', default: '4', describe: 'training steps per run (the first is left out as warm-up)' })
      .option('passes', { type: 'string', default: '3', describe: 'round-robin passes over the plans: each plan runs once per pass, every other pass in reverse order, and keeps its fastest run (load from outside only slows a run)' })
      .option('backend', { type: 'string', default: 'auto', choices: [...BACKENDS], describe: 'tfjs backend for the runs: auto | wasm | cpu | tensorflow' })
      .option('workers', { type: 'string', describe: 'search worker threads (0: inline)' })
      .option('out', { type: 'string', describe: 'write the calibrated profile JSON here' })
      .option('json', { type: 'boolean', describe: 'print one JSON object on stdout' }),
  handler: async (args) => {
    // Every flag is checked before anything runs: a typo never costs the runs before it.
    if (args.mesh === undefined) throw new InputError('--mesh is required (a small mesh to simulate, like 2x2)');
    if (args.model === undefined) throw new InputError('--model is required (a model small enough to simulate, like tiny)');
    const spec = loadModel(args.model);
    const mesh = loadMesh(args.mesh);
    const base = loadDevice(args.device);
    const runs = intFlag('runs', args.runs, 3, 1000, 'leave-one-plan-out needs 3 plans');
    const steps = intFlag('steps', args.steps, 2, MAX_STEPS, 'the first is warm-up');
    const passes = intFlag('passes', args.passes, 1, 20, 'each pass runs every plan once');
    const backendChoice = enumFlag('backend', args.backend, BACKENDS);
    const workers = workersFlag(args.workers, availableParallelism(), (line) => process.stderr.write(`mesh-search: ${line}\n`));
    if (args.out !== undefined) checkWritable(args.out, 'the profile');
    // The runtime loads tfjs: only this command pays for it.
    const runtime = await import('../../runtime/index.js');
    if (mesh.size > runtime.MAX_DEVICES) throw new InputError(`tune runs plans on a simulated mesh of at most ${runtime.MAX_DEVICES} devices; ${args.mesh} has ${mesh.size}`);
    const backend: Parameters<typeof runtime.runPlan>[0]['backend'] = backendChoice;
    const modelName = typeof args.model === 'string' && !args.model.endsWith('.json') ? args.model : undefined;
    const report = await tune({
      spec, mesh, base, runs, workers, passes,
      measure: async (plan) => (await runtime.runPlan({ spec, mesh, plan, steps, backend, device: base, trace: true, modelName })).trace,
      onProgress: (line) => process.stderr.write(`tune: ${line}\n`),
    });
    if (args.out) writeAtomic(args.out, JSON.stringify(report.profile, null, 2) + '\n', 'the profile');
    process.stdout.write(args.json ? JSON.stringify(report) + '\n' : formatTune(report, args.out));
  },
};
