import type { PlanShape } from './shape.js';

/** MaxText's mesh axes (base.yml mesh_axes), in its device order, outer to inner. */
export const MAXTEXT_MESH_AXES = ['diloco', 'data', 'stage', 'fsdp', 'fsdp_transpose', 'context', 'context_usp_ulysses', 'context_autoregressive', 'tensor', 'tensor_sequence', 'expert', 'autoregressive'] as const;
export type MaxtextAxis = (typeof MAXTEXT_MESH_AXES)[number];

/** MaxText's physical axes for tensor-like splits, taken in turn: only the logical rules give them meaning. */
export const MAXTEXT_FREE_AXES: readonly MaxtextAxis[] = ['tensor', 'tensor_sequence', 'autoregressive'];

/**
 * Each mesh axis of the plan as one MaxText axis: batch on data (fsdp with ZeRO-3), batch and
 * experts on expert, layers on stage, length on context; axes with the same other dimensions
 * share a free axis. Null for an axis of one device that splits nothing. `problems` says what
 * MaxText cannot lay out so.
 */
export function maxtextKinds(s: PlanShape): { kinds: (MaxtextAxis | null)[]; problems: string[] } {
  const problems: string[] = [];
  const bySignature = new Map<string, MaxtextAxis>();
  let free = 0;
  const kinds = s.axes.map((a): MaxtextAxis | null => {
    // An axis that splits experts and batch is MaxText's expert axis: it shards the batch of every
    // layer's activations and the experts of the MoE weights (base.yml activation_batch, exp).
    if (a.role === 'data' && a.dims.includes('experts')) return 'expert';
    // ZeRO-3 is the fsdp axis; a hybrid plan's other batch axes stay plain data parallel
    // (ici_fsdp x dcn_data, as MaxText's multi-slice and A3 scripts run).
    if (a.role === 'data') return s.plan.zero === 3 && (!s.plan.zeroAxes || s.plan.zeroAxes.includes(a.name)) ? 'fsdp' : 'data';
    if (a.role === 'pipeline') return 'stage';
    if (a.role === 'context') return 'context';
    if (a.role === 'unused') return null;
    const sig = a.dims.join(',');
    let kind = bySignature.get(sig);
    if (!kind) {
      kind = MAXTEXT_FREE_AXES[free++];
      if (!kind) {
        problems.push(`MaxText has ${MAXTEXT_FREE_AXES.length} axes (${MAXTEXT_FREE_AXES.join(', ')}) for other splits, but the plan needs more (${a.name} splits ${a.dims.join(' and ')})`);
        return null;
      }
      bySignature.set(sig, kind);
    }
    return kind;
  });
  // types.py moves stage before data when pipelining; the device mesh follows mesh_axes.
  const order: readonly string[] = s.pp > 1 ? ['diloco', 'stage', 'data', ...MAXTEXT_MESH_AXES.slice(3)] : MAXTEXT_MESH_AXES;
  const used = s.axes.map((a, i) => ({ a, k: kinds[i] })).filter((x) => x.k !== null && x.a.size > 1);
  for (let i = 1; i < used.length; i++) {
    if (order.indexOf(used[i - 1].k!) > order.indexOf(used[i].k!)) {
      problems.push(`MaxText lays its axes out ${order.filter((k) => used.some((u) => u.k === k)).join(', ')} from outer to inner devices, but this mesh puts ${used[i - 1].k} (${used[i - 1].a.name}) outside ${used[i].k} (${used[i].a.name}); reorder the mesh axes`);
      break;
    }
  }
  return { kinds, problems };
}
