import type { CommandModule } from 'yargs';
import type { BackendChoice } from '../../runtime/backend.js';
import { DeviceFault } from '../../runtime/executor.js';
import { train } from '../../runtime/train.js';
import { fmtCount } from '../format.js';
import { planOptions, resolvePlanArgs, type PlanArgs } from './runtimeArgs.js';

interface Args extends PlanArgs {
  data?: string;
  save?: string;
  resume?: string;
  json?: boolean;
}

export const trainCommand: CommandModule<object, Args> = {
  command: 'train',
  describe: 'Train a small language model under a plan on the simulated mesh, on a text in data/',
  builder: (y) =>
    planOptions(y)
      .option('steps', { type: 'string', default: '200', describe: 'train until this many steps (a resumed run counts the ones done)' })
      .option('data', { type: 'string', describe: 'a text file, read byte by byte (default: data/coriolanus.txt, public domain)' })
      .option('save', { type: 'string', describe: 'write a checkpoint here (write, then rename) at the end' })
      .option('resume', { type: 'string', describe: 'continue from a checkpoint of the same model, mesh and plan' })
      .option('json', { type: 'boolean', describe: 'print one JSON object on stdout' }) as never,
  handler: async (args) => {
    const { spec, mesh, plan, steps: stepsArg } = resolvePlanArgs(args);
    const steps = stepsArg ?? 200;
    // Ctrl-C stops after the step under way and saves it (write, then rename); a second one kills.
    let stopping = false;
    const onSigint = () => {
      if (stopping) process.exit(130);
      stopping = true;
    };
    process.on('SIGINT', onSigint);
    const tty = process.stderr.isTTY === true;
    const width = 30;
    let r;
    try {
      r = await train({
        spec, mesh, plan, steps, backend: args.backend as BackendChoice, data: args.data, save: args.save, resume: args.resume,
        stop: () => stopping,
        onStep: (step, loss, seconds) => {
          if (tty) {
            const done = Math.round((width * step) / steps);
            process.stderr.write(`\r[${'#'.repeat(done)}${'.'.repeat(width - done)}] step ${step}/${steps} loss ${loss.toFixed(4)} ${fmtCount((spec.batch * spec.seqLen) / seconds)} tokens/s`);
          } else if (!args.json && (step % 20 === 0 || step === steps)) {
            process.stdout.write(`step ${step} loss ${loss.toFixed(4)}\n`);
          }
        },
      });
    } catch (e) {
      if (tty) process.stderr.write('\n');
      if (e instanceof DeviceFault) {
        process.stderr.write(`mesh-search: ${e.message}; the last checkpoint${args.save ? ` ${args.save}` : ''} is untouched\n`);
        process.exitCode = 1;
        return;
      }
      throw e;
    } finally {
      process.off('SIGINT', onSigint);
    }
    if (tty) process.stderr.write('\n');
    if (r.interrupted) {
      process.stderr.write(`mesh-search: interrupted after step ${r.losses.length}${args.save ? `; checkpoint of the last complete step written to ${args.save}` : ' (no --save: nothing written)'}\n`);
      process.exitCode = 130;
      return;
    }
    const first = r.losses[0], last = r.losses[r.losses.length - 1];
    if (args.json) {
      process.stdout.write(JSON.stringify({ backend: r.backend, startStep: r.startStep, steps: r.losses.length, losses: r.losses, tokensPerSecond: r.tokensPerSecond }) + '\n');
      return;
    }
    process.stdout.write(`trained ${spec.name} to step ${r.losses.length} on ${r.backend}: loss ${first?.toFixed(4)} -> ${last?.toFixed(4)}, ${fmtCount(r.tokensPerSecond)} tokens/s${args.save ? `, checkpoint ${args.save}` : ''}\n`);
  },
};
