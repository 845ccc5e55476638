import type { Argv } from 'yargs';
import { DEFAULT_DEVICE } from '../../cost/presets.js';
import type { Plan } from '../../lower/plan.js';
import type { Mesh } from '../../mesh/mesh.js';
import { findPreset } from '../../model/presets.js';
import type { ModelSpec } from '../../model/spec.js';
import { InputError } from '../../errors.js';
import { loadModel, resolvePlan } from '../inputs.js';

/** The flags run and train share: a plan file, or the plan by flags; flags override the file. */
export interface PlanArgs {
  plan?: string;
  mesh?: string;
  model?: string;
  layout?: string;
  zero?: number;
  recompute?: string;
  microbatches?: number;
  device: string;
  backend: string;
  steps?: number;
}

export function planOptions<T>(y: Argv<T>): Argv<T> {
  return y
    .option('plan', { type: 'string', describe: 'a plan file written by search --out' })
    .option('mesh', { type: 'string', describe: 'mesh shape, at most 64 devices (e.g. 2x2)' })
    .option('model', { type: 'string', describe: 'model preset or JSON spec file (e.g. tiny)' })
    .option('layout', { type: 'string', describe: 'layout rules, e.g. "batch:rows;heads:cols"' })
    .option('zero', { type: 'number', describe: 'ZeRO stage 0-3' })
    .option('recompute', { type: 'string', describe: 'none | selective | full' })
    .option('microbatches', { type: 'number', describe: 'microbatches per step' })
    .option('device', { type: 'string', default: DEFAULT_DEVICE, describe: 'hardware profile that prices the estimates' })
    .option('backend', { type: 'string', default: 'auto', choices: ['auto', 'wasm', 'cpu', 'tensorflow'], describe: 'tfjs kernels: tensorflow (tfjs-node[-gpu], when installed), wasm, cpu' }) as Argv<T>;
}

export function resolvePlanArgs(args: PlanArgs): { spec: ModelSpec; mesh: Mesh; plan: Plan; modelName?: string } {
  const { spec, mesh, plan, file } = resolvePlan(args);
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
  const steps = args.steps;
  if (steps !== undefined && (!Number.isSafeInteger(steps) || steps < 1)) throw new InputError(`--steps must be a positive integer, got ${steps}`);
  const modelArg = args.model ?? file?.model;
  return { spec, mesh, plan, modelName: typeof modelArg === 'string' && findPreset(modelArg) ? modelArg : undefined };
}
