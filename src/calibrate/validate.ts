import { InputError } from '../errors.js';
import { DEFAULT_DEVICE } from '../cost/presets.js';
import { estimatePlan } from '../cost/estimatePlan.js';
import type { HardwareProfile } from '../cost/profile.js';
import { loadDevice } from '../inputs/index.js';
import { describePlan } from '../lower/plan.js';
import { formatMesh } from '../mesh/mesh.js';
import { asMeasured, isRejection, newContext, resolveRow, type RawRow } from './resolve.js';
import type { Measurement, Rejection } from './types.js';

/** One row: what was measured, what the cost model estimates, and the signed relative error. */
export interface RowComparison {
  readonly file: string;
  readonly line: number;
  readonly model: string;
  /** The profile the row was estimated under (its device family). */
  readonly device: string;
  readonly mesh: string;
  readonly plan: string;
  readonly measured: number;
  readonly estimated: number;
  /** (estimated − measured) / measured: positive when the model is slow. */
  readonly error: number;
  /** Whether the cost model thinks the plan fits in memory (a published run did). */
  readonly feasible: boolean;
}

/** Error figures over a set of rows, as fractions (0.05 = 5%). */
export interface ErrorSummary {
  readonly rows: number;
  readonly meanAbsError: number;
  readonly maxAbsError: number;
  readonly signedMeanError: number;
}

export interface FamilySummary extends ErrorSummary {
  readonly device: string;
}

export interface ValidationReport {
  readonly rows: readonly RowComparison[];
  readonly families: readonly FamilySummary[];
  readonly rejections: readonly { file: string; line: number; reason: string }[];
}

/** Mean and max |error| and the signed mean of relative errors. */
export function summarizeErrors(errors: readonly number[]): ErrorSummary {
  const n = errors.length;
  const abs = errors.map(Math.abs);
  return {
    rows: n,
    meanAbsError: n ? abs.reduce((a, b) => a + b, 0) / n : NaN,
    maxAbsError: n ? Math.max(...abs) : NaN,
    signedMeanError: n ? errors.reduce((a, b) => a + b, 0) / n : NaN,
  };
}

/** Per device family, in the order the families first appear. */
export function summarizeFamilies(rows: readonly { device: string; error: number }[]): FamilySummary[] {
  const by = new Map<string, number[]>();
  for (const r of rows) by.set(r.device, [...(by.get(r.device) ?? []), r.error]);
  return [...by].map(([device, errors]) => ({ device, ...summarizeErrors(errors) }));
}

/** Rows checked against the profile each is estimated under, grouped by that profile. */
export interface DeviceGroup {
  readonly profile: HardwareProfile;
  readonly rows: Measurement[];
}

/**
 * Resolve rows as calibrate does (src/calibrate/resolve.ts), each against its own device: the
 * row's `device` column, or `device` for every row when given (it then replaces the column).
 */
export function groupRowsByDevice(raw: readonly RawRow[], device?: string): { groups: DeviceGroup[]; rejected: Rejection[] } {
  const groups = new Map<string, DeviceGroup>();
  const contexts = new Map<string, ReturnType<typeof newContext>>();
  const rejected: Rejection[] = [];
  const given = device !== undefined ? loadDevice(device) : undefined;
  for (const r of raw) {
    const named = typeof r.device === 'string' && r.device !== '' ? r.device : undefined;
    const key = device ?? named ?? DEFAULT_DEVICE;
    let profile: HardwareProfile;
    try {
      profile = given ?? loadDevice(key);
    } catch (e) {
      if (!(e instanceof InputError)) throw e;
      rejected.push({ source: r.source, reason: e.message });
      continue;
    }
    if (!contexts.has(key)) contexts.set(key, newContext(key));
    const m = resolveRow({ ...r, device: key }, contexts.get(key)!);
    if (isRejection(m)) {
      rejected.push(m);
      continue;
    }
    const g = groups.get(key) ?? { profile, rows: [] };
    g.rows.push(m);
    groups.set(key, g);
  }
  return { groups: [...groups.values()], rejected };
}

/** Compare one measured row with the cost model's estimate under a profile (the estimate command's). */
export function compareRow(m: Measurement, profile: HardwareProfile, family = profile.name): RowComparison {
  const e = estimatePlan(m.graph, m.mesh, m.plan, asMeasured(m, profile));
  return {
    file: m.source.file, line: m.source.line, model: m.modelName, device: family, mesh: formatMesh(m.mesh), plan: describePlan(m.plan),
    measured: m.stepTime, estimated: e.time.step, error: (e.time.step - m.stepTime) / m.stepTime, feasible: e.feasible,
  };
}

/** Every usable row's estimate against its measurement, and the error per device family. */
export function validateRows(raw: readonly RawRow[], device?: string): ValidationReport {
  const { groups, rejected } = groupRowsByDevice(raw, device);
  const rows = groups.flatMap((g) => g.rows.map((m) => compareRow(m, g.profile)));
  if (rows.length === 0) {
    const first = rejected[0];
    throw new InputError(`no usable rows to validate${first ? ` (${rejected.length} rejected; first ${first.source.file}:${first.source.line}: ${first.reason})` : ''}`);
  }
  return {
    rows,
    families: summarizeFamilies(rows),
    rejections: rejected.map((r) => ({ file: r.source.file, line: r.source.line, reason: r.reason })),
  };
}
