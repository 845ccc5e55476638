import type { CommandModule } from 'yargs';
import { readBenchFile } from '../../calibrate/bench.js';
import { validateRows, type ValidationReport } from '../../calibrate/validate.js';
import { InputError } from '../../errors.js';
import { fmtSeconds, table } from '../format.js';

interface Args {
  bench?: string[];
  device?: string;
  json?: boolean;
}

const pct = (x: number) => `${x >= 0 ? '+' : ''}${(100 * x).toFixed(1)}%`;
const abs = (x: number) => `${(100 * x).toFixed(1)}%`;

export function formatValidation(r: ValidationReport): string {
  const lines = [
    table(['row', 'model', 'device', 'mesh', 'measured', 'estimated', 'error'],
      r.rows.map((x) => [`${x.file}:${x.line}`, x.model, x.device, x.mesh, fmtSeconds(x.measured), fmtSeconds(x.estimated), pct(x.error) + (x.feasible ? '' : ' (over memory)')])),
    '',
    table(['device', 'rows', 'mean |error|', 'max |error|', 'signed mean'],
      r.families.map((f) => [f.device, String(f.rows), abs(f.meanAbsError), abs(f.maxAbsError), pct(f.signedMeanError)])),
    ...r.rejections.map((x) => `rejected ${x.file}:${x.line}: ${x.reason}`),
  ];
  return lines.join('\n') + '\n';
}

export const validateCommand: CommandModule<object, Args> = {
  command: 'validate',
  describe: 'Compare estimated with measured step times on benchmark rows (the calibrate --bench format)',
  builder: (y) =>
    y
      .option('bench', { type: 'string', array: true, describe: 'benchmark rows: .csv, .json or .jsonl (README, "Benchmark rows")' })
      .option('device', { type: 'string', describe: 'estimate every row under this preset or profile JSON (default: each row\'s device, else tpu-v2)' })
      .option('json', { type: 'boolean', describe: 'print one JSON object on stdout' }),
  handler: (args) => {
    if (!args.bench || args.bench.length === 0) throw new InputError('validate needs --bench FILE.csv (rows in the calibrate --bench format)');
    const raw = args.bench.flatMap((b) => readBenchFile(b));
    if (raw.length === 0) throw new InputError(`no rows in ${args.bench.join(', ')}`);
    const report = validateRows(raw, args.device);
    process.stdout.write(args.json ? JSON.stringify(report) + '\n' : formatValidation(report));
  },
};
