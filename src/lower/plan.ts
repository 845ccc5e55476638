import { check } from '../errors.js';
import { formatLayout, parseLayout, type Layout } from '../layout/layout.js';

export type ZeroStage = 0 | 1 | 2 | 3;
export type Recompute = 'none' | 'selective' | 'minimal' | 'full';
/**
 * Recompute modes, each recomputing a superset of the one before (so compute only grows and saved
 * memory only shrinks along the list): none; selective, the attention core (Korthikanti et al.
 * 2022); minimal, everything but the projections, whose outputs are saved (JAX's
 * checkpoint_dots_with_no_batch_dims, MaxText's and t5x's remat_policy 'minimal'); full, the layer.
 */
export const RECOMPUTE: readonly Recompute[] = ['none', 'selective', 'minimal', 'full'];
/** A mode's place in RECOMPUTE. */
export const RECOMPUTE_LEVEL = Object.fromEntries(RECOMPUTE.map((m, i) => [m, i])) as Readonly<Record<Recompute, number>>;

/** A layout plus the training strategy (DESIGN.md, "plan"). */
export interface Plan {
  readonly layout: Layout;
  /** ZeRO stage over the axes that split `batch` (or over `zeroAxes` only). */
  readonly zero: ZeroStage;
  /**
   * Hybrid sharding (MaxText's ici_fsdp with dcn_data, PyTorch HSDP): ZeRO shards over these
   * batch axes only and the other batch axes all-reduce the sharded gradient. Absent: every axis
   * that splits `batch`.
   */
  readonly zeroAxes?: readonly string[];
  readonly recompute: Recompute;
  /** Microbatches per step (gradient accumulation; pipeline microbatches when `layers` is split). */
  readonly microbatches: number;
  /**
   * Megatron's sequence parallelism (Korthikanti et al. 2022, Sec. 4.2.2): norms, dropout and
   * residuals split `length` on the axes that split heads/d_ff.
   */
  readonly sequenceParallel: boolean;
  /** Interleaved 1F1B: model chunks per pipeline stage (Narayanan et al. 2021, Sec. 2.2.2); 1 without. */
  readonly virtualStages: number;
}

export interface PlanOptions {
  zero?: unknown;
  recompute?: unknown;
  microbatches?: unknown;
  sequenceParallel?: unknown;
  virtualStages?: unknown;
  zeroAxes?: unknown;
}

/** `fsdp`, `fsdp+data` or `["fsdp"]` as a list of axis names; undefined when not given. */
function zeroAxesOf(v: unknown): readonly string[] | undefined {
  if (v === undefined || v === null) return undefined;
  check(v !== '', '--zero-axes needs the batch axes ZeRO shards over, joined by +, e.g. fsdp');
  const list = typeof v === 'string' ? v.split('+').map((a) => a.trim()) : v;
  check(Array.isArray(list) && list.length > 0 && list.every((a) => typeof a === 'string' && /^[A-Za-z_][A-Za-z0-9_]*$/.test(a)),
    `--zero-axes must name mesh axes joined by +, e.g. fsdp or fsdp+data, got ${JSON.stringify(v)}`);
  const names = list as string[];
  check(new Set(names).size === names.length, `--zero-axes names an axis twice: ${names.join('+')}`);
  return Object.freeze([...names]);
}

export function makePlan(layout: Layout | string, opts: PlanOptions = {}): Plan {
  const zero = opts.zero ?? 0;
  const recompute = opts.recompute ?? 'none';
  const microbatches = opts.microbatches ?? 1;
  const sequenceParallel = opts.sequenceParallel ?? false;
  const virtualStages = opts.virtualStages ?? 1;
  check(zero === 0 || zero === 1 || zero === 2 || zero === 3, `--zero must be 0, 1, 2 or 3, got ${JSON.stringify(zero)}`);
  check(typeof recompute === 'string' && (RECOMPUTE as readonly string[]).includes(recompute),
    `--recompute must be none, selective or full, got ${JSON.stringify(recompute)}`);
  check(typeof microbatches === 'number' && Number.isSafeInteger(microbatches) && microbatches >= 1 && microbatches <= 1 << 20,
    `--microbatches must be a positive integer, got ${JSON.stringify(microbatches)}`);
  check(typeof sequenceParallel === 'boolean', `--sequence-parallel must be true or false, got ${JSON.stringify(sequenceParallel)}`);
  check(typeof virtualStages === 'number' && Number.isSafeInteger(virtualStages) && virtualStages >= 1 && virtualStages <= 1024,
    `--virtual-stages must be a positive integer, got ${JSON.stringify(virtualStages)}`);
  const zeroAxes = zeroAxesOf(opts.zeroAxes);
  check(!zeroAxes || zero !== 0, `--zero-axes ${zeroAxes?.join('+')} needs a ZeRO stage (--zero 1, 2 or 3)`);
  return {
    layout: typeof layout === 'string' ? parseLayout(layout) : layout,
    zero: zero as ZeroStage,
    recompute: recompute as Recompute,
    microbatches: microbatches as number,
    sequenceParallel: sequenceParallel as boolean,
    virtualStages: virtualStages as number,
    ...(zeroAxes ? { zeroAxes } : {}),
  };
}

/** The JSON form of a plan, as DESIGN.md prints it and `--plan plan.json` reads it. */
export interface PlanJson {
  layout: string;
  zero: ZeroStage;
  recompute: Recompute;
  microbatches: number;
  sequenceParallel: boolean;
  virtualStages: number;
  /** Only for a hybrid-sharded plan: the batch axes ZeRO shards over. */
  zeroAxes?: string[];
}

export function planToJson(plan: Plan): PlanJson {
  return {
    layout: formatLayout(plan.layout), zero: plan.zero, recompute: plan.recompute, microbatches: plan.microbatches,
    sequenceParallel: plan.sequenceParallel, virtualStages: plan.virtualStages,
    ...(plan.zeroAxes ? { zeroAxes: [...plan.zeroAxes] } : {}),
  };
}

export function planFromJson(value: unknown, where = 'plan'): Plan {
  check(typeof value === 'object' && value !== null && !Array.isArray(value), `${where}: expected an object with layout, zero, recompute, microbatches`);
  const o = value as Record<string, unknown>;
  check(typeof o.layout === 'string', `${where}: "layout" must be a string like batch:rows;d_ff:cols`);
  return makePlan(o.layout as string, {
    zero: o.zero, recompute: o.recompute, microbatches: o.microbatches, sequenceParallel: o.sequenceParallel, virtualStages: o.virtualStages, zeroAxes: o.zeroAxes,
  });
}

export function describePlan(plan: Plan): string {
  const extra = `${plan.sequenceParallel ? ' sequence-parallel' : ''}${plan.virtualStages > 1 ? ` virtual-stages=${plan.virtualStages}` : ''}`;
  return `${formatLayout(plan.layout) || '(replicated)'} zero=${plan.zero}${plan.zeroAxes ? `@${plan.zeroAxes.join('+')}` : ''} recompute=${plan.recompute} microbatches=${plan.microbatches}${extra}`;
}
