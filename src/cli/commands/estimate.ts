import type { CommandModule } from 'yargs';
import type { Estimate } from '../../cost/estimate.js';
import { estimatePlan } from '../../cost/estimatePlan.js';
import { DEFAULT_DEVICE } from '../../cost/presets.js';
import { buildGraph } from '../../model/graph.js';
import { CAPABILITIES, ENGINES, whyNot } from '../../engine/index.js';
import { engineProfile, pricingProfile } from '../../search/index.js';
import { engineArg } from './search.js';
import { fmtBytes, fmtCount, fmtParams, fmtSeconds, table } from '../format.js';
import { resolveDevice, resolvePlan, withNodeSize } from '../../inputs/index.js';
import { RECOMPUTE_HELP, ZERO_AXES_HELP } from './runtimeArgs.js';

interface Args {
  mesh?: string;
  model?: string;
  layout?: string;
  plan?: string;
  zero?: string;
  recompute?: string;
  microbatches?: string;
  sequenceParallel?: boolean;
  virtualStages?: string;
  zeroAxes?: string;
  device?: string;
  nodeSize?: string;
  json?: boolean;
  engine?: string;
}

export function formatEstimate(e: Estimate): string {
  const lines = [
    `model ${e.model.name} (${fmtParams(e.model.params)} parameters) on mesh ${e.mesh.axes.map((a) => `${a.name}:${a.size}`).join(';')}, ${e.device}`,
    `plan  ${e.plan.layout || '(replicated)'}  zero ${e.plan.zero}${e.plan.zeroAxes ? ` over ${e.plan.zeroAxes.join('+')}` : ''}  recompute ${e.plan.recompute}  microbatches ${e.plan.microbatches}`,
    `valid ${e.valid}  feasible ${e.feasible}`,
    ...e.reasons.map((r) => `  - ${r}`),
    '',
    `step ${fmtSeconds(e.time.step)}  (compute ${fmtSeconds(e.time.compute)}, exposed communication ${fmtSeconds(e.time.exposedCommunication)} of ${fmtSeconds(e.time.communication)}, bubble ${fmtSeconds(e.time.bubble)})`,
    `MFU ${(e.mfu * 100).toFixed(1)}%   ${fmtCount(e.tokensPerSecond)} tokens/s   model FLOPs/step ${fmtCount(e.flops.modelPerStep)}   per device ${fmtCount(e.flops.perDevice)}`,
    '',
    `memory per device ${fmtBytes(e.memory.total)} of ${fmtBytes(e.memory.capacity)}: params ${fmtBytes(e.memory.params)}, gradients ${fmtBytes(e.memory.gradients)}, optimizer ${fmtBytes(e.memory.optimizer)}, activations ${fmtBytes(e.memory.activations)}, temporary ${fmtBytes(e.memory.temporary)}`,
    `sent per device ${fmtBytes(e.communication.bytesPerDevice)}: ${Object.entries(e.communication.byAxis).map(([a, b]) => `${a} ${fmtBytes(b)}`).join(', ') || 'nothing'}`,
  ];
  if (e.communication.collectives.length) {
    lines.push('', table(['collective', 'axes', 'bytes', 'per step'],
      e.communication.collectives.map((c) => [c.kind, c.axes.join('+'), fmtBytes(c.bytes), String(c.count)])));
  }
  return lines.join('\n') + '\n';
}

export const estimateCommand: CommandModule<object, Args> = {
  command: 'estimate',
  describe: 'Price one plan: FLOPs, memory, collectives, step time and MFU per device',
  builder: (y) =>
    y
      .option('mesh', { type: 'string', describe: 'mesh shape: 16x32, 2x4x8 or rows:16;cols:32' })
      .option('model', { type: 'string', describe: 'model preset (mesh-search models) or JSON spec file' })
      .option('layout', { type: 'string', describe: 'layout rules, e.g. "batch:rows;d_ff:cols;heads:cols;vocab:cols"' })
      .option('plan', { type: 'string', describe: 'a plan file written by search --out (instead of --layout)' })
      .option('zero', { type: 'string', describe: 'ZeRO stage 0-3 over the batch axes' })
      .option('zero-axes', { type: 'string', describe: ZERO_AXES_HELP })
      .option('recompute', { type: 'string', describe: RECOMPUTE_HELP })
      .option('microbatches', { type: 'string', describe: 'microbatches per step' })
      .option('sequence-parallel', { type: 'boolean', describe: "Megatron's sequence parallelism: norms, dropout and residuals split length on the tensor-parallel axes (Korthikanti et al. 2022)" })
      .option('virtual-stages', { type: 'string', describe: 'interleaved 1F1B: pipeline chunks per device (bubble (p-1)/(V·m); needs layers split)' })
      .option('device', { type: 'string', describe: `hardware preset (mesh-search devices) or profile JSON (default: the plan file's, else ${DEFAULT_DEVICE})` })
      .option('node-size', { type: 'string', describe: "devices in the profile's innermost network level (72 for an NVL72 rack, a TPU slice's chips)" })
      .option('json', { type: 'boolean', describe: 'print one JSON object on stdout' })
      .option('engine', { type: 'string', choices: ENGINES as unknown as string[], describe: 'also say whether this training engine can express the plan, and why not; priced as it runs it (what its full recompute reruns, eager or fused kernels, the gradient sync it hides)' }),
  handler: (args) => {
    const { spec, mesh, plan, file } = resolvePlan(args);
    const profile = withNodeSize(resolveDevice(args.device, file, args.plan, DEFAULT_DEVICE), args.nodeSize ?? file?.nodeSize);
    const engine = engineArg(args.engine);
    // With --engine, priced as that engine runs it (its full recompute and kernels; pricingProfile: gradient sync it does not hide).
    const e = estimatePlan(buildGraph(spec), mesh, plan, engine ? pricingProfile({ engine }, plan, engineProfile({ engine }, profile)) : profile);
    // An added field: whether the engine can run the plan, with its reasons (src/engine rules).
    const verdict = engine ? { name: engine, expressible: false, reasons: whyNot(engine, plan, mesh, spec, profile) } : null;
    if (verdict) verdict.expressible = verdict.reasons.length === 0;
    if (args.json) process.stdout.write(JSON.stringify(verdict ? { ...e, engine: verdict } : e) + '\n');
    else {
      process.stdout.write(formatEstimate(e));
      if (verdict) {
        process.stdout.write(verdict.expressible ? `\n${CAPABILITIES[verdict.name].title} can express this plan\n`
          : `\n${CAPABILITIES[verdict.name].title} cannot express this plan:\n${verdict.reasons.map((r) => `  - ${r}`).join('\n')}\n`);
      }
    }
    if (!e.valid) {
      // The reasons go to stderr as well: a script that reads only stderr and the exit code learns why.
      process.stderr.write(`mesh-search: the plan is invalid: ${e.reasons.join('; ')}\n`);
      process.exitCode = 2;
    }
  },
};
