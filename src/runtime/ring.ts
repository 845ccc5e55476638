/**
 * Collectives as ring algorithms over the members of one group (in rank order), moving real
 * copies of the data step by step. Each returns what every member ends with and the bytes each
 * member sent, which the tests hold against the lowering's `sent` (collectives.ts sentBytes).
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

/** Ring reduce-scatter: member r ends with the reduced chunk r. */
export function reduceScatter(bufs: readonly Float32Array[], combine: Combine = 'sum'): RingResult<Float32Array> {
  const n = bufs.length;
  const len = bufs[0].length;
  const b = chunkBounds(len, n, UNIT[combine]);
  const acc = bufs.map((x) => Float32Array.from(x));
  const sent = new Array<number>(n).fill(0);
  for (let s = 0; s < n - 1; s++) {
    // Lockstep: every member sends first, then every member folds what it received.
    const msgs = acc.map((a, i) => {
      const c = mod(i - s - 1, n);
      const m = a.slice(b[c], b[c + 1]);
      sent[i] += m.byteLength;
      return { to: (i + 1) % n, c, m };
    });
    for (const { to, c, m } of msgs) fold(combine, acc[to].subarray(b[c], b[c + 1]), m);
  }
  return { out: acc.map((a, i) => a.slice(b[i], b[i + 1])), sent };
}

/** Ring allgather of one chunk per member: every member ends with all chunks, in rank order. */
export function allgatherChunks<T extends { byteLength: number }>(chunks: readonly T[], copy: (x: T) => T): RingResult<T[]> {
  const n = chunks.length;
  const have: (T | undefined)[][] = chunks.map((c, i) => {
    const row = new Array<T | undefined>(n).fill(undefined);
    row[i] = c;
    return row;
  });
  const sent = new Array<number>(n).fill(0);
  for (let s = 0; s < n - 1; s++) {
    const msgs = have.map((row, i) => {
      const c = mod(i - s, n);
      const m = copy(row[c]!);
      sent[i] += m.byteLength;
      return { to: (i + 1) % n, c, m };
    });
    for (const { to, c, m } of msgs) have[to][c] = m;
  }
  return { out: have.map((row) => row.map((x) => x!)), sent };
}

/** Ring allreduce = reduce-scatter then allgather: 2(n−1)/n of the buffer sent per member. */
export function allreduce(bufs: readonly Float32Array[], combine: Combine = 'sum'): RingResult<Float32Array> {
  const n = bufs.length;
  if (n === 1) return { out: [Float32Array.from(bufs[0])], sent: [0] };
  const rs = reduceScatter(bufs, combine);
  const ag = allgatherChunks(rs.out, (x) => x.slice());
  const len = bufs[0].length;
  const out = ag.out.map((parts) => {
    const o = new Float32Array(len);
    let at = 0;
    for (const p of parts) {
      o.set(p, at);
      at += p.length;
    }
    return o;
  });
  return { out, sent: rs.sent.map((x, i) => x + ag.sent[i]) };
}

/** Allgather of flat chunks (ZeRO): every member ends with the concatenation. */
export function allgatherFlat(chunks: readonly Float32Array[]): RingResult<Float32Array> {
  const ag = allgatherChunks(chunks, (x) => x.slice());
  const out = ag.out.map((parts) => {
    const o = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
    let at = 0;
    for (const p of parts) {
      o.set(p, at);
      at += p.length;
    }
    return o;
  });
  return { out, sent: ag.sent };
}
