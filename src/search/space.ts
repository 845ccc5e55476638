import { InputError } from '../errors.js';
import { popcount, splittableDims, tensorDimSets, type Layout } from '../layout/layout.js';
import type { Mesh } from '../mesh/mesh.js';
import { DIM_NAMES, type DimName, type Graph } from '../model/graph.js';
import { axisLevel, axisLink, sameThreadBlocks, torusOf } from '../cost/price.js';
import type { HardwareProfile } from '../cost/profile.js';
import { RECOMPUTE, type Plan, type Recompute, type ZeroStage } from '../lower/plan.js';

/**
 * The plan space as data. A layout is written per mesh axis: each axis takes an *axis choice*,
 * a set of dimensions no tensor holds two of (an independent set of the conflict graph), so every
 * layout enumerated has no axis conflict by construction; only divisibility is left to check.
 * A dimension on several axes takes them in mesh order: the cost depends only on which axes a
 * dimension uses (a bitmask), so `rows+cols` and `cols+rows` are one plan and we enumerate one.
 * Layouts are numbered by a mixed-radix rank (axis 0 most significant), so a range of ranks is a
 * share of work that fits in a message.
 */
export interface PlanSpace {
  readonly graph: Graph;
  readonly mesh: Mesh;
  readonly dims: readonly DimName[];
  /** Axis choices as dimension bitmasks (bit k = DIM_NAMES[k]); choice 0 is the empty set. */
  readonly choices: readonly number[];
  /** Number of layout ranks: choices.length ** axes. */
  readonly ranks: number;
  /** Per axis: the previous axis it is interchangeable with (equal size and link), or -1. */
  readonly twin: readonly number[];
  readonly sizes: readonly number[];
  readonly dimSizes: readonly number[];
  /** Per axis, the network level its collectives run on (cost/price.ts axisLevel). */
  readonly levels: readonly number[];
}

/** Strategies of one layout, in tie-break order: zero, ZeRO over every batch axis before the hybrid, then recompute, then microbatches ascending. */
export interface Strategy {
  readonly zero: ZeroStage;
  /** Hybrid sharding (hybridZeroAxes): ZeRO over these batch axes only. */
  readonly zeroAxes?: readonly string[];
  readonly recompute: Recompute;
  readonly microbatches: number;
}

/** The most mesh axes searched; layout ranks must stay exact integers (20 choices: 20^12 < 2^53; 24 with q_group: 11 axes). */
export const MAX_AXES = 12;

/** Dimension pairs that share a tensor (with `layers` in every tensor): bit masks per dimension. */
export function conflicts(graph: Graph): number[] {
  const idx = new Map(DIM_NAMES.map((d, i) => [d, i]));
  const out = DIM_NAMES.map(() => 0);
  for (const { dims } of tensorDimSets(graph)) {
    let m = 0;
    for (const d of dims) m |= 1 << idx.get(d)!;
    for (const d of dims) out[idx.get(d)!] |= m & ~(1 << idx.get(d)!);
  }
  return out;
}

/**
 * Axes i and j are interchangeable when swapping them leaves every cost equal: same size, same
 * link, same level, and no axis of another level between them (a collective over several levels
 * runs level by level in mesh order, so a swap across another level's axis would reorder it),
 * and, where devices share cores, the same side of the threads' blocks (a pipeline's stages on a
 * thread depend on where its axes lie: price.ts threadStages).
 */
export function interchangeable(mesh: Mesh, profile: HardwareProfile, i: number, j: number): boolean {
  if (mesh.axes[i].size !== mesh.axes[j].size) return false;
  if (!sameThreadBlocks(profile, mesh, i, j)) return false;
  const a = axisLink(profile, mesh, i);
  const b = axisLink(profile, mesh, j);
  if (a.bandwidth !== b.bandwidth || a.latency !== b.latency) return false;
  const level = axisLevel(profile, mesh, i);
  for (let k = Math.min(i, j); k <= Math.max(i, j); k++) if (axisLevel(profile, mesh, k) !== level) return false;
  if (JSON.stringify(a) !== JSON.stringify(b)) return false;
  // On a torus, a collective's bandwidth is that of the dimensions its axes span together: equal
  // alone is not enough unless no other axis shares a dimension with either (torus.ts).
  const t = torusOf(profile, mesh);
  if (!t || !t.on[i] || t.spans[i] === t.spans[j]) return true;
  const both = t.spans[i] | t.spans[j];
  return t.spans.every((s, k) => k === i || k === j || (s & both) === 0);
}

/**
 * `symmetric: false` treats no axes as interchangeable: a plan filter may tell mirror images
 * apart (an engine's device order), so each must be searched.
 */
