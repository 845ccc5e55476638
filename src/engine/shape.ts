import { axesOf, type Layout } from '../layout/layout.js';
import type { Mesh } from '../mesh/mesh.js';
import { DIM_NAMES, type DimName } from '../model/graph.js';
import type { Plan } from '../lower/plan.js';
import type { ModelSpec } from '../model/spec.js';

/**
 * What a mesh axis does under the plan, in the words engines use:
 * data (splits only batch), tensor (only heads/d_ff/vocab), pipeline (only layers),
 * context (only length), unused (nothing: its devices repeat the work), other.
 */
export type AxisRole = 'data' | 'tensor' | 'pipeline' | 'context' | 'unused' | 'other';

export interface AxisUse {
  readonly name: string;
  readonly size: number;
  readonly index: number;
  /** The dimensions this axis splits, in DIM_NAMES order. */
  readonly dims: readonly DimName[];
  readonly role: AxisRole;
}

/** A plan seen the way a training engine sees it (no validity check: the layout's own). */
export interface PlanShape {
  readonly plan: Plan;
  readonly mesh: Mesh;
  readonly spec: ModelSpec;
  readonly axes: readonly AxisUse[];
  /** Degrees: the product of the sizes of the axes with that role (1 when none). */
  readonly dp: number;
  readonly tp: number;
  readonly pp: number;
  readonly cp: number;
  /** Product of the sizes of the axes that split batch. */
  readonly batchSplit: number;
  /** Sequences per data-parallel replica per step, and per microbatch (may be fractional on a bad plan). */
  readonly perReplica: number;
  readonly microBatch: number;
  readonly layers: number;
  readonly kvHeads: number;
  readonly sequenceParallel: boolean;
  readonly virtualStages: number;
  /** Product of the sizes of the axes that split experts (1 for a dense model). */
  readonly ep: number;
}

/** What tensor parallelism splits: heads, the FFN's hidden dimension and the experts' (MoE), vocab. */
export const TENSOR_DIMS: readonly DimName[] = ['heads', 'd_ff', 'expert_hidden', 'vocab'];

/** The tensor-parallel dimensions this model has: d_ff where some layer is dense, expert_hidden where it has experts. */
export function modelTensorDims(spec: ModelSpec): DimName[] {
  const dense = !spec.experts || (spec.moeEvery ?? 1) > 1;
  return TENSOR_DIMS.filter((d) => (d === 'd_ff' ? dense : d === 'expert_hidden' ? !!spec.experts : true));
}

function roleOf(dims: readonly DimName[]): AxisRole {
  if (dims.length === 0) return 'unused';
  const only = (d: DimName) => dims.length === 1 && dims[0] === d;
  // Expert parallelism runs over data-parallel ranks (Megatron-LM's expert_model_parallel_size).
  if (only('batch') || (dims.length === 2 && dims[0] === 'batch' && dims[1] === 'experts')) return 'data';
  if (only('layers')) return 'pipeline';
  if (only('length')) return 'context';
  if (dims.every((d) => TENSOR_DIMS.includes(d))) return 'tensor';
  return 'other';
}

export function shapeOf(plan: Plan, mesh: Mesh, spec: ModelSpec): PlanShape {
  const layout: Layout = plan.layout;
  const axes: AxisUse[] = mesh.axes.map((a, index) => {
    const dims = DIM_NAMES.filter((d) => axesOf(layout, d).includes(a.name));
    return { name: a.name, size: a.size, index, dims, role: roleOf(dims) };
  });
  const degree = (role: AxisRole) => axes.filter((a) => a.role === role).reduce((p, a) => p * a.size, 1);
  const sizeOf = (name: string) => mesh.axes.find((x) => x.name === name)?.size ?? 1;
  const batchSplit = axesOf(layout, 'batch').reduce((p, a) => p * sizeOf(a), 1);
  const perReplica = spec.batch / batchSplit;
  return {
    plan, mesh, spec, axes, dp: degree('data'), tp: degree('tensor'), pp: degree('pipeline'), cp: degree('context'),
    batchSplit, perReplica, microBatch: perReplica / plan.microbatches, layers: spec.encoderLayers + spec.decoderLayers,
    kvHeads: spec.kvHeads, sequenceParallel: plan.sequenceParallel, virtualStages: plan.virtualStages,
    ep: axesOf(layout, 'experts').reduce((p, a) => p * sizeOf(a), 1),
  };
}

export function axesWith(shape: PlanShape, role: AxisRole): AxisUse[] {
  return shape.axes.filter((a) => a.role === role);
}
