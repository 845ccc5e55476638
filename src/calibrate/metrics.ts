import type { Accuracy } from './types.js';

/** Mean absolute percentage error, as a fraction. */
export function mape(predicted: readonly number[], measured: readonly number[]): number {
  let s = 0;
  for (let i = 0; i < measured.length; i++) s += Math.abs(predicted[i] - measured[i]) / measured[i];
  return measured.length ? s / measured.length : NaN;
}

/** Pair counts of a set of points: all pairs, ties in x, ties in y, and concordant minus discordant. */
interface PairCounts {
  pairs: number;
  tiesX: number;
  tiesY: number;
  s: number;
}

const choose2 = (t: number) => (t * (t - 1)) / 2;

/** Σ t(t−1)/2 over runs of equal keys in a sorted index list. */
function tieRuns(idx: readonly number[], same: (a: number, b: number) => boolean): number {
  let ties = 0;
  let run = 1;
  for (let k = 1; k <= idx.length; k++) {
    if (k < idx.length && same(idx[k - 1], idx[k])) run++;
    else {
      ties += choose2(run);
      run = 1;
    }
  }
  return ties;
}

/**
 * Knight's O(n log n) pair counts (Knight 1966, "A computer method for calculating Kendall's tau"):
 * sort by (x, y), count the swaps a merge sort by y makes; S = n0 − n1 − n2 + n3 − 2·swaps.
 */
function pairCounts(x: readonly number[], y: readonly number[], members: readonly number[]): PairCounts {
  const n = members.length;
  const idx = [...members].sort((a, b) => x[a] - x[b] || y[a] - y[b]);
  const tiesX = tieRuns(idx, (a, b) => x[a] === x[b]);
  const tiesXY = tieRuns(idx, (a, b) => x[a] === x[b] && y[a] === y[b]);
  let swaps = 0;
  let cur = idx.slice();
  let buf = new Array<number>(n);
  for (let width = 1; width < n; width *= 2) {
    for (let lo = 0; lo < n; lo += 2 * width) {
      const mid = Math.min(lo + width, n);
      const hi = Math.min(lo + 2 * width, n);
      let i = lo, j = mid, k = lo;
      while (i < mid && j < hi) {
        if (y[cur[j]] < y[cur[i]]) {
          swaps += mid - i;
          buf[k++] = cur[j++];
        } else buf[k++] = cur[i++];
      }
      while (i < mid) buf[k++] = cur[i++];
      while (j < hi) buf[k++] = cur[j++];
    }
    [cur, buf] = [buf, cur];
  }
  const tiesY = tieRuns(cur, (a, b) => y[a] === y[b]);
  const pairs = choose2(n);
  return { pairs, tiesX, tiesY, s: pairs - tiesX - tiesY + tiesXY - 2 * swaps };
}

/** Which pairs count: those of rows in the same problem but of different plans. */
export interface TauGroups {
  readonly problem: readonly string[];
  readonly plan: readonly string[];
}

function groupBy(keys: readonly string[], members: readonly number[]): number[][] {
  const m = new Map<string, number[]>();
  for (const i of members) {
    const g = m.get(keys[i]);
    if (g) g.push(i);
    else m.set(keys[i], [i]);
  }
  return [...m.values()];
}

/**
 * Kendall's tau-b, pooled over the pairs of rows in the same problem (same model and mesh: the
 * choices a search makes) and of different plans; null when there is no such pair. Every count is
 * a sum over pairs, so a problem's counts minus those of each plan within it are the counts across
 * plans: O(n log n) in the rows.
 */
export function kendallTau(predicted: readonly number[], measured: readonly number[], groups?: TauGroups): number | null {
  const all = Array.from(measured, (_, i) => i);
  const problem = groups?.problem ?? all.map(() => '');
  const plan = groups?.plan ?? all.map(String);
  const total: PairCounts = { pairs: 0, tiesX: 0, tiesY: 0, s: 0 };
  const add = (c: PairCounts, sign: number) => {
    total.pairs += sign * c.pairs;
    total.tiesX += sign * c.tiesX;
    total.tiesY += sign * c.tiesY;
    total.s += sign * c.s;
  };
  for (const members of groupBy(problem, all)) {
    add(pairCounts(predicted, measured, members), 1);
    for (const same of groupBy(plan, members)) if (same.length > 1) add(pairCounts(predicted, measured, same), -1);
  }
  const denom = Math.sqrt((total.pairs - total.tiesX) * (total.pairs - total.tiesY));
  return denom > 0 ? total.s / denom : null;
}

export function accuracy(predicted: readonly number[], measured: readonly number[], groups?: TauGroups): Accuracy {
  return { mape: mape(predicted, measured), kendallTau: kendallTau(predicted, measured, groups) };
}
