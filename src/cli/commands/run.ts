import type { CommandModule } from 'yargs';
import type { BackendChoice } from '../../runtime/backend.js';
import { LINEAR_CHECK_ABOVE, runPlan } from '../../runtime/index.js';
import { fmtSeconds, table } from '../format.js';
import { checkWritable, writeAtomic } from '../../inputs/index.js';
import { planOptions, resolvePlanArgs, type PlanArgs } from './runtimeArgs.js';

interface Args extends PlanArgs {
  trace?: string;
  check?: boolean;
  json?: boolean;
}

export const runCommand: CommandModule<object, Args> = {
  command: 'run',
  describe: 'Execute a plan on a simulated mesh: loss, step time, each op measured beside its estimate',
  builder: (y) =>
    planOptions(y)
      .option('steps', { type: 'string', default: '3', describe: 'training steps' })
      .option('trace', { type: 'string', describe: 'write Chrome trace-event JSON (Perfetto opens it; calibrate reads it)' })
      .option('check', { type: 'boolean', describe: 'also run the unsplit reference and report the largest relative difference' })
      .option('json', { type: 'boolean', describe: 'print one JSON object on stdout' }) as never,
  handler: async (args) => {
    const { spec, mesh, plan, modelName, steps, device: deviceOf } = resolvePlanArgs(args);
    const device = deviceOf();
    if (args.trace !== undefined) checkWritable(args.trace, 'the trace');
    const r = await runPlan({
      spec, mesh, plan, steps: steps ?? 3, backend: args.backend as BackendChoice, device, check: args.check === true,
      trace: args.trace !== undefined, modelName,
    });
    if (args.trace !== undefined) {
      writeAtomic(args.trace, JSON.stringify(r.trace), 'the trace');
    }
    const { trace: _trace, ...out } = r;
    if (args.json) {
      process.stdout.write(JSON.stringify(out) + '\n');
      return;
    }
    const lines = [
      `ran ${spec.name} on ${mesh.axes.map((a) => `${a.name}:${a.size}`).join(';')} (${mesh.size} simulated devices, ${r.backend} kernels, ${r.gc} GC)`,
      `plan ${out.plan.layout || '(replicated)'} zero ${out.plan.zero} recompute ${out.plan.recompute} microbatches ${out.plan.microbatches}`,
      '',
      table(['step', 'loss', 'seconds'], out.steps.map((s, i) => [String(i + 1), s.loss.toFixed(5), fmtSeconds(s.seconds)])),
      '',
      'slowest ops, per execution on one device (measured here; estimated for the --device profile):',
      table(['op', 'phase', 'measured', 'estimated'],
        [...out.ops].sort((a, b) => b.measured - a.measured).slice(0, 12).map((o) => [o.name, o.phase, fmtSeconds(o.measured), fmtSeconds(o.estimated)])),
    ];
    if (out.check) lines.push('', `check against the unsplit model: largest relative difference ${out.check.maxRelativeError.toExponential(2)} (loss ${out.check.loss.toExponential(2)}, parameters ${out.check.params.toExponential(2)} in ${out.check.worst})`);
    if (out.check?.linear) {
      lines.push(`with a step linear in the gradient (Adam's epsilon 1): parameters ${out.check.linear.params.toExponential(2)} in ${out.check.linear.worst}${out.check.linear.params <= LINEAR_CHECK_ABOVE
        ? ': the larger figure is Adam\'s normalised step on gradients near its epsilon, whose float32 rounding differs with the order of a sum'
        : ''}`);
    }
    if (args.trace !== undefined) lines.push('', `trace written to ${args.trace}`);
    process.stdout.write(lines.join('\n') + '\n');
  },
};
