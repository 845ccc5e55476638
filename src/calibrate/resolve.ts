import { dirname, resolve as resolvePath } from 'node:path';
import { asRunBy, isRowEngine, ROW_ENGINES, type RowEngine } from '../engine/index.js';
import { InputError } from '../errors.js';
import { findProfile } from '../cost/host.js';
import type { HardwareProfile, OpClassName } from '../cost/profile.js';
import { decimal, readJsonFile } from '../inputs/index.js';
import type { Program } from '../lower/program.js';
import { lower } from '../lower/lower.js';
import { describePlan, makePlan } from '../lower/plan.js';
import { formatMesh, parseMesh } from '../mesh/mesh.js';
import { buildGraph, type Graph } from '../model/graph.js';
import { findPreset, presetNames } from '../model/presets.js';
import { parseModelSpec, type ModelSpec } from '../model/spec.js';
import type { Measurement, Rejection, RowSource } from './types.js';

/** A row as read from a file, before anything is checked. */
export interface RawRow {
  readonly source: RowSource;
  readonly model: unknown;
  readonly mesh: unknown;
  readonly layout: unknown;
  readonly zero?: unknown;
  readonly zeroAxes?: unknown;
  readonly recompute?: unknown;
  readonly microbatches?: unknown;
  readonly sequenceParallel?: unknown;
  readonly virtualStages?: unknown;
  /** Global batch in sequences: overrides the model spec's (one spec serves runs of every size). */
  readonly batch?: unknown;
  readonly device?: unknown;
  /** The training engine that ran it (as --engine names it), when known. */
  readonly engine?: unknown;
  readonly stepTime: unknown;
  readonly compute: Partial<Record<OpClassName, unknown>>;
  readonly comm: Readonly<Record<string, unknown>>;
  /** A problem found while reading (a short CSV line, unparsable JSON): the row is rejected with it. */
  readonly problem?: string;
}

/** What a row is checked against: the profile being fitted, and where relative model paths start. */
export interface ResolveContext {
  readonly device: string;
  readonly graphs: Map<string, Graph>;
  /** Rows of one plan share one lowered program (and so one set of features and one price). */
  readonly programs: Map<string, Program>;
}

export function newContext(device: string): ResolveContext {
  return { device, graphs: new Map(), programs: new Map() };
}

const describe = (v: unknown) => (v === undefined || v === '' ? 'nothing' : JSON.stringify(v));

/**
 * Times a row may hold: from a microsecond (below that no training step, nor a measured per-class
 * sum, is real: relative errors would blow up) to a day.
 */
export const MIN_SECONDS = 1e-6;
export const MAX_SECONDS = 86_400;

function seconds(v: unknown, what: string): number {
  if (v === undefined || v === null || v === '') throw new InputError(`${what} is missing`);
  const n = decimal(v);
  if (n === undefined) throw new InputError(`${what} must be a decimal number of seconds, got ${describe(v)}`);
  if (!(n >= MIN_SECONDS && n <= MAX_SECONDS)) throw new InputError(`${what} must be from ${MIN_SECONDS} to ${MAX_SECONDS} seconds, got ${describe(v)}`);
  return n;
}

function optionalInt(v: unknown, what: string): number | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  const n = decimal(v);
  if (n === undefined || !Number.isSafeInteger(n)) throw new InputError(`${what} must be an integer, got ${describe(v)}`);
  return n;
}

function optionalBool(v: unknown, what: string): boolean | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v === 'boolean') return v;
  if (typeof v === 'string' && /^\s*(true|false)\s*$/i.test(v)) return v.trim().toLowerCase() === 'true';
  throw new InputError(`${what} must be true or false, got ${describe(v)}`);
}

function withBatch(spec: ModelSpec, batch: unknown): ModelSpec {
  const b = optionalInt(batch, 'batch');
  if (b === undefined) return spec;
  if (typeof b !== 'number' || !Number.isSafeInteger(b) || b < 1) throw new InputError(`batch must be a positive integer number of sequences, got ${describe(batch)}`);
  return parseModelSpec({ ...spec, batch: b }, `model ${spec.name} with batch ${b}`);
}

function loadSpec(model: unknown, file: string): ModelSpec {
  if (typeof model === 'object' && model !== null) return parseModelSpec(model, 'model spec');
  if (typeof model !== 'string' || model.trim() === '') throw new InputError('model is missing');
  const preset = findPreset(model.trim());
  if (preset) return preset;
  if (!model.endsWith('.json')) throw new InputError(`unknown model preset "${model}"; presets are ${presetNames().join(', ')} (or give a JSON spec file)`);
  const path = resolvePath(dirname(file), model);
  return parseModelSpec(readJsonFile(path, 'model'), `model ${model}`);
}

