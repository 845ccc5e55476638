import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { InputError } from '../errors.js';
import { findProfile } from '../cost/host.js';
import { devicePresets } from '../cost/presets.js';
import { profileError, validateProfile, type HardwareProfile } from '../cost/profile.js';
import { parseMesh, type Mesh } from '../mesh/mesh.js';
import { findPreset, presetNames } from '../model/presets.js';
import { parseModelSpec, type ModelSpec } from '../model/spec.js';
import { planFromJson, makePlan, RECOMPUTE, type Plan } from '../lower/plan.js';
import { formatLayout } from '../layout/layout.js';
import { readJsonFile } from './files.js';
import { enumFlag, optionalIntFlag } from './numbers.js';

const looksLikeFile = (s: string) => s.endsWith('.json') || s.includes('/') || existsSync(s);

/** `--model`: a preset name or a JSON spec file; a plan file may also hold the spec itself. */
export function loadModel(arg: unknown): ModelSpec {
  if (Array.isArray(arg)) throw new InputError(`--model is given ${arg.length} times; give it once`);
  if (typeof arg === 'object' && arg !== null) return parseModelSpec(arg, 'model in the plan file');
  if (typeof arg !== 'string' || arg.trim() === '') throw new InputError('--model needs a preset name or a JSON file');
  const preset = findPreset(arg);
  if (preset) return preset;
  if (!looksLikeFile(arg)) throw new InputError(`unknown model "${arg}"; presets are ${presetNames().join(', ')} (or give a JSON spec file)`);
  return parseModelSpec(readJsonFile(arg, 'model'), `model ${arg}`);
}

/** `--device`: a preset name or a profile JSON file. */
export function loadDevice(arg: unknown): HardwareProfile {
  if (Array.isArray(arg)) throw new InputError(`--device is given ${arg.length} times; give it once`);
  if (typeof arg !== 'string' || arg.trim() === '') throw new InputError('--device needs a preset name or a profile JSON file');
  const preset = findProfile(arg);
  if (preset) return preset;
  if (!looksLikeFile(arg)) throw profileError(arg, [...devicePresets().map((p) => p.name), 'host']);
  return validateProfile(readJsonFile(arg, 'device profile'), `device profile ${arg}`);
}

export function loadMesh(arg: unknown): Mesh {
  if (Array.isArray(arg)) throw new InputError(`--mesh is given ${arg.length} times; give it once`);
  if (typeof arg !== 'string') throw new InputError('--mesh needs a shape like 16x32 or rows:16;cols:32');
  return parseMesh(arg);
}

/** A plan file as `search --out` writes it: { plan, mesh?, model?, device? } or a bare plan. */
export interface PlanFile {
  plan: Plan;
  mesh?: string;
  model?: unknown;
  device?: string;
  /** The --node-size the plan was searched with. */
  nodeSize?: number;
}

export function loadPlanFile(path: string): PlanFile {
  const v = readJsonFile(path, 'plan');
  if (typeof v !== 'object' || v === null) throw new InputError(`plan file ${path}: expected a JSON object`);
  const o = v as Record<string, unknown>;
  const inner = typeof o.plan === 'object' && o.plan !== null ? o.plan : o;
  for (const k of ['mesh', 'device'] as const) {
    if (o[k] !== undefined && typeof o[k] !== 'string') throw new InputError(`plan file ${path}: "${k}" must be a string, got ${JSON.stringify(o[k])}`);
  }
  if (o.model !== undefined && (typeof o.model !== 'string' && (typeof o.model !== 'object' || o.model === null || Array.isArray(o.model)))) {
    throw new InputError(`plan file ${path}: "model" must be a preset name or a model spec object, got ${JSON.stringify(o.model)}`);
  }
  return {
    plan: planFromJson(inner, `plan file ${path}`),
    mesh: o.mesh as string | undefined,
    model: o.model,
    device: o.device as string | undefined,
    nodeSize: o.nodeSize === undefined ? undefined : optionalIntFlag('node-size', o.nodeSize, 1, 1 << 30),
  };
}

/** The plan from `--layout` and friends. */
export function planFromArgs(args: { layout?: unknown; zero?: unknown; zeroAxes?: unknown; recompute?: unknown; microbatches?: unknown; sequenceParallel?: unknown; virtualStages?: unknown }): Plan {
  stringFlag('layout', args.layout);
  if (typeof args.layout !== 'string') throw new InputError('--layout needs rules like batch:rows;d_ff:cols (empty string for replicated)');
  return makePlan(args.layout, {
    zero: optionalIntFlag('zero', args.zero, 0, 3),
    recompute: args.recompute === undefined ? undefined : enumFlag('recompute', args.recompute, RECOMPUTE),
    microbatches: optionalIntFlag('microbatches', args.microbatches, 1),
    sequenceParallel: boolFlag('sequence-parallel', args.sequenceParallel),
    virtualStages: optionalIntFlag('virtual-stages', args.virtualStages, 1, 1024),
    zeroAxes: stringFlag('zero-axes', args.zeroAxes),
  });
}

