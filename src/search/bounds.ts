import type { HardwareProfile } from '../cost/profile.js';
import { DIM_NAMES, type Graph } from '../model/graph.js';

/**
 * "A step can't take less than its FLOPs at peak": the matmul time of a layout, from its splits
 * alone, with no lowering. Each einsum runs once forward and once backward per input a gradient
 * flows to (the same FLOPs: src/lower/lower.ts backwardOp), and its local FLOPs are its global FLOPs over the
 * product of the splits of its dimensions; microbatches cancel (count × local batch), pipeline
 * stages divide the layer blocks. Elementwise ops, recompute and communication only add to it.
 * Cheap enough to sort every layout of a large mesh before pricing any.
 */
const GROUP = DIM_NAMES.indexOf('group');
const NO_GRAD_ROLES = new Set(['ids', 'mask', 'stat', 'routing']);
const BATCH = DIM_NAMES.indexOf('batch');

export function matmulBound(graph: Graph, profile: HardwareProfile): (split: readonly number[]) => number {
  const rate = profile.peakFlops[graph.spec.dtype] * profile.efficiency.matmul;
  const ops: { dims: number[]; flops: number; layered: boolean }[] = [];
  for (const b of graph.blocks) {
    for (const op of b.ops) {
      if (op.kind !== 'einsum') continue;
      const dims = new Set<number>();
      for (const id of [...op.inputs, op.output]) for (const d of graph.tensors.get(id)!.dims) dims.add(DIM_NAMES.indexOf(d));
      let flops = 2;
      for (const d of dims) flops *= graph.dimSizes[DIM_NAMES[d]];
      // The expert side's `group` is split over the batch axes experts leaves (lower.ts withGroup):
      // dividing by batch's whole split is never more than that, so the bound stays below.
      if (dims.delete(GROUP)) dims.add(BATCH);
      // Forward, and one backward einsum per input a gradient flows to (none to MoE's dispatch tensor).
      const passes = 1 + op.inputs.filter((id) => !NO_GRAD_ROLES.has(graph.tensors.get(id)!.role)).length;
      ops.push({ dims: [...dims], flops: passes * flops * b.repeat, layered: b.layered });
    }
  }
  const LAYERS = DIM_NAMES.indexOf('layers');
  return (split) => {
    let t = 0;
    for (const op of ops) {
      let f = op.flops;
      for (const d of op.dims) f /= split[d];
      if (op.layered) f /= split[LAYERS];
      t += f;
    }
    return t / rate;
  };
}
