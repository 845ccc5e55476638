import { pipelineFactor } from '../cost/price.js';
import { stateBytes } from '../lower/lower.js';
import { RECOMPUTE } from '../lower/plan.js';
import { DIM_NAMES, type Graph } from '../model/graph.js';
import type { HardwareProfile } from '../cost/profile.js';
import { matmulBound, stateFloor, type StateFloor } from './bounds.js';
import { homeSlot, localFloors, makeSharedFloors, sharedFloors, type FloorStore, type SharedFloors } from './floors.js';
import { microbatchCounts, type PlanSpace } from './space.js';

/**
 * What the remaining axes can add: for a partial layout (axes 0..j-1 chosen), figures over all
 * its completions, memoised on what they depend on: the axis j, each dimension's split so far and
 * whether `batch` has an axis (ZeRO stages). Two prefixes with equal splits share one entry, so
 * the table grows with the splits a mesh can make, not with (dims+1)^axes.
 *
 * - lbStep: the least FLOPs bound of any valid completion (flopsBound: matmul FLOPs at the
 *   profile's matmul rate, with the least pipeline bubble share); admissible for every plan below.
 * - lbMemory: the least model-state law of any valid completion: each weight's parameter,
 *   gradient and optimizer bytes, split by its dimensions' axes and at best by the batch and
 *   length axes (ZeRO 3); activations and temporaries only add.
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
  /**
   * A complete layout's state (every axis chosen): lbStep raised to the compute floor of its
   * splits (bounds.ts stateFloor, with the least bubble share). A lowering per state, so worked
   * out only for the states the search reaches, once per search (src/search/floors.ts).
   */
  floorStep(s: number): number;
  /** A complete layout's state: what every layout with its splits must spend (bounds.ts stateFloor), as floorStep keeps it. */
  floor(s: number): StateFloor;
  lbMemory(s: number): number;
  plans(s: number): number;
  valid(s: number): number;
  maxUsed(s: number): number;
  /** Each dimension's split in state s (a fresh array). */
  splitOf(s: number): number[];
  /** How many states were worked out (for the bench). */
  readonly size: number;
  /** Work out every state and hand the table over (workers read it instead of working it out again). */
  share(): SharedTable;
}

/** The table of a Remaining in shared memory: per slot, a state and its figures. */
export interface SharedTable {
  readonly data: SharedArrayBuffer;
  readonly count: number;
  /** The state floors, worked out by whichever thread reaches a state first (src/search/floors.ts). */
  readonly floors: SharedFloors;
}

const FIELDS = 5;
// A slot: the state, then its figures, side by side (a lookup's key and figures share a cache line
// or two, where separate arrays cost a miss each: the table of the seven-axis case is 48 MB).
const STRIDE = FIELDS + 1;
// A full table grows fourfold: a third of the rehashing of doubling (the seven-axis case's 308k
// states were rehashed 524k times, 37% of the solve, on the main thread before any share starts).
const GROWTH = 4;
// A fresh table's slots: 48 KiB, filled before anything is solved (transformer-5b on 16x32 has 362
// states; 4096 slots, 196 KiB, cost its fill ~0.1 ms of a 7 ms search). Larger tables grow fourfold.
const INITIAL_SLOTS = 1 << 10;

/**
 * Open addressing over states (non-negative integers below 2^53 - 1), each kept as state + 1 so
 * that a fresh buffer's zeros mark free slots (a fill of a shared buffer cost more than its allocation).
 */
