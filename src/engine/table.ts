import { CAPABILITIES, ENGINES, type Capabilities } from './capabilities.js';

/** The README's table: rows are plan features, columns engines, every cell read from CAPABILITIES. */
const ROWS: [string, (c: Capabilities) => string][] = [
  ['model kinds', (c) => c.kinds.join(', ')],
  ['ZeRO stages', (c) => c.zero.join(', ')],
  ['recompute', (c) => c.recompute.join(', ') + (c.recomputeKinds ? ` (${c.recomputeKinds.join(', ')} only)` : '')],
  ['pipeline (layers on an axis)', (c) => yes(c.pipeline)],
  ['interleaved virtual stages', (c) => yes(c.virtualStages)],
  ['context parallelism (length on an axis)', (c) => yes(c.context)],
  ['sequence parallelism', (c) => yes(c.sequenceParallel)],
  ['a dimension on several axes', (c) => yes(c.multiAxis)],
  ['any dimension on any axis (logical rules)', (c) => yes(c.freeLayout)],
  ['tensor axis splits only some of heads, d_ff, vocab', (c) => yes(c.partialTensor)],
  ['vocab split', (c) => yes(c.vocabSplit)],
  ['mesh axes at most', (c) => (c.maxAxes === undefined ? 'any' : String(c.maxAxes))],
  ['device order, outer to inner', (c) => (c.deviceOrder ? c.deviceOrder.join(' > ') : 'as the layout names')],
  ['ZeRO with context parallelism', (c) => yes(c.zeroWithContext)],
  ['hybrid sharding (--zero-axes, ZeRO-3)', (c) => yes(c.hybridZero)],
  ['full recompute reruns', (c) => (c.fullRecompute === 'needed' ? 'what the backward reads (XLA)' : 'the whole layer')],
  ['kernels (priced at)', (c) => (c.kernels === 'fused' ? 'fused (the presets\' efficiencies)' : 'eager PyTorch (× eagerCompute)')],
  ['gradient sync hidden behind the backward', (c) => (c.reduceAfterBackward.length === 0 ? 'yes' : `not at ZeRO ${c.reduceAfterBackward.join(', ')}`)],
  ['grouped-query attention', (c) => yes(c.gqa)],
  ['feed-forward', (c) => c.activations.join(', ')],
  ['positions', (c) => c.positions.join(', ')],
  ['dtypes', (c) => c.dtypes.join(', ')],
  ['also', (c) => c.also.join('; ')],
];

function yes(b: boolean): string {
  return b ? 'yes' : 'no';
}

export function capabilityTable(): string {
  const head = `| feature | ${ENGINES.map((e) => CAPABILITIES[e].title).join(' | ')} |`;
  const rule = `| --- |${ENGINES.map(() => ' --- |').join('')}`;
  const rows = ROWS.map(([name, f]) => `| ${name} | ${ENGINES.map((e) => f(CAPABILITIES[e]).replace(/\|/g, '\\|')).join(' | ')} |`);
  return [head, rule, ...rows].join('\n') + '\n';
}
