import { InputError, LayoutError, check } from '../errors.js';
import type { Mesh } from '../mesh/mesh.js';
import { DIM_NAMES, NEVER_SPLIT, type DimName, type Graph } from '../model/graph.js';

/**
 * Global layout rules: tensor dimension → ordered mesh axes. Dimensions not named are
 * replicated. Written as Mesh-TF writes them: `batch:rows;d_ff:cols`, several axes `batch:rows+cols`.
 */
export type Layout = ReadonlyMap<DimName, readonly string[]>;

const DIM_SET = new Set<string>(DIM_NAMES);

export function parseLayout(text: string): Layout {
  if (typeof text !== 'string') throw new InputError('the layout must be a string like batch:rows;d_ff:cols');
  const rules = new Map<DimName, string[]>();
  const t = text.trim();
  if (t === '' || t === 'replicated') return rules;
  for (const raw of t.split(/[;,]/)) {
    const rule = raw.trim();
    if (rule === '') continue;
    const bits = rule.split(':');
    check(bits.length === 2, `layout "${text}": rule "${rule}" is not dimension:axis (like d_ff:cols)`);
    const dim = bits[0].trim();
    check(DIM_SET.has(dim), `layout "${text}": unknown dimension "${dim}"; dimensions are ${DIM_NAMES.join(', ')}`);
    check(!rules.has(dim as DimName), `layout "${text}": dimension "${dim}" has two rules`);
    check(!NEVER_SPLIT.has(dim as DimName), `layout "${text}": dimension "${dim}" is never split (split experts for expert parallelism)`);
    const axes = bits[1].split('+').map((a) => a.trim());
    check(axes.every((a) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(a)), `layout "${text}": "${bits[1].trim()}" is not an axis name or axes joined by +`);
    const seen = new Set<string>();
    for (const a of axes) {
      if (seen.has(a)) throw new LayoutError(`layout "${text}": dimension "${dim}" names axis "${a}" twice`);
      seen.add(a);
    }
    rules.set(dim as DimName, axes);
  }
  return rules;
}

/** The canonical text: rules in DIM_NAMES order, so equal layouts print equally. */
export function formatLayout(layout: Layout): string {
  const parts: string[] = [];
  for (const d of DIM_NAMES) {
    const axes = layout.get(d);
    if (axes && axes.length > 0) parts.push(`${d}:${axes.join('+')}`);
  }
  return parts.join(';');
}

export function axesOf(layout: Layout, dim: DimName): readonly string[] {
  return layout.get(dim) ?? [];
}

/**
 * A layout compiled against a mesh: per dimension, the split factor and the mesh axes as a
 * bitmask (bit i = mesh axis i). This is what the lowering's inner loops read.
 */
export interface CompiledLayout {
  readonly layout: Layout;
  readonly split: Readonly<Record<DimName, number>>;
  readonly mask: Readonly<Record<DimName, number>>;
}

/** Check that every axis exists on the mesh, then compile. Does not check validity against a graph. */
export function compileLayout(layout: Layout, mesh: Mesh): CompiledLayout {
  const split = {} as Record<DimName, number>;
  const mask = {} as Record<DimName, number>;
  for (const d of DIM_NAMES) {
    split[d] = 1;
    mask[d] = 0;
    for (const a of axesOf(layout, d)) {
      const i = mesh.axes.findIndex((x) => x.name === a);
      if (i < 0) {
        throw new LayoutError(`layout names mesh axis "${a}" for "${d}", but the mesh has only ${mesh.axes.map((x) => x.name).join(', ')}`);
      }
      split[d] *= mesh.axes[i].size;
      mask[d] |= 1 << i;
    }
  }
  return { layout, split, mask };
}

const maskAxesCache = new WeakMap<Mesh, Map<number, readonly string[]>>();

/** The names of a mask's axes, in mesh order: one frozen array per (mesh, mask), shared by every record. */
export function maskAxes(mesh: Mesh, mask: number): readonly string[] {
  let byMask = maskAxesCache.get(mesh);
  if (!byMask) maskAxesCache.set(mesh, (byMask = new Map()));
  let out = byMask.get(mask);
  if (!out) {
    const names: string[] = [];
    for (let i = 0; i < mesh.axes.length; i++) if (mask & (1 << i)) names.push(mesh.axes[i].name);
    byMask.set(mask, (out = Object.freeze(names)));
  }
  return out;
}

/** How many axes (bits) a mask has. */
export function popcount(x: number): number {
  let n = 0;
  for (let v = x; v; v &= v - 1) n++;
  return n;
}

export function maskSize(mesh: Mesh, mask: number): number {
  let n = 1;
  for (let i = 0; i < mesh.axes.length; i++) if (mask & (1 << i)) n *= mesh.axes[i].size;
  return n;
}

/** The distinct dimension sets of the graph's tensors, `layers` added to every one (see below). */
const dimSetCache = new WeakMap<Graph, { id: string; dims: readonly DimName[]; shown: readonly DimName[] }[]>();

