import { InputError } from '../errors.js';
import { DEFAULT_DEVICE } from '../cost/presets.js';
import { price } from '../cost/price.js';
import { validateProfile, type HardwareProfile } from '../cost/profile.js';
import { loadDevice } from '../inputs/index.js';
import { readBenchFile } from './bench.js';
import { fitProfile, rowProfile, setupFit, tooFewMessage, type FitOptions } from './fit.js';
import { accuracy } from './metrics.js';
import { isRejection, newContext, resolveRow, type RawRow } from './resolve.js';
import { readTraceFile, type StepStatistic } from './trace.js';
import type { Accuracy, CalibrationReport, LoadedRows, Measurement, Rejection } from './types.js';

/** Leave-one-plan-out needs a fit without each plan: at least this many plans. */
export const MIN_PLANS = 3;

/** Read traces and benchmark files into raw rows (a file that cannot be read at all is an InputError). */
export function readInputs(inputs: { traces?: readonly string[]; bench?: readonly string[]; statistic?: StepStatistic }): RawRow[] {
  const raw: RawRow[] = [];
  for (const t of inputs.traces ?? []) raw.push(readTraceFile(t, inputs.statistic));
  for (const b of inputs.bench ?? []) for (const r of readBenchFile(b)) raw.push(r);
  if (raw.length === 0) throw new InputError('nothing to calibrate from: give --trace files or a --bench file with rows');
  return raw;
}

/** The base profile: --device, else the one device the rows name, else the default preset. */
export function baseDevice(raw: readonly RawRow[], device?: string): HardwareProfile {
  if (device !== undefined) return loadDevice(device);
  const named = new Set(raw.map((r) => r.device).filter((d): d is string => typeof d === 'string' && d !== ''));
  return loadDevice(named.size === 1 ? [...named][0] : DEFAULT_DEVICE);
}

/** Check every row against the base profile: accepted measurements and numbered rejections. */
export function resolveRows(raw: readonly RawRow[], base: HardwareProfile, deviceArg?: string): LoadedRows {
  const ctx = newContext(deviceArg ?? base.name);
  const rows: Measurement[] = [];
  const rejected: Rejection[] = [];
  for (const r of raw) {
    // A row may name the base by its preset name or by the file it was given as.
    const named = r.device === base.name ? { ...r, device: ctx.device } : r;
    const m = resolveRow(named, ctx);
    if (isRejection(m)) rejected.push(m);
    else rows.push(m);
  }
  return { rows, rejected, devices: [...new Set(raw.map((r) => String(r.device ?? '')).filter(Boolean))] };
}

/** Kendall tau ranks pairs of different plans of one model on one mesh. */
function tauGroups(rows: readonly Measurement[]) {
  return { problem: rows.map((m) => m.problemKey), plan: rows.map((m) => m.planKey) };
}

/**
 * Cross-validation folds, each a set of plans left out together: one plan per fold up to this
 * many plans, beyond it this many folds of plans (round robin in order of first appearance), so
 * calibrating stays linear in the rows however many plans they hold.
 */
export const MAX_FOLDS = 20;

/** The fold of every row: its plan's index, or that modulo MAX_FOLDS. */
export function foldsOf(rows: readonly Measurement[]): number[] {
  const planIndex = new Map<string, number>();
  for (const m of rows) if (!planIndex.has(m.planKey)) planIndex.set(m.planKey, planIndex.size);
  const wrap = planIndex.size > MAX_FOLDS;
  return rows.map((m) => (wrap ? planIndex.get(m.planKey)! % MAX_FOLDS : planIndex.get(m.planKey)!));
}

/** The base profile's step-time accuracy on the rows (nothing fitted, so nothing to cross-validate). */
export function accuracyOf(rows: readonly Measurement[], profile: HardwareProfile): Accuracy {
  const priced = new Map<Measurement['program'], number>();
  const step = (m: Measurement) => {
    if (m.sibling || m.engine) return price(m.program, rowProfile(m, { profile })).time.step;
    let s = priced.get(m.program);
    if (s === undefined) priced.set(m.program, (s = price(m.program, profile).time.step));
    return s;
  };
  return accuracy(rows.map(step), rows.map((m) => m.stepTime), tauGroups(rows));
}

/** Refuse, rather than overfit, when some fold of leave-one-plan-out would have too few observations. */
export function checkEnoughRows(rows: readonly Measurement[], base: HardwareProfile, opts: FitOptions = {}): void {
  const plans = new Set(rows.map((m) => m.planKey));
  if (plans.size < MIN_PLANS) {
    throw new InputError(`too few plans to calibrate: ${rows.length} usable rows cover ${plans.size} distinct plan${plans.size === 1 ? '' : 's'}; ` +
      `leave-one-plan-out cross-validation needs at least ${MIN_PLANS}`);
  }
  if (opts.method === 'physics') return; // a prior holds every constant the rows do not determine
  const setup = setupFit(rows, base, opts);
  const folds = foldsOf(rows);
  const perFold = new Map<number, number>();
  setup.obs.forEach((o) => perFold.set(folds[o.row], (perFold.get(folds[o.row]) ?? 0) + 1));
  let most = 0;
  for (const v of perFold.values()) most = Math.max(most, v);
  const least = setup.obs.length - most;
  if (least < setup.free + 1) {
    throw new InputError(tooFewMessage(setup.obs.length, least, rows.length, setup.free, setup.space.defs.filter((_, j) => !setup.fixed[j]).map((d) => d.name)));
  }
}

