import type { Argv } from 'yargs';
import { DEFAULT_DEVICE } from '../../cost/presets.js';
import type { Plan } from '../../lower/plan.js';
import type { Mesh } from '../../mesh/mesh.js';
import { findPreset } from '../../model/presets.js';
import type { ModelSpec } from '../../model/spec.js';
import { InputError } from '../../errors.js';
import type { HardwareProfile } from '../../cost/profile.js';
import { enumFlag, loadModel, optionalIntFlag, resolveDevice, resolvePlan } from '../../inputs/index.js';

/** --recompute's help, for every command that takes a plan's flags. */
export const RECOMPUTE_HELP = 'none | selective (the attention core) | minimal (all but the projections, whose outputs are kept: MaxText and t5x remat_policy minimal) | full (the layer)';

/** --zero-axes's help, for every command that takes a plan's flags. */
export const ZERO_AXES_HELP = 'hybrid sharding: ZeRO shards over these batch axes only (fsdp, or fsdp+data); the other batch axes all-reduce the sharded gradient (MaxText ici_fsdp x dcn_data, PyTorch HSDP)';

export const BACKENDS = ['auto', 'wasm', 'cpu', 'tensorflow'] as const;
/** More steps than anyone simulates on a CPU: a bound, so a typo is not a run that never ends. */
export const MAX_STEPS = 10_000_000;

/** The flags run and train share: a plan file, or the plan by flags; flags override the file. */
export interface PlanArgs {
  plan?: string;
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
  backend: string;
  steps?: string;
}

export function planOptions<T>(y: Argv<T>): Argv<T> {
  return y
    .option('plan', { type: 'string', describe: 'a plan file written by search --out' })
    .option('mesh', { type: 'string', describe: 'mesh shape, at most 64 devices (e.g. 2x2)' })
    .option('model', { type: 'string', describe: 'model preset or JSON spec file (e.g. tiny)' })
    .option('layout', { type: 'string', describe: 'layout rules, e.g. "batch:rows;heads:cols"' })
    .option('zero', { type: 'string', describe: 'ZeRO stage 0-3' })
    .option('zero-axes', { type: 'string', describe: ZERO_AXES_HELP })
    .option('recompute', { type: 'string', describe: RECOMPUTE_HELP })
    .option('microbatches', { type: 'string', describe: 'microbatches per step' })
    .option('sequence-parallel', { type: 'boolean', describe: "Megatron's sequence parallelism: norms, dropout and residuals split length on the tensor-parallel axes (Korthikanti et al. 2022)" })
    .option('virtual-stages', { type: 'string', describe: 'interleaved 1F1B: pipeline chunks per device (bubble (p-1)/(V·m); needs layers split)' })
    .option('device', { type: 'string', describe: `hardware profile that prices the estimates (default: the plan file's, else ${DEFAULT_DEVICE})` })
    .option('backend', { type: 'string', default: 'auto', choices: [...BACKENDS], describe: 'tfjs kernels: tensorflow (tfjs-node[-gpu], when installed), wasm, cpu' }) as Argv<T>;
}

export function resolvePlanArgs(args: PlanArgs): { spec: ModelSpec; mesh: Mesh; plan: Plan; modelName?: string; steps?: number; device: () => HardwareProfile } {
  const { spec, mesh, plan, file } = resolvePlan(args);
  enumFlag('backend', args.backend, BACKENDS);
  if (file?.model !== undefined && args.model !== undefined) {
    const planned = loadModel(file.model);
    if (JSON.stringify(planned) !== JSON.stringify(spec)) {
      throw new InputError(`the plan in ${args.plan} was made for model ${planned.name}, not ${spec.name}`);
    }
  }
  // The runtime's rotary kernel takes 4-D [batch, length, heads, d_kv] blocks; grouped-query queries are 5-D.
  if (spec.positions === 'rotary' && spec.kvHeads < spec.heads) {
    throw new InputError(`the runtime does not yet run rotary positions with grouped-query attention (model ${spec.name}: kvHeads ${spec.kvHeads} < heads ${spec.heads}); use learned positions`);
  }
  const steps = optionalIntFlag('steps', args.steps, 1, MAX_STEPS);
  const modelArg = args.model ?? file?.model;
  const device = () => resolveDevice(args.device, file, args.plan, DEFAULT_DEVICE);
  return { spec, mesh, plan, steps, device, modelName: typeof modelArg === 'string' && findPreset(modelArg) ? modelArg : undefined };
}
