import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InputError } from '../errors.js';
import { checkReadable } from '../inputs/index.js';
import type { ModelSpec } from '../model/spec.js';

/** The text `train` reads unless told otherwise: public domain, shipped in data/. */
export const DEFAULT_TEXT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'data', 'coriolanus.txt');

/** Byte-level tokens of a text file; every byte must be below the model's vocabulary. */
export function loadText(path: string, spec: ModelSpec): Uint8Array {
  checkReadable(path, 'training text');
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new InputError(`cannot read the training text ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (bytes.length < spec.seqLen + 2) throw new InputError(`the training text ${path} has ${bytes.length} bytes, fewer than one sequence of ${spec.seqLen + 1}`);
  let max = 0;
  for (const b of bytes) max = Math.max(max, b);
  if (max >= spec.vocab) throw new InputError(`the training text ${path} has byte ${max}, outside model ${spec.name}'s vocabulary of ${spec.vocab}`);
  return bytes;
}

/** Step t's batch [batch, seqLen + 1]: windows at positions drawn from (seed, t), so a resumed run sees the same data. */
export function textBatches(bytes: Uint8Array, spec: ModelSpec, seed: number): (step: number) => Int32Array {
  const L = spec.seqLen + 1;
  const span = bytes.length - L;
  return (step) => {
    const out = new Int32Array(spec.batch * L);
    for (let b = 0; b < spec.batch; b++) {
      let h = (Math.imul(seed + 1, 0x9e3779b1) ^ Math.imul(step + 1, 0x85ebca6b) ^ Math.imul(b + 1, 0xc2b2ae35)) >>> 0;
      h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) >>> 0;
      h = (h ^ (h >>> 12)) >>> 0;
      const at = h % (span + 1);
      for (let i = 0; i < L; i++) out[b * L + i] = bytes[at + i];
    }
    return out;
  };
}
