import fc from 'fast-check';
import { compileLayout, layoutProblem, type Layout } from '../../src/layout/layout.js';
import type { Mesh } from '../../src/mesh/mesh.js';
import { DIM_NAMES, NEVER_SPLIT, type DimName, type Graph } from '../../src/model/graph.js';
import { parseModelSpec, type ModelSpec } from '../../src/model/spec.js';

/** The dimensions of a dense model (the MoE ones come after q_group): the arbitraries' default. */
export const DENSE_DIMS: readonly DimName[] = DIM_NAMES.slice(0, DIM_NAMES.indexOf('q_group') + 1);

/** What a layout of an MoE model may split: every dimension but those no layout names. */
export const MOE_DIMS: readonly DimName[] = DIM_NAMES.filter((d) => !NEVER_SPLIT.has(d));

/** A layout: each dimension on a subset of the mesh axes (mesh order), possibly invalid. */
export function anyLayout(mesh: Mesh, dims: readonly DimName[] = DENSE_DIMS): fc.Arbitrary<Layout> {
  const nAxes = mesh.axes.length;
  return fc.array(fc.integer({ min: 0, max: (1 << nAxes) - 1 }), { minLength: dims.length, maxLength: dims.length }).map((masks) => {
    const m = new Map<DimName, string[]>();
    dims.forEach((d, i) => {
      const axes = mesh.axes.filter((_, a) => masks[i] & (1 << a)).map((a) => a.name);
      if (axes.length) m.set(d, axes);
    });
    return m;
  });
}

/** A layout that gives each mesh axis to at most one dimension: never two dimensions on one axis. */
export function exclusiveLayout(mesh: Mesh, dims: readonly DimName[] = DENSE_DIMS): fc.Arbitrary<Layout> {
  return fc.array(fc.integer({ min: -1, max: dims.length - 1 }), { minLength: mesh.axes.length, maxLength: mesh.axes.length }).map((owner) => {
    const m = new Map<DimName, string[]>();
    owner.forEach((d, a) => {
      if (d < 0) return;
      m.set(dims[d], [...(m.get(dims[d]) ?? []), mesh.axes[a].name]);
    });
    return m;
  });
}

/** A valid layout for this graph and mesh: drawn both ways, then filtered for validity. */
export function validLayout(graph: Graph, mesh: Mesh, dims: readonly DimName[] = DENSE_DIMS): fc.Arbitrary<Layout> {
  return fc.oneof(exclusiveLayout(mesh, dims), exclusiveLayout(mesh, dims), anyLayout(mesh, dims))
    .filter((l) => layoutProblem(graph, mesh, compileLayout(l, mesh)) === null);
}

/** A small GPT-style decoder with power-of-two sizes, so that many layouts divide. */
export function smallSpec(): fc.Arbitrary<ModelSpec> {
  return fc.record({
    layers: fc.constantFrom(1, 2, 4),
    dModel: fc.constantFrom(16, 32, 64),
    heads: fc.constantFrom(2, 4, 8),
    dKv: fc.constantFrom(4, 8, 16),
    dFf: fc.constantFrom(32, 64, 128),
    vocab: fc.constantFrom(32, 64, 96),
    seqLen: fc.constantFrom(8, 16),
    batch: fc.constantFrom(4, 8, 16),
    activation: fc.constantFrom('relu', 'gelu', 'swiglu'),
    dropout: fc.boolean(),
    tiedEmbeddings: fc.boolean(),
    kind: fc.constantFrom('decoder', 'encoder-decoder'),
    dtype: fc.constantFrom('bfloat16', 'float32'),
    // Query heads per K/V head: 1 is multi-head attention, 2 grouped-query (adds q_group).
    group: fc.constantFrom(1, 1, 2),
    flashAttention: fc.boolean(),
  }).map(({ group, ...r }) => parseModelSpec({ name: 'small', ...r, kvHeads: r.heads / group }));
}
