import { checkWritable, enumFlag, writeAtomic } from '../../inputs/index.js';
import type { CommandModule } from 'yargs';
import { InputError } from '../../errors.js';
import { baseDevice, calibrate, readInputs, resolveRows, summarizeRejections } from '../../calibrate/index.js';
import type { Accuracy, CalibrationReport } from '../../calibrate/types.js';
import { table } from '../format.js';

interface Args {
  trace?: string[];
  bench?: string[];
  device?: string;
  steps: string;
  hold?: string[];
  fit: string;
  out?: string;
  json?: boolean;
}

const HOLD_GROUPS = ['efficiency', 'efficiencyHalfWork', 'bandwidth', 'latency', 'overlap'];
const PHYSICS_GROUPS = ['efficiency', 'gemmHalfSize', 'launchOverhead', 'overlap', 'tensorParallelOverlap', 'levels'];
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const tau = (a: Accuracy) => (a.kendallTau === null ? 'n/a' : a.kendallTau.toFixed(3));
const num = (x: number) => (Math.abs(x) >= 1e4 || (x !== 0 && Math.abs(x) < 1e-2) ? x.toExponential(3) : x.toFixed(4));


const SHOWN_REJECTIONS = 8;

export function formatReport(r: CalibrationReport, out?: string): string {
  const lines = [
    `calibrated ${r.profile.name} from ${r.rows.used} rows (${r.rows.rejected} rejected)`,
    // A few rejected rows one per line; many (rows of other devices in a shared file) grouped by reason.
    ...(r.rejections.length <= SHOWN_REJECTIONS
      ? r.rejections.map((x) => `  rejected ${x.file}:${x.line}: ${x.reason}`)
      : [`  ${summarizeRejections(r.rejections.map((x) => ({ source: { file: x.file, line: x.line }, reason: x.reason })))} (--json lists each)`]),
    ...r.fit.outliers.map((o) => `  outlier (no weight in the fit) ${o.file}:${o.line}: step time off by ${pct(o.relativeError)}`),
    '',
    table(['parameter', 'base', 'fitted'], r.fit.parameters.map((p) => [p.name, num(p.base), p.fixed ? 'kept (rows do not determine it)' : num(p.fitted)])),
    '',
    'leave-one-plan-out cross-validation, step time:',
    table(['profile', 'MAPE', 'Kendall tau'], [['before (base)', pct(r.before.mape), tau(r.before)], ['after (calibrated)', pct(r.after.mape), tau(r.after)]]),
    `in-sample MAPE of the final fit ${pct(r.fit.inSampleMape)} over ${r.fit.observations} observations`,
    out ? `profile written to ${out} (use it with --device ${out})` : '',
  ];
  return lines.join('\n').trimEnd() + '\n';
}

export const calibrateCommand: CommandModule<object, Args> = {
  command: 'calibrate',
  describe: 'Fit a hardware profile to measured step times (runtime traces or benchmark rows)',
  builder: (y) =>
    y
      .option('trace', { type: 'string', array: true, describe: 'trace JSON files written by mesh-search run --trace' })
      .option('bench', { type: 'string', array: true, describe: 'benchmark rows: .csv, .json or .jsonl (README, "Calibration")' })
      .option('steps', { type: 'string', default: 'min', choices: ['min', 'median'], describe: 'a trace\'s step time: the least or the median over its steps after the first' })
      .option('hold', { type: 'string', array: true, describe: 'parameters to keep at the base value, a group or one of it. --fit classes: efficiency, efficiencyHalfWork, bandwidth, latency, overlap (or one like latency.rows); --fit physics: efficiency, gemmHalfSize, launchOverhead, overlap, tensorParallelOverlap, eagerCompute, levels (or one like levels.nvlink.overlap)' })
      .option('fit', { type: 'string', default: 'classes', choices: ['classes', 'physics'], describe: 'classes: efficiency per op class and a link per mesh axis (traces); physics: the profile\'s hardware constants through the cost model itself (benchmarks of real clusters)' })
      .option('device', { type: 'string', describe: 'base profile: a preset or profile JSON (default: host for traces; for --bench the rows\' device, else tpu-v2)' })
      .option('out', { type: 'string', describe: 'write the calibrated profile JSON here' })
      .option('json', { type: 'boolean', describe: 'print one JSON object on stdout' }),
  handler: (args) => {
    if (!args.out && !args.json) throw new InputError('calibrate needs --out profile.json (or --json to print the profile)');
    if (args.out) checkWritable(args.out, 'the profile');
    const statistic = enumFlag('steps', args.steps, ['min', 'median'] as const);
    const hold = (args.hold ?? []).flatMap((h) => h.split(',')).map((h) => h.trim()).filter(Boolean);
    const method = args.fit === 'physics' ? 'physics' : 'classes';
    const groups = method === 'physics' ? PHYSICS_GROUPS : HOLD_GROUPS;
    for (const h of hold) {
      if (!groups.includes(h.split('.')[0])) throw new InputError(`--hold ${h}: not a parameter of the ${method} fit; groups are ${groups.join(', ')} (or one like ${method === 'physics' ? 'efficiency.matmul' : 'latency.rows'})`);
    }
    const raw = readInputs({ traces: args.trace, bench: args.bench, statistic });
    // Traces come from the runtime, which measures this machine: their base is the host profile.
    const base = baseDevice(raw, args.device ?? (args.bench === undefined ? 'host' : undefined));
    const loaded = resolveRows(raw, base, args.device);
    const report = calibrate(loaded, base, [...(args.trace ?? []), ...(args.bench ?? [])], { hold, method });
    if (args.out) writeAtomic(args.out, JSON.stringify(report.profile, null, 2) + '\n', 'the profile');
    process.stdout.write(args.json ? JSON.stringify(report) + '\n' : formatReport(report, args.out));
  },
};
