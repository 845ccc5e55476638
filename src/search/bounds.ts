import { collectiveCalls, coreShare, shapeFactor, walkCompute, type StageSums } from '../cost/price.js';
import type { HardwareProfile } from '../cost/profile.js';
import { type CompiledLayout, type Layout } from '../layout/layout.js';
import { COLLECTIVE_KINDS, sentBytes, type CollectiveKind } from '../lower/collectives.js';
import { einsumPasses, lowerOffResidual, lowerRecords, sequenceParallelAxes, type EinsumPass, type GemmPart, type LayoutRecords } from '../lower/lower.js';
import { linAt, type OpRecord } from '../lower/records.js';
import { makeMesh, type Mesh, type MeshAxis } from '../mesh/mesh.js';
import { DIM_INDEX, DIM_NAMES, type DimName, type Graph } from '../model/graph.js';

const BATCH = DIM_NAMES.indexOf('batch');
const LAYERS = DIM_NAMES.indexOf('layers');
const STAGES: readonly (keyof StageSums)[] = ['all', 'first', 'last'];

/**
 * "A step can't take less than its matmuls at their best rate": the matmul time of a layout, from
 * its splits alone, with no lowering. Each einsum pass the lowering emits (src/lower/lower.ts
 * einsumPasses: the forward and one backward per input a gradient flows to) runs its local FLOPs
 * at peak × the profile's matmul efficiency × the GEMM shape factor of its local GEMM, taken at
 * one microbatch (every sequence of the replica at once: the largest GEMM, so the fastest per
 * FLOP, and splitting a dimension never makes a pass slower: x / (x / (x + h)) = x + h grows with x).
 * Microbatches only shrink the GEMMs, pipeline stages divide the layer blocks; elementwise ops,
 * recompute and communication only add. Cheap enough to bound every state of the search.
 *
 * MoE's expert side: its `group` is the batch axes `experts` leaves (lower.ts withGroup), at least
 * one sequence per device; taking the fewest (`group` split as much as `batch`) stays below.
 */
export function matmulBound(graph: Graph, profile: HardwareProfile): (split: readonly number[]) => number {
  const rate = profile.peakFlops[graph.spec.dtype] * profile.efficiency.matmul;
  const h = profile.gemmHalfSize ?? 0;
  const sizes = DIM_NAMES.map((d) => graph.dimSizes[d]);
  const GROUP = DIM_INDEX.group;
  // Each pass's dimensions by GEMM part (price.ts gemmFactor at one microbatch: the batch part is free).
  const partDims = (p: EinsumPass, part: GemmPart) => Int32Array.from(p.parts.filter(([, q]) => q === part).map(([d]) => DIM_INDEX[d]));
  const all = einsumPasses(graph).map((p) => ({
    dims: Int32Array.from(p.dims.map((d) => DIM_INDEX[d])),
    m: partDims(p, 'm'), n: partDims(p, 'n'), k: partDims(p, 'k'),
    repeat: p.block.repeat,
    share: p.share,
    layered: p.block.layered,
  }));
  // Passes alike in every figure (a layer's Q, K and V projections) are worked out once per call
  // and added in their places, as are the dimension lists they multiply: the same products in the
  // same order, so the same sum (transformer-5b: 27 passes, 21 distinct, 15 distinct lists).
  const lists: Int32Array[] = [];
  const listIndex = new Map<string, number>();
  const listOf = (ds: Int32Array) => {
    const key = ds.join(',');
    let i = listIndex.get(key);
    if (i === undefined) { listIndex.set(key, (i = lists.length)); lists.push(ds); }
    return i;
  };
  const passes: { dims: number; m: number; n: number; k: number; repeat: number; share: number; layered: boolean }[] = [];
  const passIndex = new Map<string, number>();
  const order = Int32Array.from(all, (p) => {
    const q = { dims: listOf(p.dims), m: listOf(p.m), n: listOf(p.n), k: listOf(p.k), repeat: p.repeat, share: p.share, layered: p.layered };
    const key = `${q.dims}|${q.m}|${q.n}|${q.k}|${q.repeat}|${q.share}|${q.layered}`;
    let i = passIndex.get(key);
    if (i === undefined) { passIndex.set(key, (i = passes.length)); passes.push(q); }
    return i;
  });
  const local = new Float64Array(DIM_NAMES.length);
  const products = new Float64Array(lists.length);
  const values = new Float64Array(passes.length);
  return (split) => {
    for (let d = 0; d < local.length; d++) local[d] = sizes[d] / split[d];
    // Whole replica batch at one microbatch; the expert side's group at its fewest sequences.
    local[GROUP] = local[BATCH];
    for (let i = 0; i < lists.length; i++) {
      const ds = lists[i];
      let x = 1;
      for (let j = 0; j < ds.length; j++) x *= local[ds[j]];
      products[i] = x;
    }
    for (let i = 0; i < passes.length; i++) {
      const p = passes[i];
      let f = 2 * p.repeat * p.share * products[p.dims];
      if (p.layered) f /= split[LAYERS];
      if (h > 0) f /= shapeFactor(h, products[p.m], products[p.n], products[p.k]);
      values[i] = f;
    }
    let t = 0;
    for (let i = 0; i < order.length; i++) t += values[order[i]];
    return t / rate;
  };
}

