import { stateBytes } from '../lower/lower.js';
import { RECOMPUTE } from '../lower/plan.js';
import { DIM_NAMES, type Graph } from '../model/graph.js';
import type { HardwareProfile } from '../cost/profile.js';
import { matmulBound } from './bounds.js';
import type { PlanSpace } from './space.js';

/**
 * What the remaining axes can add: for a partial layout (axes 0..j-1 chosen), figures over all
 * its completions, memoised on what they depend on: the axis j, each dimension's split so far and
 * whether `batch` has an axis (ZeRO stages). Two prefixes with equal splits share one entry, so
 * the table grows with the splits a mesh can make, not with (dims+1)^axes.
 *
 * - lbStep: the least FLOPs bound of any valid completion (flopsBound: matmul FLOPs at the
 *   profile's matmul rate, with the least pipeline bubble share); admissible for every plan below.
 * - lbMemory: the least model-state law of any valid completion: each weight's parameter,
 *   gradient and optimizer bytes, split by its dimensions' axes and at best by the batch axes
 *   (ZeRO 3); activations and temporaries only add.
 * - plans, valid: the counts the exhaustive scan reports, over every completion (mirror images
 *   included), so pruning a subtree never loses its count.
 * - maxUsed: the most devices a valid completion puts to work (the remaining axes' share).
 */
export interface Remaining {
  /** The state of the empty prefix. */
  readonly root: number;
  /** The state after axis j takes choice c from state s; -1 when a split stops dividing its dimension. */
  next(s: number, j: number, c: number): number;
  lbStep(s: number): number;
  lbMemory(s: number): number;
  plans(s: number): number;
  valid(s: number): number;
  maxUsed(s: number): number;
  /** Each dimension's split in state s (a fresh array). */
  splitOf(s: number): number[];
  /** How many states were worked out (for the bench). */
  readonly size: number;
}

const BATCH = DIM_NAMES.indexOf('batch');
const LAYERS = DIM_NAMES.indexOf('layers');
const D = DIM_NAMES.length;

// Bounds are scaled down by this much so that a float rounded the other way never prunes an equal plan.
export const SLACK_ROUNDING = 1 - 1e-9;