/** Check one row and lower its plan; any InputError becomes its rejection. */
export function resolveRow(raw: RawRow, ctx: ResolveContext): Measurement | Rejection {
  try {
    return resolveOrThrow(raw, ctx);
  } catch (e) {
    if (e instanceof InputError) return { source: raw.source, reason: e.message };
    throw e;
  }
}

function resolveOrThrow(raw: RawRow, ctx: ResolveContext): Measurement {
  if (raw.problem) throw new InputError(raw.problem);
  const stepTime = seconds(raw.stepTime, 'step time');
  let sibling: ReturnType<typeof findProfile>;
  if (raw.device !== undefined && raw.device !== null && raw.device !== '') {
    const d = String(raw.device);
    if (!findProfile(d) && !d.endsWith('.json')) throw new InputError(`unknown device "${d}"`);
    if (d !== ctx.device) {
      const own = findProfile(d), fitted = findProfile(ctx.device);
      if (!own?.chip || own.chip !== fitted?.chip) throw new InputError(`measured on device ${d}, but the profile being fitted is ${ctx.device} (calibrate one device at a time: --device ${d})`);
      sibling = own;
    }
  }
  let engine: RowEngine | undefined;
  if (raw.engine !== undefined && raw.engine !== null && raw.engine !== '') {
    const e = String(raw.engine).trim();
    if (!isRowEngine(e)) throw new InputError(`unknown engine ${describe(raw.engine)}; engines are ${ROW_ENGINES.join(', ')}`);
    engine = e;
  }
  const spec = withBatch(loadSpec(raw.model, raw.source.file), raw.batch);
  const specKey = JSON.stringify(spec);
  let graph = ctx.graphs.get(specKey);
  if (!graph) {
    graph = buildGraph(spec);
    ctx.graphs.set(specKey, graph);
  }
  if (typeof raw.mesh !== 'string') throw new InputError(`mesh must be a shape like 2x2 or rows:2;cols:2, got ${describe(raw.mesh)}`);
  const mesh = parseMesh(raw.mesh);
  const layout = raw.layout ?? '';
  if (typeof layout !== 'string') throw new InputError(`layout must be a string like batch:rows;d_ff:cols, got ${describe(layout)}`);
  const plan = makePlan(layout, {
    zero: optionalInt(raw.zero, 'zero'), zeroAxes: raw.zeroAxes, recompute: raw.recompute === '' || raw.recompute === null ? undefined : raw.recompute,
    microbatches: optionalInt(raw.microbatches, 'microbatches'),
    sequenceParallel: optionalBool(raw.sequenceParallel, 'sequence_parallel'), virtualStages: optionalInt(raw.virtualStages, 'virtual_stages'),
  });
  const planKey = `${specKey}|${formatMesh(mesh)}|${describePlan(plan)}`;
  let program = ctx.programs.get(planKey);
  if (!program) {
    try {
      program = lower(graph, mesh, plan);
    } catch (e) {
      if (e instanceof InputError) throw new InputError(`plan ${describePlan(plan)} is invalid on mesh ${formatMesh(mesh)}: ${e.message}`);
      throw e;
    }
    ctx.programs.set(planKey, program);
  }
  const compute: Partial<Record<OpClassName, number>> = {};
  for (const [k, v] of Object.entries(raw.compute)) {
    if (v === undefined || v === null || v === '') continue;
    compute[k as OpClassName] = seconds(v, `${k} time`);
  }
  const comm: Record<string, number> = {};
  for (const [key, v] of Object.entries(raw.comm)) {
    if (v === undefined || v === null || v === '') continue;
    for (const a of key.split('+')) {
      if (!mesh.axes.some((x) => x.name === a)) throw new InputError(`communication time for axes "${key}": mesh ${formatMesh(mesh)} has no axis "${a}"`);
    }
    comm[key] = seconds(v, `communication time over ${key}`);
  }
  return {
    source: raw.source, modelName: spec.name, ...(sibling ? { sibling } : {}), ...(engine ? { engine } : {}), graph, mesh, plan, program, stepTime, components: { compute, comm },
    // One plan run by two engines is two plans (their full recompute differs).
    planKey: engine ? `${planKey}|${engine}` : planKey,
    problemKey: `${specKey}|${formatMesh(mesh)}`,
  };
}

/** A profile as the row's engine ran on it (its full recompute, its kernels: engine asRunBy), when the row names one. */
export function asMeasured(m: Pick<Measurement, 'engine'>, profile: HardwareProfile): HardwareProfile {
  return m.engine ? asRunBy(m.engine, profile) : profile;
}

export function isRejection(x: Measurement | Rejection): x is Rejection {
  return 'reason' in x;
}
