import { check } from '../errors.js';
import { axesOf, formatLayout, validateLayout } from '../layout/layout.js';
import { formatMesh } from '../mesh/mesh.js';
import { buildGraph, DIM_NAMES, type DimName } from '../model/graph.js';
import { totalLayers } from '../model/spec.js';
import type { ExportInput } from './target.js';

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

/** A validated plan, seen the way a training engine sees it. */
export interface PlanShape {
  readonly input: ExportInput;
  readonly axes: readonly AxisUse[];
  /** Degrees: the product of the sizes of the axes with that role (1 when none). */
  readonly dp: number;
  readonly tp: number;
  readonly pp: number;
  readonly cp: number;
  /** Sequences per data-parallel replica per step, and per microbatch. */
  readonly perReplica: number;
  readonly microBatch: number;
  readonly layers: number;
  readonly layout: string;
  readonly mesh: string;
}

const TENSOR_DIMS: readonly DimName[] = ['heads', 'd_ff', 'vocab'];

function roleOf(dims: readonly DimName[]): AxisRole {
  if (dims.length === 0) return 'unused';
  const only = (d: DimName) => dims.length === 1 && dims[0] === d;
  if (only('batch')) return 'data';
  if (only('layers')) return 'pipeline';
  if (only('length')) return 'context';
  if (dims.every((d) => TENSOR_DIMS.includes(d))) return 'tensor';
  return 'other';
}

/** Validate the plan against its model and mesh (a bad plan is an InputError), then classify the axes. */
export function analyse(input: ExportInput): PlanShape {
  const { plan, mesh, spec } = input;
  const graph = buildGraph(spec);
  validateLayout(graph, mesh, plan.layout);
  const axes: AxisUse[] = mesh.axes.map((a, index) => {
    const dims = DIM_NAMES.filter((d) => axesOf(plan.layout, d).includes(a.name));
    return { name: a.name, size: a.size, index, dims, role: roleOf(dims) };
  });
  const degree = (role: AxisRole) => axes.filter((a) => a.role === role).reduce((p, a) => p * a.size, 1);
  const batchSplit = axesOf(plan.layout, 'batch').reduce((p, a) => p * mesh.axes.find((x) => x.name === a)!.size, 1);
  const perReplica = spec.batch / batchSplit;
  check(perReplica % plan.microbatches === 0,
    `${plan.microbatches} microbatches do not divide the per-replica batch of ${perReplica} sequences`);
  return {
    input, axes, dp: degree('data'), tp: degree('tensor'), pp: degree('pipeline'), cp: degree('context'),
    perReplica, microBatch: perReplica / plan.microbatches, layers: totalLayers(spec),
    layout: formatLayout(plan.layout), mesh: formatMesh(mesh),
  };
}

export function axesWith(shape: PlanShape, role: AxisRole): AxisUse[] {
  return shape.axes.filter((a) => a.role === role);
}

export const axisList = (axes: readonly AxisUse[]) => axes.map((a) => `${a.name} (${a.size})`).join(', ');

/** Header lines saying what was exported, for formats that allow comments. */
export function header(shape: PlanShape, engine: string): string[] {
  const { plan, spec } = shape.input;
  const layers = spec.kind === 'decoder' ? `${spec.decoderLayers} layers` : `${spec.encoderLayers}+${spec.decoderLayers} layers`;
  return [
    `${engine} configuration written by mesh-search export`,
    `model ${spec.name}: ${spec.kind}, ${layers}, d_model ${spec.dModel}, ${spec.heads} heads${spec.kvHeads < spec.heads ? ` (${spec.kvHeads} K/V heads)` : ''} of d_kv ${spec.dKv}, d_ff ${spec.dFf}, vocab ${spec.vocab}, ${spec.activation}, ${spec.positions} positions, ${spec.dtype}`,
    `mesh ${shape.mesh} (${shape.input.mesh.size} devices)${shape.input.profile ? `, device ${shape.input.profile.name}` : ''}`,
    `plan ${shape.layout || '(replicated)'}, zero ${plan.zero}, recompute ${plan.recompute}, ${plan.microbatches} microbatch${plan.microbatches === 1 ? '' : 'es'}`,
    `global batch ${spec.batch} sequences of ${spec.seqLen} tokens; ${shape.perReplica} per data-parallel replica, ${shape.microBatch} per microbatch`,
  ];
}

