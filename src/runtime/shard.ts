import { axesOf, type Layout } from '../layout/layout.js';
import { axisIndex, deviceIndex, deviceCoords, type Mesh } from '../mesh/mesh.js';
import type { DimName } from '../model/graph.js';

/** A device's local block of a named-dimension tensor: dims, local shape, row-major data. */
export interface Local {
  readonly dims: readonly DimName[];
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

/** Index of a device's shard of a dimension split over ordered axes (first axis outermost, as Mesh-TF). */
export function shardIndex(mesh: Mesh, axes: readonly string[], coords: readonly number[]): number {
  let idx = 0;
  for (const a of axes) {
    const i = axisIndex(mesh, a);
    idx = idx * mesh.axes[i].size + coords[i];
  }
  return idx;
}

export function axesSize(mesh: Mesh, axes: readonly string[]): number {
  let n = 1;
  for (const a of axes) n *= mesh.axes[axisIndex(mesh, a)].size;
  return n;
}

/** The devices of one collective group, in rank order (mixed radix over `axes`), for a member device. */
export function groupOf(mesh: Mesh, axes: readonly string[], device: number): number[] {
  const coords = deviceCoords(mesh, device);
  const n = axesSize(mesh, axes);
  const out: number[] = [];
  for (let r = 0; r < n; r++) {
    const c = [...coords];
    let rest = r;
    for (let k = axes.length - 1; k >= 0; k--) {
      const i = axisIndex(mesh, axes[k]);
      c[i] = rest % mesh.axes[i].size;
      rest = Math.floor(rest / mesh.axes[i].size);
    }
    out.push(deviceIndex(mesh, c));
  }
  return out;
}

/** Mesh axes of a mask, in mesh order. */
export function axesOfMask(mesh: Mesh, mask: number): string[] {
  return mesh.axes.filter((_, i) => mask & (1 << i)).map((a) => a.name);
}

/** The ordered axes a layout gives a dimension. */
export function dimAxes(layout: Layout, dim: DimName): readonly string[] {
  return axesOf(layout, dim);
}

/** Copy out the block [start, start+len) of dimension k. */
export function sliceDim(x: Local, k: number, start: number, len: number, newDims = x.dims): Local {
  const outer = sizeOf(x.shape.slice(0, k));
  const inner = sizeOf(x.shape.slice(k + 1));
  const n = x.shape[k];
  const out = new Float32Array(outer * len * inner);
  for (let o = 0; o < outer; o++) {
    out.set(x.data.subarray((o * n + start) * inner, (o * n + start + len) * inner), o * len * inner);
  }
  const shape = [...x.shape];
  shape[k] = len;
  return { dims: newDims, shape, data: out };
}

/** Concatenate blocks along dimension k (all other sizes equal). */
export function concatDim(parts: readonly Local[], k: number, newDims = parts[0].dims): Local {
  const x0 = parts[0];
  const outer = sizeOf(x0.shape.slice(0, k));
  const inner = sizeOf(x0.shape.slice(k + 1));
  const total = parts.reduce((s, p) => s + p.shape[k], 0);
  const out = new Float32Array(outer * total * inner);
  let at = 0;
  for (const p of parts) {
    const n = p.shape[k];
    for (let o = 0; o < outer; o++) out.set(p.data.subarray(o * n * inner, (o + 1) * n * inner), (o * total + at) * inner);
    at += n;
  }
  const shape = [...x0.shape];
  shape[k] = total;
  return { dims: newDims, shape, data: out };
}

/**
 * Global flat index of every element of a local block: the key for deterministic
 * initialisation and dropout masks, so that every layout (and the reference) draws the same numbers.
 */
export function globalIndices(shape: readonly number[], offsets: readonly number[], globalShape: readonly number[]): Float64Array {
  const n = sizeOf(shape);
  const out = new Float64Array(n);
  const r = shape.length;
  const idx = new Array<number>(r).fill(0);
  for (let e = 0; e < n; e++) {
    let g = 0;
    for (let k = 0; k < r; k++) g = g * globalShape[k] + offsets[k] + idx[k];
    out[e] = g;
    for (let k = r - 1; k >= 0; k--) {
      if (++idx[k] < shape[k]) break;
      idx[k] = 0;
    }
  }
  return out;
}

/** A 32-bit string hash (FNV-1a), for seeds. */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** Counter-based uniform in [0, 1) from a seed and an index (splitmix-style mixing, 32-bit). */
export function uniformAt(seed: number, index: number): number {
  let h = (seed ^ Math.imul((index % 4294967296) >>> 0, 0x9e3779b1)) >>> 0;
  h ^= Math.floor(index / 4294967296);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  h = (h ^ (h >>> 16)) >>> 0;
  return h / 4294967296;
}

/** The block with its first two dimensions swapped (a regroup's [a, b, ..] -> [b, a, ..]), relabelled `dims`. */
export function swap01(x: Local, dims: readonly DimName[]): Local {
  const [a, b] = x.shape;
  const inner = sizeOf(x.shape.slice(2));
  const out = new Float32Array(x.data.length);
  for (let i = 0; i < a; i++) for (let j = 0; j < b; j++) out.set(x.data.subarray((i * b + j) * inner, (i * b + j + 1) * inner), (j * a + i) * inner);
  return { dims, shape: [b, a, ...x.shape.slice(2)], data: out };
}