export function makeSpace(graph: Graph, mesh: Mesh, profile: HardwareProfile, opts: { symmetric?: boolean } = {}): PlanSpace {
  const conf = conflicts(graph);
  // A dimension the model lacks (q_group without grouped-query attention) is never offered.
  const present = splittableDims(graph);
  let absent = 0;
  DIM_NAMES.forEach((d, k) => { if (!present.has(d)) absent |= 1 << k; });
  // Every set of present dimensions no two of which conflict (conflicts are symmetric): grown a
  // dimension at a time, so only such sets are visited (not all 2^dims).
  const choices: number[] = [];
  const offered = DIM_NAMES.map((_, k) => k).filter((k) => !(absent & (1 << k)));
  const grow = (i: number, s: number): void => {
    if (i === offered.length) { choices.push(s); return; }
    grow(i + 1, s);
    const k = offered[i];
    if ((s & conf[k]) === 0) grow(i + 1, s | (1 << k));
  };
  grow(0, 0);
  choices.sort((a, b) => popcount(a) - popcount(b) || a - b);
  const A = mesh.axes.length;
  const ranks = choices.length ** A;
  if (A > MAX_AXES) throw new InputError(`a mesh of ${A} axes is more than mesh-search searches (at most ${MAX_AXES}); merge axes that share a network level`);
  if (ranks > Number.MAX_SAFE_INTEGER) {
    throw new InputError(`a mesh of ${A} axes gives ${graph.spec.name} ${choices.length}^${A} layouts, more than mesh-search numbers exactly (2^53); merge axes that share a network level`);
  }
  // Interchangeable axes form classes; within a class, choices must not decrease (one of each orbit).
  const twin = mesh.axes.map(() => -1);
  for (let j = 0; j < A && opts.symmetric !== false; j++) {
    for (let i = j - 1; i >= 0; i--) {
      if (interchangeable(mesh, profile, i, j)) { twin[j] = i; break; }
    }
  }
  return {
    graph, mesh, dims: DIM_NAMES, choices, ranks, twin,
    sizes: mesh.axes.map((a) => a.size), dimSizes: DIM_NAMES.map((d) => graph.dimSizes[d]),
    levels: mesh.axes.map((_, i) => axisLevel(profile, mesh, i)),
  };
}

/** Decode a rank into one choice index per axis (axis 0 most significant). */
export function decode(space: PlanSpace, rank: number, out: number[]): number[] {
  const S = space.choices.length;
  let r = rank;
  for (let a = space.sizes.length - 1; a >= 0; a--) {
    out[a] = r % S;
    r = Math.floor(r / S);
  }
  return out;
}

/** Whether these choices are the representative of their orbit under interchangeable axes. */
export function isCanonical(space: PlanSpace, choice: readonly number[]): boolean {
  for (let a = 0; a < choice.length; a++) if (space.twin[a] >= 0 && choice[space.twin[a]] > choice[a]) return false;
  return true;
}

/** Per dimension: the mesh axes bitmask. */
export function dimMasks(space: PlanSpace, choice: readonly number[], out: number[]): number[] {
  out.fill(0);
  for (let a = 0; a < choice.length; a++) {
    const s = space.choices[choice[a]];
    for (let k = 0; k < out.length; k++) if (s & (1 << k)) out[k] |= 1 << a;
  }
  return out;
}

/** Product of the axes of each dimension; null when one does not divide its dimension. */
export function splits(space: PlanSpace, masks: readonly number[]): number[] | null {
  const out: number[] = [];
  for (let k = 0; k < masks.length; k++) {
    let f = 1;
    for (let a = 0; a < space.sizes.length; a++) if (masks[k] & (1 << a)) f *= space.sizes[a];
    if (space.dimSizes[k] % f !== 0) return null;
    out.push(f);
  }
  return out;
}

export function layoutOf(space: PlanSpace, masks: readonly number[]): Layout {
  const layout = new Map<DimName, string[]>();
  for (let k = 0; k < masks.length; k++) {
    if (!masks[k]) continue;
    const axes: string[] = [];
    for (let a = 0; a < space.sizes.length; a++) if (masks[k] & (1 << a)) axes.push(space.mesh.axes[a].name);
    layout.set(space.dims[k], axes);
  }
  return layout;
}

const BATCH = DIM_NAMES.indexOf('batch');

/** Microbatch counts: the powers of two that divide the per-replica batch. */
export function microbatchCounts(space: PlanSpace, split: readonly number[]): number[] {
  const perReplica = space.dimSizes[BATCH] / split[BATCH];
  const out: number[] = [];
  for (let m = 1; perReplica % m === 0; m *= 2) out.push(m);
  return out;
}

/**
 * The strategies of a layout. ZeRO shards over the axes that split `batch`: with none, stages 1-3
 * name no change of the plan (stage 1 and 2 price exactly as 0), so only stage 0 is in the space.
 */
export function strategies(space: PlanSpace, split: readonly number[], masks: readonly number[]): readonly Strategy[] {
  // They depend only on batch's axes (its split, so the microbatch counts, and the hybrid axes):
  // worked out once per mask, not at every leaf of the search.
  let byMask = strategyCache.get(space);
  if (!byMask) strategyCache.set(space, (byMask = new Map()));
  let out = byMask.get(masks[BATCH]);
  if (!out) byMask.set(masks[BATCH], (out = strategiesOf(space, split, masks)));
  return out;
}

const strategyCache = new WeakMap<PlanSpace, Map<number, readonly Strategy[]>>();