export function makeRemaining(space: PlanSpace, graph: Graph, profile: HardwareProfile): Remaining {
  const A = space.sizes.length;
  const S = space.choices.length;
  const matmul = matmulBound(graph, profile);
  // Per dimension: the splits reachable by products of axis sizes that divide it.
  const values: number[][] = [];
  for (let d = 0; d < D; d++) {
    const seen = new Set<number>([1]);
    let frontier = [1];
    for (let a = 0; a < A; a++) {
      const add: number[] = [];
      for (const v of frontier) {
        const w = v * space.sizes[a];
        if (space.dimSizes[d] % w === 0 && !seen.has(w)) { seen.add(w); add.push(w); }
      }
      frontier = [...frontier, ...add];
    }
    values.push([...seen].sort((x, y) => x - y));
  }
  const index = values.map((vs) => new Map(vs.map((v, i) => [v, i])));
  // A state is a mixed-radix number: axis j, then bflag, then each dimension's split index.
  const radix: number[] = [];
  let r = 1;
  for (let d = 0; d < D; d++) { radix.push(r); r *= values[d].length; }
  const bRadix = r;
  const jRadix = 2 * r;
  if (jRadix * (A + 1) > Number.MAX_SAFE_INTEGER) throw new Error('too many splits to number the states of the search');
  const choiceDims = space.choices.map((c) => DIM_NAMES.map((_, d) => d).filter((d) => c & (1 << d)));

  const decodeState = (s: number): { j: number; b: boolean; idx: number[] } => {
    const j = Math.floor(s / jRadix);
    let rest = s - j * jRadix;
    const b = rest >= bRadix;
    if (b) rest -= bRadix;
    const idx: number[] = [];
    for (let d = 0; d < D; d++) idx.push(Math.floor(rest / radix[d]) % values[d].length);
    return { j, b, idx };
  };
  const splitOf = (s: number) => decodeState(s).idx.map((i, d) => values[d][i]);

  const next = (s: number, j: number, c: number): number => {
    const dims = choiceDims[c];
    const size = space.sizes[j];
    let t = s + jRadix;
    let rest = s - Math.floor(s / jRadix) * jRadix;
    const b = rest >= bRadix;
    if (b) rest -= bRadix;
    for (const d of dims) {
      const i = Math.floor(rest / radix[d]) % values[d].length;
      const k = index[d].get(values[d][i] * size);
      if (k === undefined) return -1;
      t += (k - i) * radix[d];
    }
    if (!b && space.choices[c] & (1 << BATCH)) t += bRadix;
    return t;
  };

  // Model-state law per split: Σ weights' local elements × (param + grad + optimizer bytes) / batch split.
  const sb = stateBytes(graph.spec.dtype);
  const perParam = sb.param + sb.grad + sb.optimizer;
  const weights = graph.weights.map((id) => {
    const block = graph.blocks.find((bl) => bl.ops.some((o) => o.inputs.includes(id)))!;
    return { dims: graph.tensors.get(id)!.dims.map((d) => DIM_NAMES.indexOf(d)), layered: block.layered, repeat: block.repeat };
  });
  const memLaw = (split: readonly number[], b: boolean): number => {
    let n = 0;
    for (const w of weights) {
      let e = 1;
      for (const d of w.dims) e *= space.dimSizes[d] / split[d];
      n += e * (w.layered ? w.repeat / split[LAYERS] : 1);
    }
    return (n * perParam) / (b ? split[BATCH] : 1);
  };
  const flops = (split: readonly number[]): number => {
    const perReplica = space.dimSizes[BATCH] / split[BATCH];
    let mMax = 1;
    while (perReplica % (mMax * 2) === 0) mMax *= 2;
    return matmul(split) * (1 + (split[LAYERS] - 1) / mMax) * SLACK_ROUNDING;
  };
  const microbatches = (split: readonly number[]): number => {
    const perReplica = space.dimSizes[BATCH] / split[BATCH];
    let n = 1;
    for (let m = 2; perReplica % m === 0; m *= 2) n++;
    return n;
  };
  // Completions of an invalid prefix: every later choice, counted as the scan counts an invalid layout.
  let nb = 0;
  for (const c of space.choices) if (c & (1 << BATCH)) nb++;
  const invalidPlans = (left: number, b: boolean): number => {
    const all = S ** left;
    if (b) return 4 * RECOMPUTE.length * all;
    const none = (S - nb) ** left;
    return RECOMPUTE.length * none + 4 * RECOMPUTE.length * (all - none);
  };

  const slot = new Map<number, number>();
  const lbS: number[] = [], lbM: number[] = [], nPlans: number[] = [], nValid: number[] = [], used: number[] = [];
  const solve = (s: number): number => {
    const hit = slot.get(s);
    if (hit !== undefined) return hit;
    const { j, b, idx } = decodeState(s);
    let ls = Infinity, lm = Infinity, plans = 0, valid = 0, mu = -Infinity;
    if (j === A) {
      const split = idx.map((i, d) => values[d][i]);
      const n = (b ? 4 : 1) * RECOMPUTE.length * microbatches(split);
      ls = flops(split); lm = memLaw(split, b) * SLACK_ROUNDING; plans = n; valid = n; mu = 1;
    } else {
      for (let c = 0; c < S; c++) {
        const t = next(s, j, c);
        if (t < 0) {
          plans += invalidPlans(A - j - 1, b || (space.choices[c] & (1 << BATCH)) !== 0);
          continue;
        }
        const k = solve(t);
        ls = Math.min(ls, lbS[k]); lm = Math.min(lm, lbM[k]);
        plans += nPlans[k]; valid += nValid[k];
        mu = Math.max(mu, (c === 0 ? 1 : space.sizes[j]) * used[k]);
      }
    }
    const k = lbS.length;
    lbS.push(ls); lbM.push(lm); nPlans.push(plans); nValid.push(valid); used.push(mu);
    slot.set(s, k);
    return k;
  };
  const at = (s: number) => solve(s);
  return {
    root: 0,
    next,
    lbStep: (s) => lbS[at(s)],
    lbMemory: (s) => lbM[at(s)],
    plans: (s) => nPlans[at(s)],
    valid: (s) => nValid[at(s)],
    maxUsed: (s) => used[at(s)],
    splitOf,
    get size() { return lbS.length; },
  };
}