class Table {
  data: Float64Array;
  count = 0;
  private slots: number;
  private mask: number;
  private shift: number;
  constructor(capacity = INITIAL_SLOTS, data?: Float64Array, count = 0) {
    this.data = data ?? new Float64Array(new SharedArrayBuffer(capacity * STRIDE * 8));
    this.slots = this.data.length / STRIDE;
    this.mask = this.slots - 1;
    this.shift = 32 - Math.log2(this.slots);
    this.count = count;
  }
  /** Another thread's table: read as it is; the first insert (never expected) copies it first. */
  private readOnly = false;
  static from(t: SharedTable): Table {
    const table = new Table(0, new Float64Array(t.data), t.count);
    table.readOnly = true;
    return table;
  }
  share(floors: SharedFloors): SharedTable {
    return { data: this.data.buffer as SharedArrayBuffer, count: this.count, floors };
  }
  private home(s: number): number {
    return homeSlot(s, this.shift);
  }
  /** Where a state's figures start in `data`, or -1. Stable until the table grows. */
  find(s: number): number {
    const key = s + 1;
    for (let i = this.home(s) & this.mask; ; i = (i + 1) & this.mask) {
      const k = this.data[i * STRIDE];
      if (k === key) return i * STRIDE + 1;
      if (k === 0) return -1;
    }
  }
  insert(s: number, figures: Float64Array): number {
    if (this.readOnly || 2 * (this.count + 1) > this.slots) this.grow();
    let i = this.home(s) & this.mask;
    while (this.data[i * STRIDE] !== 0) i = (i + 1) & this.mask;
    this.data[i * STRIDE] = s + 1;
    this.data.set(figures, i * STRIDE + 1);
    this.count++;
    return i * STRIDE + 1;
  }
  private grow(): void {
    const old = this.data, oldSlots = this.slots;
    this.readOnly = false;
    this.data = new Float64Array(new SharedArrayBuffer(oldSlots * GROWTH * STRIDE * 8));
    this.slots = this.data.length / STRIDE;
    this.mask = this.slots - 1;
    this.shift = 32 - Math.log2(this.slots);
    const nd = this.data, mask = this.mask;
    for (let i = 0; i < oldSlots; i++) {
      const key = old[i * STRIDE];
      if (key === 0) continue;
      let j = this.home(key - 1) & mask;
      while (nd[j * STRIDE] !== 0) j = (j + 1) & mask;
      for (let f = 0; f < STRIDE; f++) nd[j * STRIDE + f] = old[i * STRIDE + f];
    }
  }
}

const BATCH = DIM_NAMES.indexOf('batch');
const LAYERS = DIM_NAMES.indexOf('layers');
const LENGTH = DIM_NAMES.indexOf('length');
const D = DIM_NAMES.length;

// Bounds are scaled down by this much so that a float rounded the other way never prunes an equal plan.
export const SLACK_ROUNDING = 1 - 1e-9;

/** x mod n for integers 0 ≤ x < 2^53, n ≥ 1, without a float remainder (a call out of optimised code); exact: the floor of such a quotient is. */
function mod(x: number, n: number): number {
  return x - Math.floor(x / n) * n;
}

