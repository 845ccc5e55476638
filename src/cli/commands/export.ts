import type { CommandModule } from 'yargs';
import { DEFAULT_DEVICE } from '../../cost/presets.js';
import { InputError } from '../../errors.js';
import { exportPlan } from '../../export/exportPlan.js';
import { FORMATS } from '../../export/target.js';
import { checkWritable, resolveDevice, resolvePlan, writeAtomic } from '../../inputs/index.js';
import { RECOMPUTE_HELP, ZERO_AXES_HELP } from './runtimeArgs.js';

interface Args {
  plan?: string;
  format: string;
  mesh?: string;
  model?: string;
  layout?: string;
  zero?: string;
  recompute?: string;
  microbatches?: string;
  sequenceParallel?: boolean;
  virtualStages?: string;
  zeroAxes?: string;
  device?: string;
  out?: string;
}

export const exportCommand: CommandModule<object, Args> = {
  command: 'export',
  describe: "Write a plan as a training engine's own configuration (exit 2, saying what is missing, when the engine cannot express it)",
  builder: (y) =>
    y
      .option('plan', { type: 'string', describe: 'a plan file written by search --out' })
      .option('format', { type: 'string', choices: FORMATS as unknown as string[], demandOption: true, describe: 'the target engine' })
      .option('mesh', { type: 'string', describe: 'mesh shape (overrides the plan file)' })
      .option('model', { type: 'string', describe: 'model preset or JSON spec file (overrides the plan file)' })
      .option('layout', { type: 'string', describe: 'layout rules, instead of --plan' })
      .option('zero', { type: 'string', describe: 'ZeRO stage 0-3 over the batch axes' })
      .option('zero-axes', { type: 'string', describe: ZERO_AXES_HELP })
      .option('recompute', { type: 'string', describe: RECOMPUTE_HELP })
      .option('microbatches', { type: 'string', describe: 'microbatches per step' })
      .option('sequence-parallel', { type: 'boolean', describe: "Megatron's sequence parallelism on the tensor-parallel axes" })
      .option('virtual-stages', { type: 'string', describe: 'interleaved 1F1B: pipeline chunks per device' })
      .option('device', { type: 'string', describe: `hardware preset or profile JSON: which axes cross slices (default: the plan file's, else ${DEFAULT_DEVICE})` })
      .option('out', { type: 'string', describe: 'write the configuration to this file instead of stdout' }),
  handler: (args) => {
    if (args.plan === undefined && args.layout === undefined) throw new InputError('export needs --plan plan.json (or --layout with --mesh and --model)');
    const { spec, mesh, plan, file } = resolvePlan(args);
    const profile = resolveDevice(args.device, file, args.plan, DEFAULT_DEVICE);
    if (args.out !== undefined) checkWritable(args.out, 'the configuration');
    const out = exportPlan({ plan, mesh, spec, profile }, args.format);
    if (args.out !== undefined) {
      writeAtomic(args.out, out.text, 'the configuration');
      process.stderr.write(`mesh-search: wrote the ${args.format} configuration to ${args.out}\n`);
    } else {
      process.stdout.write(out.text);
    }
  },
};