function strategiesOf(space: PlanSpace, split: readonly number[], masks: readonly number[]): readonly Strategy[] {
  const ms = microbatchCounts(space, split);
  const zeros: ZeroStage[] = masks[BATCH] ? [0, 1, 2, 3] : [0];
  const hybrid = hybridZeroAxes(space, masks);
  const out: Strategy[] = [];
  for (const zero of zeros) {
    for (const zeroAxes of zero > 0 && hybrid ? [undefined, hybrid] : [undefined]) {
      for (const recompute of RECOMPUTE) for (const microbatches of ms) out.push(zeroAxes ? { zero, zeroAxes, recompute, microbatches } : { zero, recompute, microbatches });
    }
  }
  return out;
}

/**
 * The hybrid sharding the space offers a layout (HSDP, MaxText's ici_fsdp x dcn_data): when its
 * batch axes run on more than one network level, ZeRO over those below the outermost of them, the
 * ones on it replicated. Null when all of its batch axes share a level (ZeRO over all is the choice).
 */
export function hybridZeroAxes(space: PlanSpace, masks: readonly number[]): readonly string[] | null {
  const b = masks[BATCH];
  if (!b) return null;
  let outer = -1, inner = Infinity;
  for (let a = 0; a < space.sizes.length; a++) {
    if (!(b & (1 << a))) continue;
    outer = Math.max(outer, space.levels[a]);
    inner = Math.min(inner, space.levels[a]);
  }
  if (outer === inner) return null;
  const axes: string[] = [];
  for (let a = 0; a < space.sizes.length; a++) if (b & (1 << a) && space.levels[a] < outer) axes.push(space.mesh.axes[a].name);
  return axes;
}

export function planOf(layout: Layout, s: Strategy, sequenceParallel = false): Plan {
  // Two literals, not a spread: one per priced plan, in the search's inner loop.
  return s.zeroAxes
    ? { layout, zero: s.zero, zeroAxes: s.zeroAxes, recompute: s.recompute, microbatches: s.microbatches, sequenceParallel, virtualStages: 1 }
    : { layout, zero: s.zero, recompute: s.recompute, microbatches: s.microbatches, sequenceParallel, virtualStages: 1 };
}

/**
 * A candidate's strategy index: i < n is strategy i without sequence parallelism, n + i the same
 * strategy with it (n strategies in the layout), so ranking stays total and plans rebuild exactly.
 */
export function strategyIndex(i: number, n: number, sequenceParallel: boolean): number {
  return sequenceParallel ? n + i : i;
}

/** The layout of a rank, or null when invalid (indivisible). */
export function layoutAt(space: PlanSpace, rank: number): { layout: Layout; masks: number[]; split: number[] } | null {
  const choice = decode(space, rank, new Array(space.sizes.length));
  const masks = dimMasks(space, choice, new Array(space.dims.length));
  const split = splits(space, masks);
  return split ? { layout: layoutOf(space, masks), masks, split } : null;
}

/** The rank of per-axis choices (axis 0 most significant). */
export function encode(space: PlanSpace, choice: readonly number[]): number {
  let r = 0;
  for (const c of choice) r = r * space.choices.length + c;
  return r;
}

/**
 * Move `choice` to the first canonical choices at or after it, in rank order: where an axis takes
 * less than its interchangeable predecessor, raise it to that, and set every later axis as low as
 * the order allows.
 */
export function toCanonical(space: PlanSpace, choice: number[]): void {
  for (let j = 0; j < choice.length; j++) {
    const t = space.twin[j];
    if (t >= 0 && choice[j] < choice[t]) {
      choice[j] = choice[t];
      for (let k = j + 1; k < choice.length; k++) choice[k] = space.twin[k] >= 0 ? choice[space.twin[k]] : 0;
      return;
    }
  }
}

/** The next canonical choices after `choice` (rank order); false past the last. */
export function nextCanonical(space: PlanSpace, choice: number[]): boolean {
  const S = space.choices.length;
  let i = choice.length - 1;
  choice[i]++;
  while (choice[i] === S) {
    choice[i] = 0;
    if (--i < 0) return false;
    choice[i]++;
  }
  toCanonical(space, choice);
  return true;
}

/** How many layouts a canonical one stands for: its distinct images under swaps of interchangeable axes. */
export function orbitSize(space: PlanSpace, choice: readonly number[]): number {
  let size = 1;
  const seen = new Set<number>();
  for (let j = choice.length - 1; j >= 0; j--) {
    if (seen.has(j)) continue;
    // A class: j and its chain of interchangeable predecessors.
    const counts = new Map<number, number>();
    let k = 0;
    for (let a = j; a >= 0; a = space.twin[a]) {
      seen.add(a);
      counts.set(choice[a], (counts.get(choice[a]) ?? 0) + 1);
      k++;
    }
    let perms = factorial(k);
    for (const c of counts.values()) perms /= factorial(c);
    size *= perms;
  }
  return size;
}

function factorial(n: number): number {
  let f = 1;
  for (let i = 2; i <= n; i++) f *= i;
  return f;
}