export function makeRemaining(space: PlanSpace, graph: Graph, profile: HardwareProfile, shared?: SharedTable, matmul = matmulBound(graph, profile)): Remaining {
  const A = space.sizes.length;
  const S = space.choices.length;
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
  const choiceDims = space.choices.map((c) => DIM_NAMES.map((_, d) => d).filter((d) => c & (1 << d)));
  // A state is a mixed-radix number: axis j, then bflag, then each dimension's split index.
  const radix: number[] = [];
  let r = 1;
  for (let d = 0; d < D; d++) { radix.push(r); r *= values[d].length; }
  const bRadix = r;
  const jRadix = 2 * r;
  if (jRadix * (A + 1) > Number.MAX_SAFE_INTEGER) throw new Error('too many splits to number the states of the search');

  const decodeState = (s: number): { j: number; b: boolean; idx: number[] } => {
    const j = Math.floor(s / jRadix);
    let rest = s - j * jRadix;
    const b = rest >= bRadix;
    if (b) rest -= bRadix;
    const idx: number[] = [];
    for (let d = 0; d < D; d++) idx.push(mod(Math.floor(rest / radix[d]), values[d].length));
    return { j, b, idx };
  };
  const splitOf = (s: number) => decodeState(s).idx.map((i, d) => values[d][i]);

  // Transitions without lookups: per axis and dimension, the split index after that axis (-1: indivisible).
  const step: Int32Array[][] = space.sizes.map((size) => values.map((vs, d) => Int32Array.from(vs, (v) => index[d].get(v * size) ?? -1)));
  const choiceBatch = space.choices.map((c) => (c & (1 << BATCH)) !== 0);
  const next = (s: number, j: number, c: number): number => {
    const dims = choiceDims[c];
    const tj = step[j];
    let t = s + jRadix;
    let rest = mod(s, jRadix);
    const b = rest >= bRadix;
    if (b) rest -= bRadix;
    for (let q = 0; q < dims.length; q++) {
      const d = dims[q];
      const i = mod(Math.floor(rest / radix[d]), values[d].length);
      const k = tj[d][i];
      if (k < 0) return -1;
      t += (k - i) * radix[d];
    }
    if (!b && choiceBatch[c]) t += bRadix;
    return t;
  };

  // Model-state law per split: Σ weights' local elements × (param + grad + optimizer bytes) / batch split.
  const sb = stateBytes(graph.spec.dtype);
  const perParam = sb.param + sb.grad + sb.optimizer;
  const weights = graph.weights.map((id) => {
    const block = graph.blocks.find((bl) => bl.ops.some((o) => o.inputs.includes(id)))!;
    return { dims: graph.tensors.get(id)!.dims.map((d) => DIM_NAMES.indexOf(d)), layered: block.layered, repeat: block.repeat };
  });
  const dimSizes = space.dimSizes;
  const memLaw = (split: readonly number[], b: boolean): number => {
    let n = 0;
    for (let wi = 0; wi < weights.length; wi++) {
      const w = weights[wi], ds = w.dims;
      let e = 1;
      for (let i = 0; i < ds.length; i++) e *= dimSizes[ds[i]] / split[ds[i]];
      n += e * (w.layered ? w.repeat / split[LAYERS] : 1);
    }
    // ZeRO (only where batch has an axis) shards over the batch and length axes at most (lower.ts zeroMask).
    return (n * perParam) / (b ? split[BATCH] * split[LENGTH] : 1);
  };
  // Compute C at one microbatch bounds a step with its bubble: M microbatch times each at least
  // C / M (src/search/task.ts stepBound), times the least pipeline factor of any layout of the
  // splits (price.ts pipelineFactor: with 1F1B on cores of their own, 1 + (p − 1)/M), least at the most microbatches.
  // Per batch split (by its place in values): the most microbatches (a power of two) and how many
  // counts there are (space.ts microbatchCounts: 1, 2, 4, ... dividing the replica's batch); per (layers split, batch split) the
  // least pipeline factor. Worked out once each here, not once per complete state (their loops of
  // float remainders were a third of the table's own time).
  const batchPlace = index[BATCH], layersPlace = index[LAYERS];
  const countsAt = values[BATCH].map((v) => microbatchCounts(space, DIM_NAMES.map((_, d) => (d === BATCH ? v : 1))));
  const mMaxOf = countsAt.map((ms) => ms[ms.length - 1]);
  const countsOf = countsAt.map((ms) => ms.length);
  const factors = new Float64Array(values[LAYERS].length * values[BATCH].length).fill(NaN);
  const withBubble = (split: readonly number[], compute: number): number => {
    const bi = batchPlace.get(split[BATCH])!, li = layersPlace.get(split[LAYERS])!;
    const at = li * values[BATCH].length + bi;
    let f = factors[at];
    if (Number.isNaN(f)) f = factors[at] = pipelineFactor(profile, space.mesh, split[LAYERS], mMaxOf[bi]);
    return compute * f * SLACK_ROUNDING;
  };
  const flops = (split: readonly number[]): number => withBubble(split, matmul(split));
  const floorOf = stateFloor(graph, space.mesh, profile);
  let store: FloorStore = shared ? sharedFloors(shared.floors) : localFloors();
  let sharedStore: SharedFloors | null = shared?.floors ?? null;
  const floors = new Map<number, { floor: StateFloor; step: number }>();
  const floorEntry = (s: number) => {
    let v = floors.get(s);
    if (v === undefined) {
      if (Math.floor(s / jRadix) !== A) throw new Error('the floor is of the state of a complete layout');
      const split = splitOf(s);
      const floor = store.get(s, () => floorOf(split));
      v = { floor, step: Math.max(field(s, 0), withBubble(split, floor.compute)) };
      floors.set(s, v);
    }
    return v;
  };
  const microbatches = (split: readonly number[]): number => countsOf[batchPlace.get(split[BATCH])!];
  // Completions of an invalid prefix: every later choice, counted as the scan counts an invalid layout.
  let nb = 0;
  for (const c of space.choices) if (c & (1 << BATCH)) nb++;
  const invalidPlans = (left: number, b: boolean): number => {
    const all = S ** left;
    if (b) return 4 * RECOMPUTE.length * all;
    const none = (S - nb) ** left;
    return RECOMPUTE.length * none + 4 * RECOMPUTE.length * (all - none);
  };

  const table = shared ? Table.from(shared) : new Table();
  // Complete layouts' states this thread worked out (j = A): how many floors a search can need.
  let complete = 0;
  const splitScratch = new Array<number>(D).fill(1);
  const out = new Float64Array(FIELDS);
  // Figures of a state, worked out from its children (depth first) once, then kept in the table.
  const solve = (s: number): number => {
    const hit = table.find(s);
    if (hit >= 0) return hit;
    const j = Math.floor(s / jRadix);
    const b = mod(s, jRadix) >= bRadix;
    let ls = Infinity, lm = Infinity, plans = 0, valid = 0, mu = -Infinity;
    if (j === A) {
      let rest = mod(s, jRadix);
      if (b) rest -= bRadix;
      for (let d = 0; d < D; d++) splitScratch[d] = values[d][mod(Math.floor(rest / radix[d]), values[d].length)];
      const n = (b ? 4 : 1) * RECOMPUTE.length * microbatches(splitScratch);
      ls = flops(splitScratch); lm = memLaw(splitScratch, b) * SLACK_ROUNDING; plans = n; valid = n; mu = 1;
      complete++;
    } else {
      for (let c = 0; c < S; c++) {
        const t = next(s, j, c);
        if (t < 0) {
          plans += invalidPlans(A - j - 1, b || choiceBatch[c]);
          continue;
        }
        const k = solve(t);
        const v = table.data;
        if (v[k] < ls) ls = v[k];
        if (v[k + 1] < lm) lm = v[k + 1];
        plans += v[k + 2]; valid += v[k + 3];
        const u = (c === 0 ? 1 : space.sizes[j]) * v[k + 4];
        if (u > mu) mu = u;
      }
    }
    out[0] = ls; out[1] = lm; out[2] = plans; out[3] = valid; out[4] = mu;
    lastState = -1; // an insert may grow the table and move every slot
    return table.insert(s, out);
  };
  // The last state looked up and where its figures are: the search asks a child's step bound, then its memory bound.
  let lastState = -1, lastSlot = -1;
  const field = (s: number, f: number) => {
    if (s !== lastState) {
      const i = solve(s);
      lastState = s;
      lastSlot = i;
    }
    return table.data[lastSlot + f];
  };
  return {
    root: 0,
    next,
    lbStep: (s) => field(s, 0),
    floorStep: (s) => floorEntry(s).step,
    floor: (s) => floorEntry(s).floor,
    lbMemory: (s) => field(s, 1),
    plans: (s) => field(s, 2),
    valid: (s) => field(s, 3),
    maxUsed: (s) => field(s, 4),
    splitOf,
    share: () => {
      solve(0);
      if (!sharedStore) {
        // From now on this thread's floors go to the store the workers read too.
        sharedStore = makeSharedFloors(complete);
        store = sharedFloors(sharedStore);
      }
      return table.share(sharedStore);
    },
    get size() { return table.count; },
  };
}
