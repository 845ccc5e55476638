import { InputError } from '../errors.js';
import { DEFAULT_DEVICE } from '../cost/presets.js';
import { price } from '../cost/price.js';
import { validateProfile, type HardwareProfile } from '../cost/profile.js';
import { loadDevice } from '../cli/inputs.js';
import { readBenchFile } from './bench.js';
import { fitProfile, setupFit, tooFewMessage, type FitOptions } from './fit.js';
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
  for (const b of inputs.bench ?? []) raw.push(...readBenchFile(b));
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

function comparable(rows: readonly Measurement[]) {
  return (i: number, j: number) => rows[i].problemKey === rows[j].problemKey && rows[i].planKey !== rows[j].planKey;
}

/** The base profile's step-time accuracy on the rows (nothing fitted, so nothing to cross-validate). */
export function accuracyOf(rows: readonly Measurement[], profile: HardwareProfile): Accuracy {
  return accuracy(rows.map((m) => price(m.program, profile).time.step), rows.map((m) => m.stepTime), comparable(rows));
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
  const perPlan = new Map<string, number>();
  setup.obs.forEach((o) => perPlan.set(rows[o.row].planKey, (perPlan.get(rows[o.row].planKey) ?? 0) + 1));
  const least = setup.obs.length - Math.max(...perPlan.values());
  if (least < setup.free + 1) {
    throw new InputError(tooFewMessage(setup.obs.length, least, rows.length, setup.free, setup.space.defs.filter((_, j) => !setup.fixed[j]).map((d) => d.name)));
  }
}

/** Leave-one-plan-out: each plan's step time as predicted by a profile fitted without it. */
export function crossValidate(rows: readonly Measurement[], base: HardwareProfile, opts: FitOptions = {}): number[] {
  const predicted = new Array<number>(rows.length);
  for (const key of new Set(rows.map((m) => m.planKey))) {
    const train = rows.filter((m) => m.planKey !== key);
    const { profile } = fitProfile(train, base, opts);
    rows.forEach((m, i) => {
      if (m.planKey === key) predicted[i] = price(m.program, profile).time.step;
    });
  }
  return predicted;
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/** Fit a profile to the rows and measure it by leave-one-plan-out against the base. */
export function calibrate(loaded: LoadedRows, base: HardwareProfile, files: readonly string[] = [], opts: FitOptions = {}): CalibrationReport {
  const { rows, rejected } = loaded;
  checkEnoughRows(rows, base, opts);
  const before = accuracyOf(rows, base);
  const cv = crossValidate(rows, base, opts);
  const after = accuracy(cv, rows.map((m) => m.stepTime), comparable(rows));
  const { profile: fitted, summary } = fitProfile(rows, base, opts);
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
