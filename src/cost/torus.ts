import { popcount } from '../layout/layout.js';
import type { Mesh } from '../mesh/mesh.js';
import type { HardwareProfile } from './profile.js';

/**
 * TPU slices are tori: a v4 or v5p chip has two ICI links per dimension of a 3D torus, a v5e or
 * v6e chip two per dimension of a 2D one (Cloud TPU system architecture docs). A profile's torus
 * level gives the chip's bandwidth over all its links; a ring along one mesh axis uses only the
 * links of the torus dimensions that axis spans, so it gets that share of the bandwidth (a
 * tensor axis along one dimension of a v5p slice: a third).
 *
 * Which dimensions an axis spans: the slice's devices are numbered row-major over its torus shape,
 * the largest dimension fastest, as the mesh numbers them (innermost axis fastest); an axis spans
 * every dimension its stride range [inner, inner · size) reaches into. A rule on the axes' places
 * alone, so axes merged into one span what their parts spanned (the --devices search prices a
 * coarse mesh on its finest one). On the shapes MaxText runs (whole-cube v5p slices and v5e
 * slices, an inner tensor axis of whole dimensions, fsdp over the rest) an axis spans as many
 * dimensions as JAX's create_device_mesh gives it. Under a cube JAX can differ: it gives an inner
 * axis as many dimensions as it can (on a 2x2x4 slice, a tensor axis of 4 takes the two 2s where
 * this rule gives it the 4).
 */
export interface Torus {
  /** Dimensions of the torus (3 for v4 and v5p, 2 for v5e and v6e). */
  readonly dims: number;
  /** Slices of at least cube^dims chips are built of cubes of this side (v4 and v5p: 4x4x4 blocks). */
  readonly cube?: number;
}

function factorisations(n: number, k: number, min: number): number[][] {
  if (k === 1) return n >= min ? [[n]] : [];
  const out: number[][] = [];
  for (let f = min; f ** k <= n; f++) {
    if (n % f !== 0) continue;
    for (const rest of factorisations(n / f, k - 1, f)) out.push([f, ...rest]);
  }
  return out;
}

/** The most cubic k factors of n, ascending: the least largest factor, then the least next one (ties: lexicographic from the top). */
function mostCubic(n: number, k: number): number[] {
  let best: number[] | undefined;
  for (const f of factorisations(n, k, 1)) {
    if (!best) { best = f; continue; }
    for (let i = k - 1; i >= 0; i--) {
      if (f[i] !== best[i]) { if (f[i] < best[i]) best = f; break; }
    }
  }
  return best ?? [n, ...new Array<number>(k - 1).fill(1)].sort((a, b) => a - b);
}

/**
 * The torus shape of a slice of n chips, ascending: the most cubic one, of whole cubes where the
 * slice is big enough (v5p: 64 chips 4x4x4, 128 4x4x8, 192 4x4x12, 2048 8x16x16; v5e: 256 16x16,
 * 32 4x8), as the Cloud TPU docs list the slice topologies.
 */
export function torusShape(n: number, t: Torus): number[] {
  const c = t.cube ?? 1;
  const block = c ** t.dims;
  if (c > 1 && n >= block && n % block === 0) return mostCubic(n / block, t.dims).map((x) => x * c);
  return mostCubic(n, t.dims);
}

/** Per mesh axis, a bitmask of the torus dimensions it spans (0 off the torus level, or of size 1), and the level's dimension count. */
export interface TorusAxes {
  readonly level: number;
  readonly dims: number;
  /** Per axis: whether its collectives run on the torus level. */
  readonly on: readonly boolean[];
  readonly spans: readonly number[];
}

const cache = new WeakMap<HardwareProfile, WeakMap<Mesh, TorusAxes | null>>();

/**
 * The torus dimensions each axis spans, for the profile's torus level (null when it has none).
 * `levelOf` is the network level each axis's collectives run on (price.ts networkLevel).
 */
export function torusAxes(profile: HardwareProfile, mesh: Mesh, levelOf: (axis: number) => number): TorusAxes | null {
  let byMesh = cache.get(profile);
  if (!byMesh) cache.set(profile, (byMesh = new WeakMap()));
  const hit = byMesh.get(mesh);
  if (hit !== undefined) return hit;
  const level = profile.levels.findIndex((l) => l.torus !== undefined);
  let out: TorusAxes | null = null;
  if (level >= 0) {
    const t = profile.levels[level].torus!;
    const on = mesh.axes.map((_, i) => levelOf(i) === level);
    // The slice: the level's own axes, or the whole unit where an axis reaches past it (its inner part fills the unit).
    let n = 1;
    for (let i = 0; i < mesh.axes.length; i++) if (on[i]) n *= mesh.axes[i].size;
    const unit = profile.levels[level].devices;
    if (mesh.axes.some((a, i) => !on[i] && levelOf(i) > level && a.name !== 'dcn') && unit % n === 0 && unit < 2 ** 31) n = unit;
    const shape = torusShape(n, t);
    // Dimension j covers strides [below[j], below[j] · shape[j]) of the row-major numbering, the last dimension fastest.
    const below = shape.map((_, j) => shape.slice(j + 1).reduce((a, b) => a * b, 1));
    const spans = new Array<number>(mesh.axes.length).fill(0);
    let inner = 1;
    for (let i = mesh.axes.length - 1; i >= 0; i--) {
      if (!on[i]) continue;
      const size = mesh.axes[i].size;
      if (size > 1) for (let j = 0; j < shape.length; j++) if (shape[j] > 1 && inner < below[j] * shape[j] && inner * size > below[j]) spans[i] |= 1 << j;
      inner *= size;
    }
    out = { level, dims: t.dims, on, spans };
  }
  byMesh.set(mesh, out);
  return out;
}

/** The share of the torus level's bandwidth a collective over these axes gets: the dimensions they span together, over all (at least one). */
export function torusShare(t: TorusAxes, mask: number): number {
  let union = 0;
  for (let i = 0; i < t.spans.length; i++) if (mask & (1 << i)) union |= t.spans[i];
  return Math.max(1, popcount(union)) / t.dims;
}
