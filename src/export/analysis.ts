import { check } from '../errors.js';
import { formatLayout, validateLayout } from '../layout/layout.js';
import { formatMesh } from '../mesh/mesh.js';
import { buildGraph } from '../model/graph.js';
import { shapeOf, whyNot, type Engine, type PlanShape as EngineShape } from '../engine/index.js';
import { UnsupportedPlanError, type ExportInput, type Format } from './target.js';

export { axesWith, type AxisRole, type AxisUse } from '../engine/index.js';

/** A validated plan, seen the way a training engine sees it, with its text forms. */
export interface PlanShape extends EngineShape {
  readonly input: ExportInput;
  readonly layoutText: string;
  readonly meshText: string;
}

/**
 * Validate the plan against its model and mesh (a bad plan is an InputError), refuse it with
 * every reason the engine's rules give (src/engine, the search's filter too), then classify the axes.
 */
export function analyse(input: ExportInput, format: Format): PlanShape {
  const { plan, mesh, spec } = input;
  validateLayout(buildGraph(spec), mesh, plan.layout);
  const shape = shapeOf(plan, mesh, spec);
  check(Number.isInteger(shape.microBatch), `${plan.microbatches} microbatches do not divide the per-replica batch of ${shape.perReplica} sequences`);
  const missing = whyNot(format as Engine, plan, mesh, spec, input.profile);
  if (missing.length > 0) throw new UnsupportedPlanError(format, missing);
  return { ...shape, input, layoutText: formatLayout(plan.layout), meshText: formatMesh(mesh) };
}

/** Header lines saying what was exported, for formats that allow comments. */
export function header(shape: PlanShape, engine: string): string[] {
  const { plan, spec } = shape.input;
  const layers = spec.kind === 'decoder' ? `${spec.decoderLayers} layers` : `${spec.encoderLayers}+${spec.decoderLayers} layers`;
  const extras = [shape.sequenceParallel ? 'sequence parallel' : '', shape.virtualStages > 1 ? `${shape.virtualStages} virtual stages` : ''].filter(Boolean);
  return [
    `${engine} configuration written by mesh-search export`,
    `model ${spec.name}: ${spec.kind}, ${layers}, d_model ${spec.dModel}, ${spec.heads} heads${shape.kvHeads !== spec.heads ? ` (${shape.kvHeads} KV heads)` : ''} of d_kv ${spec.dKv}, d_ff ${spec.dFf}, vocab ${spec.vocab}, ${spec.activation}, ${spec.positions} positions, ${spec.dtype}`,
    `mesh ${shape.meshText} (${shape.input.mesh.size} devices)${shape.input.profile ? `, device ${shape.input.profile.name}` : ''}`,
    `plan ${shape.layoutText || '(replicated)'}, zero ${plan.zero}, recompute ${plan.recompute}, ${plan.microbatches} microbatch${plan.microbatches === 1 ? '' : 'es'}${extras.length ? `, ${extras.join(', ')}` : ''}`,
    `global batch ${spec.batch} sequences of ${spec.seqLen} tokens; ${shape.perReplica} per data-parallel replica, ${shape.microBatch} per microbatch`,
  ];
}

/** `--flag value` lines joined by shell continuations, after `# ` comments. */
export function argsText(comments: readonly string[], args: readonly string[]): string {
  return [...comments.map((c) => `# ${c}`), args.map((a, i) => (i < args.length - 1 ? `${a} \\` : a)).join('\n')].join('\n') + '\n';
}