/** A flag given at most once, as a string. */
function stringFlag(name: string, v: unknown): unknown {
  if (Array.isArray(v)) throw new InputError(`--${name} is given ${v.length} times; give it once`);
  return v;
}

/** A boolean flag: yargs gives true/false; a plan file gives a JSON boolean; anything else is refused. */
function boolFlag(name: string, v: unknown): boolean | undefined {
  if (v === undefined || typeof v === 'boolean') return v;
  if (Array.isArray(v)) throw new InputError(`--${name} is given ${v.length} times; give it once`);
  if (v === 'true') return true;
  if (v === 'false') return false;
  throw new InputError(`--${name} must be true or false, got ${JSON.stringify(v)}`);
}

/** Flags that name a plan: a plan file, the plan by flags, or both (flags override the file). */
export interface PlanFlags {
  plan?: string;
  mesh?: string;
  model?: string;
  layout?: string;
  zero?: unknown;
  recompute?: unknown;
  microbatches?: unknown;
  sequenceParallel?: unknown;
  virtualStages?: unknown;
  zeroAxes?: unknown;
}

/** The mesh, model and plan that `--plan` and the flags name together. */
export function resolvePlan(args: PlanFlags): { spec: ModelSpec; mesh: Mesh; plan: Plan; file?: PlanFile } {
  const file = args.plan !== undefined ? loadPlanFile(args.plan) : undefined;
  const meshArg = args.mesh ?? file?.mesh;
  const modelArg = args.model ?? file?.model;
  if (meshArg === undefined) throw new InputError('--mesh is required (or --plan plan.json)');
  if (modelArg === undefined) throw new InputError('--model is required (or --plan plan.json)');
  const plan = planFromArgs({
    layout: args.layout ?? (file ? formatLayout(file.plan.layout) : undefined),
    zero: args.zero ?? file?.plan.zero,
    recompute: args.recompute ?? file?.plan.recompute,
    microbatches: args.microbatches ?? file?.plan.microbatches,
    // A plan file's sequence parallelism and interleaving are part of its plan, like its ZeRO stage.
    sequenceParallel: args.sequenceParallel ?? file?.plan.sequenceParallel,
    virtualStages: args.virtualStages ?? file?.plan.virtualStages,
    zeroAxes: args.zeroAxes ?? file?.plan.zeroAxes?.join('+'),
  });
  return { spec: loadModel(modelArg), mesh: loadMesh(meshArg), plan, file };
}

/**
 * `--node-size N`: the profile's innermost network level holds N devices (an NVL72 rack is 72
 * GPUs on NVLink, a TPU slice its chip count); the outer levels are as the profile has them.
 */
export function withNodeSize(profile: HardwareProfile, v: unknown): HardwareProfile {
  const n = optionalIntFlag('node-size', v, 1, 1 << 30);
  if (n === undefined) return profile;
  const [inner, ...outer] = profile.levels;
  if (outer.length > 0 && n >= outer[0].devices) {
    throw new InputError(`--node-size ${n} is not smaller than ${profile.name}'s next level (${outer[0].name}, ${outer[0].devices} devices)`);
  }
  return validateProfile({
    ...profile,
    levels: [{ ...inner, devices: n }, ...outer],
    sources: { ...profile.sources, [inner.name]: `${profile.sources?.[inner.name] ?? inner.name}; ${n} devices per ${inner.name} domain from --node-size` },
  }, `device profile ${profile.name} with --node-size ${n}`);
}

/**
 * `--device` for a command that may read a plan file: the flag, else the device the plan was
 * searched for (a profile path relative to the plan file when it is not found as given), else the default.
 */
export function resolveDevice(flag: unknown, file: PlanFile | undefined, planPath: string | undefined, dflt: string): HardwareProfile {
  if (flag !== undefined) return loadDevice(flag);
  const named = file?.device;
  if (named === undefined) return loadDevice(dflt);
  if (!findProfile(named) && !existsSync(named) && planPath !== undefined) {
    const beside = join(dirname(planPath), named);
    if (existsSync(beside)) return loadDevice(beside);
  }
  return loadDevice(named);
}