/** Leave-one-plan-out (or a fold of plans, past MAX_FOLDS): each plan's step time as predicted by a profile fitted without it. */
export function crossValidate(rows: readonly Measurement[], base: HardwareProfile, opts: FitOptions = {}, fitToAll?: HardwareProfile): number[] {
  const predicted = new Array<number>(rows.length);
  const folds = foldsOf(rows);
  // Each fold starts where the fit to every row ended (fit.ts startFrom): a held-out plan only
  // moves the optimum a little, so a fold converges in a few steps, not from the base again.
  const all = opts.method === 'physics' ? undefined : fitToAll ?? fitProfile(rows, base, opts).profile;
  for (const fold of new Set(folds)) {
    const train = rows.filter((_, i) => folds[i] !== fold);
    const fit = fitProfile(train, base, all ? { ...opts, startFrom: all } : opts);
    const priced = new Map<Measurement['program'], number>();
    rows.forEach((m, i) => {
      if (folds[i] !== fold) return;
      if (m.sibling || m.engine) {
        predicted[i] = price(m.program, rowProfile(m, fit)).time.step;
        return;
      }
      let s = priced.get(m.program);
      if (s === undefined) priced.set(m.program, (s = price(m.program, fit.profile).time.step));
      predicted[i] = s;
    });
  }
  return predicted;
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/**
 * Why rows were rejected, grouped by kind (a reason with its values taken out) and counted, most
 * common first, each with the first row it happened on: what a refusal says in one line.
 */
export function summarizeRejections(rejected: readonly Rejection[], kinds = 6): string {
  const groups = new Map<string, { count: number; first: Rejection }>();
  for (const r of rejected) {
    const kind = r.reason.replace(/, got .*$/, '').replace(/"[^"]*"/g, '"…"').replace(/\b\d+(\.\d+)?(e[-+]?\d+)?\b/g, 'N');
    const g = groups.get(kind);
    if (g) g.count++;
    else groups.set(kind, { count: 1, first: r });
  }
  const sorted = [...groups.values()].sort((a, b) => b.count - a.count);
  const shown = sorted.slice(0, kinds).map((g) => `${g.count}× ${g.first.reason} (first at ${g.first.source.file}:${g.first.source.line})`);
  const more = sorted.length > kinds ? `; and ${sorted.length - kinds} more kinds` : '';
  return `${rejected.length} row${rejected.length === 1 ? ' was' : 's were'} rejected: ${shown.join('; ')}${more}`;
}

/** Fit a profile to the rows and measure it by leave-one-plan-out against the base. */
export function calibrate(loaded: LoadedRows, base: HardwareProfile, files: readonly string[] = [], opts: FitOptions = {}): CalibrationReport {
  const { rows, rejected } = loaded;
  try {
    checkEnoughRows(rows, base, opts);
  } catch (e) {
    // A refusal says why the other rows could not be used, grouped and counted.
    if (e instanceof InputError && rejected.length) throw new InputError(`${e.message}; ${summarizeRejections(rejected)}`);
    throw e;
  }
  const before = accuracyOf(rows, base);
  const { profile: fitted, summary } = fitProfile(rows, base, opts);
  const cv = crossValidate(rows, base, opts, fitted);
  const after = accuracy(cv, rows.map((m) => m.stepTime), tauGroups(rows));
  const note = `fitted by mesh-search calibrate (robust bounded least squares) from ${rows.length} measured rows` +
    `${files.length ? ` of ${files.join(', ')}` : ''}; leave-one-plan-out step-time MAPE ${pct(after.mape)} (base ${base.name}: ${pct(before.mape)})`;
  const profile = validateProfile({
    ...fitted,
    name: `${base.name}-calibrated`,
    description: `${base.name}, calibrated against measured step times`,
    sources: { ...base.sources, efficiency: note, efficiencyHalfWork: note, axisLinks: note, overlap: note },
    fittedFrom: {
      tool: 'mesh-search calibrate', base: base.name, files: [...files], at: new Date().toISOString(),
      rows: { used: rows.length, rejected: rejected.length }, crossValidated: { before, after },
      parameters: summary.parameters.filter((p) => !p.fixed).map((p) => ({ name: p.name, base: p.base, fitted: p.fitted })),
      held: summary.parameters.filter((p) => p.fixed).map((p) => p.name),
    },
  }, 'calibrated profile');
  return {
    profile,
    rows: { used: rows.length, rejected: rejected.length },
    before,
    after,
    rejections: rejected.map((r) => ({ file: r.source.file, line: r.source.line, reason: r.reason })),
    fit: summary,
  };
}
