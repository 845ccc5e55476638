import { closeSync, existsSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { InputError } from '../errors.js';

/** Input files above this size are refused: V8 strings stop near 512 MiB, and nothing we read needs more. */
export const MAX_INPUT_BYTES = 256 * 2 ** 20;

const code = (e: unknown) => (e as NodeJS.ErrnoException)?.code;
const why = (e: unknown) => (code(e) === 'ENOENT' ? ': no such file' : code(e) === 'EISDIR' ? ': it is a directory' : code(e) ? `: ${code(e)}` : '');

/**
 * Check an input file before reading it: it exists, is a file (or a pipe), not a directory or a
 * device (/dev/zero never ends), and is no larger than `maxBytes`.
 */
export function checkReadable(path: string, what: string, maxBytes = MAX_INPUT_BYTES): void {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw new InputError(`cannot read ${what} file ${path}${why(e)}`);
  }
  if (st.isDirectory()) throw new InputError(`cannot read ${what} file ${path}: it is a directory`);
  if (!st.isFile() && !st.isFIFO()) throw new InputError(`cannot read ${what} file ${path}: it is not a regular file`);
  if (st.size > maxBytes) throw new InputError(`${what} file ${path} is ${(st.size / 2 ** 20).toFixed(0)} MiB, more than the ${(maxBytes / 2 ** 20).toFixed(0)} MiB mesh-search reads`);
}

/** A whole text file, refused with one line when missing, a directory or too large. */
export function readTextFile(path: string, what: string, maxBytes = MAX_INPUT_BYTES): string {
  checkReadable(path, what, maxBytes);
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new InputError(`cannot read ${what} file ${path}${why(e)}`);
  }
}

/** Read and parse a JSON file; a missing, oversized or malformed file is one line of InputError. */
export function readJsonFile(path: string, what: string, maxBytes = MAX_INPUT_BYTES): unknown {
  const text = readTextFile(path, what, maxBytes);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new InputError(`${what} file ${path} is not valid JSON: ${(e as Error).message}`);
  }
}

/**
 * Refuse, before any work, an output path that cannot be written: a directory, a missing folder,
 * a folder we may not write in. Nothing is created.
 */
export function checkWritable(path: string, what: string): void {
  if (Array.isArray(path)) throw new InputError(`${what}: an output path is given ${(path as unknown[]).length} times; give it once`);
  if (typeof path !== 'string' || path.trim() === '') throw new InputError(`${what}: the output path is empty`);
  if (path.endsWith('/')) throw new InputError(`cannot write ${what} to ${path}: it names a directory`);
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    if (code(e) !== 'ENOENT') throw new InputError(`cannot write ${what} to ${path}${why(e)}`);
  }
  if (st?.isDirectory()) throw new InputError(`cannot write ${what} to ${path}: it is a directory`);
  const dir = dirname(resolve(path));
  if (!existsSync(dir)) throw new InputError(`cannot write ${what} to ${path}: the folder ${dirname(path)} does not exist`);
  if (!statSync(dir).isDirectory()) throw new InputError(`cannot write ${what} to ${path}: ${dirname(path)} is not a folder`);
}

/** Write a file whole or not at all: a temporary file beside it, then a rename; the temporary never stays. */
export function writeAtomic(path: string, text: string | Uint8Array, what = 'the file'): void {
  checkWritable(path, what);
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    const fd = openSync(tmp, 'w');
    try {
      writeSync(fd, typeof text === 'string' ? Buffer.from(text) : text);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new InputError(`cannot write ${what} to ${path}${why(e) || `: ${(e as Error).message}`}`);
  }
}
