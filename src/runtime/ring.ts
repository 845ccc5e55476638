/**
 * Collectives over the members of one group (in rank order), on real copies of the data. Each
 * returns what every member it is asked for ends with, and the bytes each member sends as a ring
 * sends them, which the tests hold against the lowering's `sent` (collectives.ts sentBytes). A
 * thread works out only its own devices' results: reductions fold the members' buffers in rank
 * order, so every thread, and the lockstep path, gets the same numbers.
 */

/** How two reduction units combine: `unit` floats per element, folded into `acc` in place. */
export type Combine = 'sum' | 'softmax' | 'xent';
export const UNIT: Record<Combine, number> = { sum: 1, softmax: 2, xent: 3 };

function fold(combine: Combine, acc: Float32Array, msg: Float32Array): void {
  if (combine === 'sum') {
    for (let i = 0; i < msg.length; i++) acc[i] += msg[i];
    return;
  }
  // Online softmax statistics (max, Σ exp(x − max)[, target logit]): associative and commutative.
  const u = UNIT[combine];
  for (let i = 0; i < msg.length; i += u) {
    const m1 = acc[i], m2 = msg[i];
    const m = Math.max(m1, m2);
    acc[i] = m;
    acc[i + 1] = acc[i + 1] * Math.exp(m1 - m) + msg[i + 1] * Math.exp(m2 - m);
    if (u === 3) acc[i + 2] += msg[i + 2];
  }
}

/** Chunk boundaries of `len` floats over n members, each a multiple of `unit`. */
export function chunkBounds(len: number, n: number, unit = 1): number[] {
  const units = len / unit;
  const b: number[] = [];
  for (let r = 0; r <= n; r++) b.push(Math.floor((r * units) / n) * unit);
  return b;
}

const mod = (a: number, n: number) => ((a % n) + n) % n;

export interface RingResult<T> {
  readonly out: T[];
  /** Bytes each member sent. */
  readonly sent: number[];
}

/** Which members a collective's results are wanted for (the devices of the calling thread); absent: all. */
export type Wanted = (member: number) => boolean;
const ALL: Wanted = () => true;

/** Bytes each member sends in a ring pass that skips one chunk: member i sends every chunk but chunk (i + skip) mod n. */
function ringSent(chunkBytes: readonly number[], skip: number): number[] {
  const n = chunkBytes.length;
  const all = chunkBytes.reduce((a, b) => a + b, 0);
  return chunkBytes.map((_, i) => all - chunkBytes[mod(i + skip, n)]);
}

/** Chunk c of every member's buffer folded in rank order, into a fresh array. */
function foldChunk(bufs: readonly Float32Array[], combine: Combine, lo: number, hi: number): Float32Array {
  const acc = bufs[0].slice(lo, hi);
  for (let m = 1; m < bufs.length; m++) fold(combine, acc, bufs[m].subarray(lo, hi));
  return acc;
}

/**
 * Reduce-scatter: member r ends with chunk r reduced over every member, folded in rank order (the
 * same numbers on every thread that asks, whichever of its devices it runs). Only the `wanted`
 * members' chunks are worked out (the others' are empty); each member sends what a ring sends,
 * every chunk but its own.
 */
export function reduceScatter(bufs: readonly Float32Array[], combine: Combine = 'sum', wanted: Wanted = ALL): RingResult<Float32Array> {
  const n = bufs.length;
  const b = chunkBounds(bufs[0].length, n, UNIT[combine]);
  const out = bufs.map((_, r) => (wanted(r) ? foldChunk(bufs, combine, b[r], b[r + 1]) : new Float32Array(0)));
  return { out, sent: ringSent(bufs.map((_, c) => 4 * (b[c + 1] - b[c])), 0) };
}

/**
 * Allgather of one chunk per member: every wanted member ends with copies of all chunks, in rank
 * order (the others with the chunks themselves, uncopied); each member sends what a ring sends,
 * every chunk but its successor's.
 */
export function allgatherChunks<T extends { byteLength: number }>(chunks: readonly T[], copy: (x: T) => T, wanted: Wanted = ALL): RingResult<T[]> {
  const out = chunks.map((_, r) => (wanted(r) ? chunks.map((c, i) => (i === r ? c : copy(c))) : [...chunks]));
  return { out, sent: ringSent(chunks.map((c) => c.byteLength), 1) };
}

/**
 * Allreduce: the members' buffers folded in rank order, once; each wanted member ends with its own
 * copy (the others share the one result). Each sends what a ring sends, reduce-scatter then
 * allgather: 2(n−1)/n of the buffer.
 */
export function allreduce(bufs: readonly Float32Array[], combine: Combine = 'sum', wanted: Wanted = ALL): RingResult<Float32Array> {
  const n = bufs.length;
  if (n === 1) return { out: [Float32Array.from(bufs[0])], sent: [0] };
  const sum = foldChunk(bufs, combine, 0, bufs[0].length);
  const b = chunkBounds(bufs[0].length, n, UNIT[combine]);
  const chunkBytes = bufs.map((_, c) => 4 * (b[c + 1] - b[c]));
  const rs = ringSent(chunkBytes, 0), ag = ringSent(chunkBytes, 1);
  let first = true;
  const out = bufs.map((_, r) => {
    if (!wanted(r)) return sum;
    // The first wanted member takes the result itself, the others a copy each.
    if (first) { first = false; return sum; }
    return sum.slice();
  });
  return { out, sent: rs.map((x, i) => x + ag[i]) };
}

/** Allgather of flat chunks (ZeRO): every wanted member ends with the concatenation (the others with nothing). */
export function allgatherFlat(chunks: readonly Float32Array[], wanted: Wanted = ALL): RingResult<Float32Array> {
  const length = chunks.reduce((s, p) => s + p.length, 0);
  const out = chunks.map((_, r) => {
    if (!wanted(r)) return new Float32Array(0);
    const o = new Float32Array(length);
    let at = 0;
    for (const p of chunks) {
      o.set(p, at);
      at += p.length;
    }
    return o;
  });
  return { out, sent: ringSent(chunks.map((c) => c.byteLength), 1) };
}