export function tensorDimSets(graph: Graph): { id: string; dims: readonly DimName[]; shown: readonly DimName[] }[] {
  const hit = dimSetCache.get(graph);
  if (hit) return hit;
  const seen = new Map<string, { id: string; dims: readonly DimName[]; shown: readonly DimName[] }>();
  for (const t of graph.tensors.values()) {
    // A pipeline stage owns a slice of the whole program, so every tensor carries `layers`:
    // the pipeline axis cannot split anything else.
    const dims = [...t.dims, 'layers' as DimName];
    const key = [...dims].sort().join(',');
    if (!seen.has(key)) seen.set(key, { id: t.id, dims, shown: t.dims });
    // The expert side's `group` is split over the batch axes `experts` leaves (lower.ts withGroup):
    // every other dimension of such a tensor must keep off the batch axes.
    if (t.dims.includes('group')) {
      const shown = t.dims.filter((d) => d !== 'experts').map((d) => (d === 'group' ? 'batch' : d));
      const gdims = [...shown, 'layers' as DimName];
      const gkey = [...gdims].sort().join(',');
      if (!seen.has(gkey)) seen.set(gkey, { id: t.id, dims: gdims, shown });
    }
  }
  const sets = [...seen.values()];
  dimSetCache.set(graph, sets);
  return sets;
}

/** The dimensions some tensor of the graph carries (`layers` always): a layout may split only these. */
const presentCache = new WeakMap<Graph, ReadonlySet<DimName>>();

export function graphDims(graph: Graph): ReadonlySet<DimName> {
  let hit = presentCache.get(graph);
  if (!hit) {
    hit = new Set(tensorDimSets(graph).flatMap((s) => s.dims));
    presentCache.set(graph, hit);
  }
  return hit;
}

/** The dimensions a layout may split: those the graph has, less the ones no layout names (NEVER_SPLIT). */
export function splittableDims(graph: Graph): ReadonlySet<DimName> {
  return new Set([...graphDims(graph)].filter((d) => !NEVER_SPLIT.has(d)));
}

/** Why a compiled layout is invalid for this graph and mesh, or null when it is valid. */
export function layoutProblem(graph: Graph, mesh: Mesh, c: CompiledLayout): string | null {
  return divisibilityProblem(graph, c) ?? axisConflict(graph, mesh, c);
}

/** A split dimension the model lacks, or whose size its axes do not divide. */
export function divisibilityProblem(graph: Graph, c: CompiledLayout): string | null {
  const present = graphDims(graph);
  for (const d of DIM_NAMES) {
    const f = c.split[d];
    if (f > 1 && NEVER_SPLIT.has(d)) {
      return `dimension ${d} is never split (Mesh-TF moe.py keeps it whole; the lowering derives group from batch and experts), but the layout splits it over ${axesOf(c.layout, d).join('+')}`;
    }
    if (f > 1 && !present.has(d)) {
      const why = d === 'q_group' ? ' (q_group exists only with grouped-query attention, kvHeads < heads)' : '';
      return `model ${graph.spec.name} has no dimension ${d}${why}, but the layout splits it over ${axesOf(c.layout, d).join('+')}`;
    }
    const size = graph.dimSizes[d];
    if (size % f !== 0) {
      const what = d === 'layers' && graph.spec.kind === 'encoder-decoder'
        ? `layers (${graph.spec.encoderLayers} encoder and ${graph.spec.decoderLayers} decoder)`
        : `${d} (size ${size})`;
      return `dimension ${what} is not divisible by ${f}, the product of its axes ${axesOf(c.layout, d).join('+')}`;
    }
  }
  return null;
}

/** A tensor with two dimensions on one mesh axis. */
export function axisConflict(graph: Graph, mesh: Mesh, c: CompiledLayout): string | null {
  for (const { id, dims, shown } of tensorDimSets(graph)) {
    let used = 0;
    for (const d of dims) {
      const m = c.mask[d];
      if (used & m) {
        const other = dims.find((o) => o !== d && (c.mask[o] & m & used));
        const axis = maskAxes(mesh, used & m)[0];
        const where = other === 'layers' || d === 'layers' ? `tensor ${id} (in pipeline stages split by layers)` : `tensor ${id} [${shown.join(', ')}]`;
        return `${where} has two dimensions, ${other} and ${d}, on mesh axis ${axis}`;
      }
      used |= m;
    }
  }
  return null;
}

/**
 * Compile and validate; throws LayoutError naming the tensor, dimensions and axes. `relaxed`
 * accepts indivisible splits (local sizes become fractions) so that an estimate can still say
 * how much memory such a layout would need.
 */
export function validateLayout(graph: Graph, mesh: Mesh, layout: Layout, relaxed = false): CompiledLayout {
  const c = compileLayout(layout, mesh);
  const problem = relaxed ? axisConflict(graph, mesh, c) : layoutProblem(graph, mesh, c);
  if (problem) throw new LayoutError(`invalid layout ${formatLayout(layout) || '(replicated)'}: ${problem}`);
  return c;
}
