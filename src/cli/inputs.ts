import { existsSync, readFileSync } from 'node:fs';
import { InputError } from '../errors.js';
import { findProfile } from '../calibrate/host.js';
import { devicePresets } from '../cost/presets.js';
import { profileError, validateProfile, type HardwareProfile } from '../cost/profile.js';
import { parseMesh, type Mesh } from '../mesh/mesh.js';
import { findPreset, presetNames } from '../model/presets.js';
import { parseModelSpec, type ModelSpec } from '../model/spec.js';
import { planFromJson, makePlan, type Plan } from '../lower/plan.js';
import { formatLayout } from '../layout/layout.js';

/** Read and parse a JSON file; a missing or malformed file is one line of InputError. */
export function readJsonFile(path: string, what: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new InputError(`cannot read ${what} file ${path}${code === 'ENOENT' ? ': no such file' : code ? `: ${code}` : ''}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new InputError(`${what} file ${path} is not valid JSON: ${(e as Error).message}`);
  }
}

const looksLikeFile = (s: string) => s.endsWith('.json') || s.includes('/') || existsSync(s);

/** `--model`: a preset name or a JSON spec file; a plan file may also hold the spec itself. */
export function loadModel(arg: unknown): ModelSpec {
  if (typeof arg === 'object' && arg !== null) return parseModelSpec(arg, 'model in the plan file');
  if (typeof arg !== 'string' || arg.trim() === '') throw new InputError('--model needs a preset name or a JSON file');
  const preset = findPreset(arg);
  if (preset) return preset;
  if (!looksLikeFile(arg)) throw new InputError(`unknown model "${arg}"; presets are ${presetNames().join(', ')} (or give a JSON spec file)`);
  return parseModelSpec(readJsonFile(arg, 'model'), `model ${arg}`);
}

/** `--device`: a preset name or a profile JSON file. */
export function loadDevice(arg: unknown): HardwareProfile {
  if (typeof arg !== 'string' || arg.trim() === '') throw new InputError('--device needs a preset name or a profile JSON file');
  const preset = findProfile(arg);
  if (preset) return preset;
  if (!looksLikeFile(arg)) throw profileError(arg, [...devicePresets().map((p) => p.name), 'host']);
  return validateProfile(readJsonFile(arg, 'device profile'), `device profile ${arg}`);
}

export function loadMesh(arg: unknown): Mesh {
  if (typeof arg !== 'string') throw new InputError('--mesh needs a shape like 16x32 or rows:16;cols:32');
  return parseMesh(arg);
}

/** A plan file as `search --out` writes it: { plan, mesh?, model?, device? } or a bare plan. */
export interface PlanFile {
  plan: Plan;
  mesh?: string;
  model?: unknown;
  device?: string;
}

export function loadPlanFile(path: string): PlanFile {
  const v = readJsonFile(path, 'plan');
  if (typeof v !== 'object' || v === null) throw new InputError(`plan file ${path}: expected a JSON object`);
  const o = v as Record<string, unknown>;
  const inner = typeof o.plan === 'object' && o.plan !== null ? o.plan : o;
  return {
    plan: planFromJson(inner, `plan file ${path}`),
    mesh: typeof o.mesh === 'string' ? o.mesh : undefined,
    model: o.model,
    device: typeof o.device === 'string' ? o.device : undefined,
  };
}

/** The plan from `--layout` and friends. */
export function planFromArgs(args: { layout?: unknown; zero?: unknown; recompute?: unknown; microbatches?: unknown }): Plan {
  if (typeof args.layout !== 'string') throw new InputError('--layout needs rules like batch:rows;d_ff:cols (empty string for replicated)');
  return makePlan(args.layout, { zero: args.zero, recompute: args.recompute, microbatches: args.microbatches });
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
  });
  return { spec: loadModel(modelArg), mesh: loadMesh(meshArg), plan, file };
}
