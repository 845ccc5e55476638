import { InputError } from '../errors.js';

/** Plain decimal notation only: `0x10`, `1_000`, `Infinity`, ` ` and `1e` are not numbers a user means. */
const DECIMAL = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

/** A decimal number from a text cell or a JSON number; undefined when it is neither (or not finite). */
export function decimal(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) ? v : undefined;
  if (typeof v !== 'string') return undefined;
  const t = v.trim();
  if (!DECIMAL.test(t)) return undefined;
  const n = Number(t);
  return Number.isFinite(n) ? n : undefined;
}

const shown = (v: unknown) => (typeof v === 'string' ? JSON.stringify(v) : Array.isArray(v) ? `${v.length} values (give it once)` : String(v));

/** An integer flag, strictly: given once, decimal digits, in [min, max]; `why` explains the range. */
export function intFlag(name: string, v: unknown, min: number, max = Number.MAX_SAFE_INTEGER, why?: string): number {
  const n = decimal(v);
  if (n === undefined || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new InputError(`--${name} must be an integer ${max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`}${why ? ` (${why})` : ''}, got ${shown(v)}`);
  }
  return n;
}

/** An optional integer flag: undefined stays undefined. */
export function optionalIntFlag(name: string, v: unknown, min: number, max?: number): number | undefined {
  return v === undefined ? undefined : intFlag(name, v, min, max);
}

/** A string flag that takes one of a few values, exactly. */
export function enumFlag<T extends string>(name: string, v: unknown, options: readonly T[]): T {
  if (typeof v !== 'string' || !(options as readonly string[]).includes(v)) {
    throw new InputError(`--${name} must be one of ${options.join(', ')}, got ${shown(v)}`);
  }
  return v as T;
}

/** A string flag given once and not empty. */
export function stringFlag(name: string, v: unknown, what: string): string {
  if (Array.isArray(v)) throw new InputError(`--${name} is given ${v.length} times; give it once`);
  if (typeof v !== 'string' || v.trim() === '') throw new InputError(`--${name} needs ${what}`);
  return v;
}

/**
 * `--workers`: 0 (inline) or a positive integer, capped at the machine's cores: more threads than
 * cores only add memory (each worker holds its own pricer). `say` hears about a cap.
 */
export function workersFlag(v: unknown, cores: number, say: (line: string) => void): number | undefined {
  const n = optionalIntFlag('workers', v, 0);
  if (n === undefined || n <= cores) return n;
  say(`--workers ${n} is more than this machine's ${cores} cores: using ${cores}`);
  return cores;
}
