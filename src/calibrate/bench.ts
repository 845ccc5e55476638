import { readTextFile } from '../inputs/index.js';
import { InputError } from '../errors.js';
import type { OpClassName } from '../cost/profile.js';
import { parseCsv } from './csv.js';
import type { RawRow } from './resolve.js';
import { OP_CLASSES } from './types.js';

/**
 * Benchmark rows, one per measured run (README, "Calibration"). Columns, CSV and JSON alike:
 * model, mesh, layout, zero, zero_axes (hybrid sharding: the batch axes ZeRO shards over, joined by +), recompute, microbatches, sequence_parallel, virtual_stages, batch (global,
 * overrides the model's), device, step_time (seconds), and optional seconds per step per device:
 * matmul_time, elementwise_time, softmax_time, reduction_time, comm_time:<axes> (collectives over
 * those axes, e.g. comm_time:rows+cols); engine (the training engine that ran it, as --engine
 * names it: its full recompute is priced as it runs, Capabilities.fullRecompute); note and source (free text).
 */
export const REQUIRED_COLUMNS = ['model', 'mesh', 'layout', 'step_time'] as const;
const PLAIN_COLUMNS = new Set([
  'model', 'mesh', 'layout', 'zero', 'zero_axes', 'recompute', 'microbatches', 'sequence_parallel', 'virtual_stages', 'batch', 'device', 'step_time',
  'engine', 'note', 'source', ...OP_CLASSES.map((k) => `${k}_time`),
]);
const COMM = /^comm_time:([A-Za-z_][A-Za-z0-9_]*(\+[A-Za-z_][A-Za-z0-9_]*)*)$/;

function checkColumns(columns: readonly string[], where: string): void {
  const seen = new Set<string>();
  for (const c of columns) {
    // A column named twice: which of the two is the measurement? Refuse rather than guess.
    if (seen.has(c)) throw new InputError(`${where}: column "${c}" is named twice`);
    seen.add(c);
    if (!PLAIN_COLUMNS.has(c) && !COMM.test(c)) {
      throw new InputError(`${where}: unknown column "${c}"; columns are ${[...PLAIN_COLUMNS].join(', ')} and comm_time:<axes> (like comm_time:rows+cols)`);
    }
  }
}

function rawFrom(get: (c: string) => unknown, columns: readonly string[], file: string, line: number): RawRow {
  const compute: Partial<Record<OpClassName, unknown>> = {};
  for (const k of OP_CLASSES) if (get(`${k}_time`) !== undefined) compute[k] = get(`${k}_time`);
  const comm: Record<string, unknown> = {};
  for (const c of columns) {
    const m = COMM.exec(c);
    if (m && get(c) !== undefined) comm[m[1]] = get(c);
  }
  return {
    source: { file, line }, model: get('model'), mesh: get('mesh'), layout: get('layout'), zero: get('zero'), zeroAxes: get('zero_axes'),
    recompute: get('recompute'), microbatches: get('microbatches'), sequenceParallel: get('sequence_parallel'),
    virtualStages: get('virtual_stages'), batch: get('batch'), device: get('device'), engine: get('engine'), stepTime: get('step_time'), compute, comm,
  };
}

export function benchRowsFromCsv(text: string, file: string): RawRow[] {
  const records = parseCsv(text, file);
  if (records.length === 0) throw new InputError(`${file}: empty; expected a header line (${REQUIRED_COLUMNS.join(',')},...) and rows`);
  const [header, ...rows] = records;
  const columns = header.fields;
  checkColumns(columns, `${file}:${header.line}`);
  for (const c of REQUIRED_COLUMNS) if (!columns.includes(c)) throw new InputError(`${file}:${header.line}: the header has no "${c}" column`);
  return rows.map((r) => {
    const get = (c: string) => {
      const i = columns.indexOf(c);
      return i < 0 || i >= r.fields.length || r.fields[i] === '' ? undefined : r.fields[i];
    };
    if (r.fields.length !== columns.length) {
      // A short or long row is still read, but it is rejected rather than misread.
      return { ...rawFrom(get, columns, file, r.line), problem: `${r.fields.length} fields, but the header has ${columns.length} columns` };
    }
    return rawFrom(get, columns, file, r.line);
  });
}

/** Line on which each element of the rows array starts: a scan that knows strings and nesting. */
function elementLines(text: string, depth: number): number[] {
  const lines: number[] = [];
  let line = 1;
  let d = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '\n') line++;
    if (inString) {
      if (ch === '\\') i++;
      else if (ch === '"') inString = false;
      continue;
    }
    if (ch === '"') inString = true;
    else if (ch === '{' || ch === '[') {
      if (d === depth && ch === '{') lines.push(line);
      d++;
    } else if (ch === '}' || ch === ']') d--;
  }
  return lines;
}

export function benchRowsFromJson(text: string, file: string): RawRow[] {
  const trimmed = text.trim();
  let values: unknown[];
  let lines: number[];
  if (trimmed.startsWith('[') || trimmed.startsWith('{"rows"') || /^\{\s*"rows"\s*:/.test(trimmed)) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      throw new InputError(`${file} is not valid JSON: ${(e as Error).message}`);
    }
    const inner = Array.isArray(parsed) ? parsed : (parsed as { rows?: unknown }).rows;
    if (!Array.isArray(inner)) throw new InputError(`${file}: expected a JSON array of rows or { "rows": [...] }`);
    values = inner;
    lines = elementLines(text, Array.isArray(parsed) ? 1 : 2);
  } else {
    // JSON Lines: one row object per line.
    values = [];
    lines = [];
    text.split('\n').forEach((l, i) => {
      if (l.trim() === '' || l.trim().startsWith('#')) return;
      try {
        values.push(JSON.parse(l));
      } catch (e) {
        values.push({ __unparsable: (e as Error).message });
      }
      lines.push(i + 1);
    });
  }
  return values.map((v, i) => {
    const line = lines[i] ?? 0;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) {
      return { ...rawFrom(() => undefined, [], file, line), problem: `expected an object with model, mesh, layout, step_time, got ${JSON.stringify(v)}` };
    }
    const o = v as Record<string, unknown>;
    const plan = typeof o.plan === 'object' && o.plan !== null ? (o.plan as Record<string, unknown>) : {};
    if ('__unparsable' in o) return { ...rawFrom(() => undefined, [], file, line), problem: `not valid JSON: ${String(o.__unparsable)}` };
    const columns = Object.keys(o).filter((k) => k !== 'plan' && k !== 'stepTime');
    // A nested plan is a plan as `search --out` writes it, in camelCase.
    const camel: Record<string, string> = { sequence_parallel: 'sequenceParallel', virtual_stages: 'virtualStages', zero_axes: 'zeroAxes' };
    const get = (c: string) => (c === 'step_time' ? o.step_time ?? o.stepTime : o[c] ?? plan[c] ?? (camel[c] ? plan[camel[c]] : undefined));
    const row = rawFrom(get, columns, file, line);
    try {
      checkColumns(columns, 'row');
    } catch (e) {
      return { ...row, problem: (e as Error).message.replace(/^row: /, '') };
    }
    return row;
  });
}

/** A benchmark file: .csv, or JSON (an array, { rows }, or JSON Lines). */
export function readBenchFile(path: string): RawRow[] {
  let text: string;
  text = readTextFile(path, 'benchmark');
  return /\.csv$/i.test(path) ? benchRowsFromCsv(text, path) : benchRowsFromJson(text, path);
}