/**
 * A layout's least compute at one microbatch, without its lowering, where it has no pipeline: the
 * matmul bound of its splits (matmulBound) plus the compute of its ops off the residual stream
 * (lower.ts lowerOffResidual: their own forward and backward records, walked at one microbatch of
 * the whole replica batch), the same with sequence parallelism or without. Those records and the
 * einsums' are apart, and every other record (and recompute) only adds: no plan of the layout
 * computes less (src/search/task.ts stepBound: more microbatches only add too).
 */
export function offResidualBound(graph: Graph, mesh: Mesh, profile: HardwareProfile, layout: CompiledLayout, matmul: number): number {
  const l = lowerOffResidual(graph, mesh, layout);
  const w = walkCompute({ graph, mesh }, [l.forward, l.backward], 1, graph.spec.batch / layout.split.batch, profile);
  return matmul + w.fwd.all + w.fwd.first + w.fwd.last + w.bwd.all + w.bwd.first + w.bwd.last;
}

/** What any layout with given splits must spend in one variant (with or without sequence parallelism). */
export interface VariantFloor {
  /** Compute of one step at one microbatch, no recompute, per stage part (price.ts walk's sums, forward and backward). */
  readonly compute: StageSums;
  /**
   * The records' collectives (all blocking, as walk prices them), merged by kind, dimensions, stage
   * part and whether they are the backward's (which tensorParallelOverlap hides): bytes sent per
   * step at one microbatch and calls.
   */
  readonly collectives: readonly { kind: CollectiveKind; dims: readonly number[]; stage: keyof StageSums; backward: boolean; sent: number; calls: number }[];
}

export interface StateFloor {
  /** Without sequence parallelism, and with it (null where no layout with these splits takes it; both null: no bound). */
  readonly variants: readonly [VariantFloor | null, VariantFloor | null];
  /** The least compute of the slower pipeline stage over both variants (0: no bound). */
  readonly compute: number;
}

/**
 * The least work of one step of any layout with these splits, from the lowering itself: the
 * records of a stand-in layout that gives every split dimension a mesh axis of its own (under
 * sequence parallelism heads and d_ff share one, as the real layouts that take it must), walked
 * at one microbatch of the whole replica batch and no recompute (the least compute: more
 * microbatches shrink the GEMMs and launch more kernels, src/search/task.ts stepBound).
 *
 * What a record computes depends only on the local sizes, that is on the splits; its collectives
 * depend on the splits (bytes, group sizes) and on which mesh axes the dimensions have, which
 * layoutFloor fills in. Two exceptions depend on which dimensions share axes and are left out
 * (they only add): renames and gradient sums (free or not, by the axes), and MoE's regroups
 * (their all-to-all is over the axes experts and batch share). In an MoE model the expert side's
 * `group` takes batch's stand-in axis, the most it can have (its share least), and the
 * collectives are left out. The stand-in mesh may have more devices than the real one (dimensions
 * that share an axis get one each): only the concurrency share reads its size, and that is the real mesh's.
 */
