import type { Graph } from '../model/graph.js';
import { globalIndices, hashString, uniformAt } from './shard.js';

/**
 * Initial value of a block of a weight, drawn from the global element indices: every layout,
 * every device and the reference draw the same numbers, and no device needs the whole weight.
 * Layer norms start at scale 1, bias 0; matrices uniform with std 1/√fan-in, where fan-in is
 * the size of the dimensions the forward contracts; tables (gather, positions) with std 0.5 and 0.1.
 */
export function initWeight(graph: Graph, w: string, layer: number | null, seed: number, shape: readonly number[], offsets: readonly number[]): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  if (w.endsWith('.scale')) return new Float32Array(n).fill(1);
  if (w.endsWith('.bias')) return new Float32Array(n);
  const t = graph.tensors.get(w)!;
  let std = 0.1;
  const reader = graph.blocks.flatMap((b) => b.ops).find((o) => o.inputs.includes(w))!;
  if (reader.kind === 'einsum') {
    const out = graph.tensors.get(reader.output)!.dims;
    const fanIn = t.dims.filter((d) => !out.includes(d)).reduce((s, d) => s * graph.dimSizes[d], 1);
    std = 1 / Math.sqrt(fanIn);
  } else if (reader.kind === 'gather') {
    std = 0.5;
  }
  const s = hashString(`${seed}:${w}:${layer ?? '-'}`);
  const idx = globalIndices(shape, offsets, t.dims.map((d) => graph.dimSizes[d]));
  const a = Math.sqrt(3) * std;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (2 * uniformAt(s, idx[i]) - 1) * a;
  return out;
}
