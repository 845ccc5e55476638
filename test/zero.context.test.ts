import { describe, expect, it } from 'vitest';
import { estimatePlan } from '../src/cost/estimatePlan.js';
import { getDevice } from '../src/cost/presets.js';
import { makePlan } from '../src/lower/plan.js';
import { parseMesh } from '../src/mesh/mesh.js';
import { buildGraph } from '../src/model/graph.js';
import { getPreset } from '../src/model/presets.js';

/**
 * ZeRO with context parallelism: the devices that split `length` hold the same weights and sum their
 * gradients, so the optimizer shards over them too, as Megatron-LM's distributed optimizer shards
 * over data x context parallel ranks. A weight with a `length` dimension (learned positions) is split
 * by it already and shards over the batch ranks on top.
 */
describe('ZeRO over the axes that split length', () => {
  const spec = getPreset('tiny');
  const graph = buildGraph(spec);
  const mesh = parseMesh('rows:2;cols:2');
  const profile = getDevice('tpu-v2');
  // A layer block's weight exists once per layer (the graph's block repeat).
  const repeat = (id: string) => graph.blocks.find((b) => b.ops.some((o) => o.inputs.includes(id)))!;
  const elems = (id: string) => graph.tensors.get(id)!.dims.reduce((n, d) => n * graph.dimSizes[d], 1) * (repeat(id).layered ? repeat(id).repeat : 1);
  const optimizerBytes = 8; // fp32 training: momentum and variance (Kingma and Ba 2015)

  for (const zero of [1, 2, 3] as const) it(`ZeRO ${zero}: optimizer state is each weight's over its batch x length ranks`, () => {
    const cp = estimatePlan(graph, mesh, makePlan('length:rows;batch:cols', { zero }), profile);
    expect(cp.valid).toBe(true);
    let expected = 0;
    for (const w of graph.weights) {
      // Every weight over 2 x 2 ranks (learned positions: split by length already, then over batch).
      expected += (elems(w) * optimizerBytes) / 4;
    }
    expect(cp.memory.optimizer).toBeCloseTo(expected, 6);
    // Without the length split only the batch ranks share the state.
    const dp = estimatePlan(graph, mesh, makePlan('batch:cols', { zero }), profile);
    const all = graph.weights.reduce((n, w) => n + elems(w), 0);
    expect(dp.memory.optimizer).toBeCloseTo((all * optimizerBytes) / 2, 6);
    expect(cp.memory.optimizer).toBeLessThan(dp.memory.optimizer);
  });

  it('the gradients it shards are reduce-scattered over batch and length together', () => {
    const cp = estimatePlan(graph, mesh, makePlan('length:rows;batch:cols', { zero: 1 }), profile);
    const rs = cp.communication.collectives.filter((c) => c.kind === 'reduce-scatter').map((c) => c.axes.join('+'));
    expect(rs).toContain('rows+cols');
    expect(rs).toContain('cols');
  });
});
