import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { allgatherFlat, allreduce, chunkBounds, reduceScatter } from '../src/runtime/ring.js';

// n buffers of len small integers: their sums are exact in float32, whatever the order of the adds.
const buffers = fc.integer({ min: 1, max: 6 }).chain((n) => fc.integer({ min: 1, max: 40 }).chain((len) =>
  fc.tuple(fc.array(fc.array(fc.integer({ min: -1000, max: 1000 }), { minLength: len, maxLength: len }), { minLength: n, maxLength: n }), fc.array(fc.boolean(), { minLength: n, maxLength: n }))));

describe('collectives on one group (what a thread works out for its own devices)', () => {
  it('allreduce: every wanted member gets the elementwise sum, each its own copy; each member sends 2(n−1)/n of the buffer, as a ring', () => {
    fc.assert(fc.property(buffers, ([rows, want]) => {
      const n = rows.length, len = rows[0].length;
      const bufs = rows.map((r) => Float32Array.from(r));
      const r = allreduce(bufs, 'sum', (m) => want[m]);
      const sum = rows[0].map((_, i) => rows.reduce((a, row) => a + row[i], 0));
      const mine = want.flatMap((w, m) => (w ? [m] : []));
      for (const m of mine) expect([...r.out[m]]).toEqual(sum);
      // Copies: writing one wanted member's result leaves the others'.
      if (mine.length > 1) {
        r.out[mine[0]][0] += 1;
        for (const m of mine.slice(1)) expect(r.out[m][0]).toBe(sum[0]);
      }
      // The inputs are untouched.
      bufs.forEach((b, m) => expect([...b]).toEqual(rows[m]));
      const total = r.sent.reduce((a, b) => a + b, 0);
      expect(total).toBe(n === 1 ? 0 : 2 * (n - 1) * 4 * len);
      if (len % n === 0) for (const s of r.sent) expect(s).toBe(n === 1 ? 0 : (2 * (n - 1) / n) * 4 * len);
    }), { seed: 7, numRuns: 200 });
  });

  it('reduce-scatter: wanted member r gets chunk r of the sum; allgather: every wanted member the concatenation', () => {
    fc.assert(fc.property(buffers, ([rows, want]) => {
      const n = rows.length, len = rows[0].length;
      const bufs = rows.map((r) => Float32Array.from(r));
      const b = chunkBounds(len, n);
      const sum = rows[0].map((_, i) => rows.reduce((a, row) => a + row[i], 0));
      const rs = reduceScatter(bufs, 'sum', (m) => want[m]);
      for (let m = 0; m < n; m++) if (want[m]) expect([...rs.out[m]]).toEqual(sum.slice(b[m], b[m + 1]));
      // A ring's reduce-scatter: each member sends every chunk but its own.
      rs.sent.forEach((s, m) => expect(s).toBe(4 * (len - (b[m + 1] - b[m]))));
      const ag = allgatherFlat(bufs, (m) => want[m]);
      for (let m = 0; m < n; m++) if (want[m]) expect([...ag.out[m]]).toEqual(rows.flat());
      // A ring's allgather of n chunks of len floats: each member sends every chunk but its successor's.
      ag.sent.forEach((x) => expect(x).toBe((n - 1) * 4 * len));
    }), { seed: 8, numRuns: 200 });
  });
});