export function stateFloor(graph: Graph, mesh: Mesh, profile: HardwareProfile): (split: readonly number[]) => StateFloor {
  const share = coreShare(profile, mesh);
  const alone: HardwareProfile = { ...profile, concurrentDevices: undefined };
  const moe = [...graph.tensors.values()].some((t) => t.dims.includes('group'));
  const HEADS = DIM_INDEX.heads, D_FF = DIM_INDEX.d_ff;
  // lowerRecords makes no gradient sums; renames and regroups are left out here.
  const keep = (r: OpRecord) => r.kind !== 'rename' && r.kind !== 'regroup';

  const variant = (split: readonly number[], sequenceParallel: boolean): VariantFloor | null => {
    const axes: MeshAxis[] = [];
    const layout = new Map<DimName, string[]>();
    // What compileLayout makes of the layout on the stand-in mesh, written as the axes are made.
    const cSplit = {} as Record<DimName, number>, cMask = {} as Record<DimName, number>;
    DIM_NAMES.forEach((d, i) => {
      cSplit[d] = 1;
      cMask[d] = 0;
      if (split[i] <= 1) return;
      // Under sequence parallelism heads and d_ff share their axis where their splits agree (else the rule below refuses it).
      if (sequenceParallel && i === D_FF && split[HEADS] === split[D_FF]) { layout.set(d, layout.get('heads')!); cSplit[d] = cSplit.heads; cMask[d] = cMask.heads; return; }
      cSplit[d] = split[i];
      cMask[d] = 1 << axes.length;
      axes.push({ name: `s${i}`, size: split[i] });
      layout.set(d, [`s${i}`]);
    });
    if (axes.length === 0) axes.push({ name: 'one', size: 1 });
    let stand: Mesh, l: LayoutRecords;
    try {
      // Dimensions that share an axis get one each here: a stand-in past the mesh size limit has no floor.
      stand = makeMesh(axes);
      // Compiled (compileLayout's form, above), not validated: the splits divide their dimensions (the state is valid) and no
      // two dimensions of a tensor share a stand-in axis (heads and d_ff never meet in one).
      const c: CompiledLayout = { layout: layout as Layout, split: cSplit, mask: cMask };
      // The lowering's own rule, asked before lowering (the lowering would throw): no floor where no layout takes it.
      if (sequenceParallel && 'problem' in sequenceParallelAxes(graph, c)) return null;
      l = lowerRecords(graph, stand, c, { sequenceParallel });
    } catch {
      return null;
    }
    const perReplica = graph.spec.batch / split[BATCH];
    const forward = l.forward.filter(keep), backward = l.backward.filter(keep);
    // lowerRecords keeps only the recompute every mode runs (a fused attention kernel's): what 'none' runs.
    const w = walkCompute(l, [forward, backward, l.recompute], 1, perReplica, alone);
    const compute = { all: (w.fwd.all + w.bwd.all) * share, first: (w.fwd.first + w.bwd.first) * share, last: (w.fwd.last + w.bwd.last) * share };
    // Merged by (dimensions, kind, stage part, backward or not), keyed as one number: the dimensions' bits, then the kind, the part and the phase.
    const merged = new Map<number, { kind: CollectiveKind; dims: number[]; stage: keyof StageSums; backward: boolean; sent: number; calls: number }>();
    if (!moe) {
      const axisDim = stand.axes.map((a) => (a.name === 'one' ? -1 : Number(a.name.slice(1))));
      for (const records of [forward, l.recompute, backward]) {
        for (let ri = 0; ri < records.length; ri++) {
          const r = records[ri];
          for (let ci = 0; ci < r.collectives.length; ci++) {
            const c = r.collectives[ci];
            let bits = 0;
            for (let a = 0; a < axisDim.length; a++) if (c.mask & (1 << a) && axisDim[a] >= 0) bits |= 1 << axisDim[a];
            const backward = r.phase === 'backward';
            const key = ((bits * COLLECTIVE_KINDS.length + COLLECTIVE_KINDS.indexOf(c.kind)) * 3 + STAGES.indexOf(r.stage)) * 2 + (backward ? 1 : 0);
            let e = merged.get(key);
            if (!e) {
              const dims: number[] = [];
              for (let d = 0; d < DIM_NAMES.length; d++) if (bits & (1 << d)) dims.push(d);
              merged.set(key, (e = { kind: c.kind, dims, stage: r.stage, backward, sent: 0, calls: 0 }));
            }
            e.sent += sentBytes(c.kind, linAt(c.bytes, perReplica), c.groupSize) * r.perStage;
            e.calls += r.perStage;
          }
        }
      }
    }
    return { compute, collectives: [...merged.values()] };
  };

  return (split) => {
    const variants = [variant(split, false), variant(split, true)] as const;
    const p = split[LAYERS];
    let compute = Infinity;
    for (const v of variants) if (v) compute = Math.min(compute, slowerStage(v.compute.all, v.compute.first, v.compute.last, p));
    return { variants, compute: variants[0] ? compute : 0 };
  };
}

/** The slower of the first and last stage, as stepParts composes them: with one stage, both parts run on it. */
function slowerStage(all: number, first: number, last: number, p: number): number {
  return Math.max(all + first + (p === 1 ? last : 0), all + last + (p === 1 ? first : 0));
}

/**
 * The least compute plus blocking communication of the slower stage of any plan of one layout at
 * one microbatch: the state's floor with each collective priced on the mesh axes the layout gives
 * its dimensions (collectiveTime, as walk prices it; a collective's dimensions never share an
 * axis: they meet in one tensor). Calls per microbatch only multiply with more microbatches.
 */
export function layoutFloor(profile: HardwareProfile, mesh: Mesh, f: VariantFloor, p: number, masks: readonly number[]): number {
  const bwdExposed = 1 - (profile.tensorParallelOverlap ?? 0);
  // The blocking sums by stage part in scalars (an object's keyed sums boxed each one; ~120k calls in the seven-axis case).
  let all = 0, first = 0, last = 0;
  const cs = f.collectives;
  for (let i = 0; i < cs.length; i++) {
    const c = cs[i];
    let mask = 0;
    for (let k = 0; k < c.dims.length; k++) mask |= masks[c.dims[k]];
    const t = collectiveCalls(profile, mesh, c.kind, mask, c.sent, c.calls) * (c.backward ? bwdExposed : 1);
    if (c.stage === 'all') all += t;
    else if (c.stage === 'first') first += t;
    else last += t;
  }
  return slowerStage(all + f.compute.all, first + f.compute.first, last + f.compute.last, p);
}