/**
 * Engines that order their process groups (Megatron-LM, torchtitan) put some roles on the
 * inner devices. Returns a note when the plan's mesh orders its axes differently.
 */
export function orderNote(shape: PlanShape, engine: string, outerToInner: readonly AxisRole[]): string | null {
  const used = shape.axes.filter((a) => a.size > 1 && outerToInner.includes(a.role));
  const rank = (a: AxisUse) => outerToInner.indexOf(a.role);
  for (let i = 1; i < used.length; i++) {
    if (rank(used[i - 1]) > rank(used[i])) {
      return `note: ${engine} orders ranks ${outerToInner.join(', ')} from outer to inner; this mesh puts ${used[i - 1].role} (${used[i - 1].name}) outside ${used[i].role} (${used[i].name}), so links differ from the estimate`;
    }
  }
  return null;
}

/**
 * Common refusals of engines whose parallelism kinds are fixed (everything but Mesh-TF):
 * an axis that splits nothing, or splits a mix of dimensions no engine axis does.
 */
export function fixedRoleProblems(shape: PlanShape, engine: string): string[] {
  const out: string[] = [];
  for (const a of shape.axes) {
    if (a.role === 'unused' && a.size > 1) {
      out.push(`mesh axis ${a.name} (${a.size}) splits no dimension, so its devices would repeat the same work; ${engine} has no such axis`);
    } else if (a.role === 'other') {
      out.push(`mesh axis ${a.name} splits ${a.dims.join(' and ')}; ${engine} has no parallelism that splits ${a.dims.filter((d) => !TENSOR_DIMS.includes(d)).join(' or ') || a.dims.join(' and ')} that way`);
    }
  }
  return out;
}

/**
 * Tensor parallelism as Megatron-LM and torchtitan do it: every tensor axis splits heads,
 * d_ff and vocab together (column/row-parallel attention and MLP, vocab-parallel embedding
 * and output layer).
 */
export function megatronStyleTensorProblems(shape: PlanShape, engine: string): string[] {
  const out: string[] = [];
  for (const a of axesWith(shape, 'tensor')) {
    const lacking = TENSOR_DIMS.filter((d) => !a.dims.includes(d));
    if (lacking.length > 0) {
      out.push(`${engine}'s tensor parallelism splits heads, d_ff and vocab together, but the plan splits only ${a.dims.join(' and ')} over ${a.name} (${lacking.join(' and ')} ${lacking.length === 1 ? 'stays' : 'stay'} whole)`);
    }
  }
  const tensor = axesWith(shape, 'tensor').map((a) => a.name);
  for (const d of TENSOR_DIMS) {
    const on = axesOf(shape.input.plan.layout, d);
    if (tensor.length > 0 && on.length > 0 && on.join('+') !== tensor.join('+')) {
      out.push(`${engine} splits ${d} over all tensor-parallel axes in mesh order (${tensor.join('+')}), but the plan splits it over ${on.join('+')}`);
    }
  }
  return out;
}

/** Data axes in mesh order must be the order the plan splits batch in, for one data-parallel group. */
export function dataOrderProblem(shape: PlanShape, engine: string): string | null {
  const data = axesWith(shape, 'data').map((a) => a.name);
  const batch = axesOf(shape.input.plan.layout, 'batch');
  if (data.length > 1 && batch.join('+') !== data.join('+')) {
    return `${engine} numbers data-parallel ranks in mesh order (${data.join('+')}), but the plan splits batch over ${batch.join('+')}`;
  }
  return null;
}
