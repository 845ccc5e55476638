import { InputError, check } from '../errors.js';

/** One named mesh axis. */
export interface MeshAxis {
  readonly name: string;
  readonly size: number;
}

/** A device-free mesh: named axes, outer to inner. Devices are numbered row-major. */
export interface Mesh {
  readonly axes: readonly MeshAxis[];
  /** Total number of devices. */
  readonly size: number;
}

const SHORTHAND_NAMES: Record<number, readonly string[]> = {
  1: ['x'],
  2: ['rows', 'cols'],
  3: ['x', 'y', 'z'],
  4: ['x', 'y', 'z', 'w'],
};

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const INT = /^[0-9]+$/;

export function makeMesh(axes: readonly MeshAxis[]): Mesh {
  // Messages are written only when a check fails (the search makes a stand-in mesh per state floor).
  check(axes.length > 0, 'a mesh needs at least one axis');
  check(axes.length <= 16, () => `a mesh has at most 16 axes, got ${axes.length}`);
  const seen = new Set<string>();
  let size = 1;
  for (const a of axes) {
    check(NAME.test(a.name), () => `mesh axis name "${a.name}" must be letters, digits or _ and start with a letter`);
    check(!seen.has(a.name), () => `mesh axis "${a.name}" is named twice`);
    check(Number.isSafeInteger(a.size) && a.size >= 1, () => `mesh axis "${a.name}" has size ${a.size}; sizes are positive integers`);
    seen.add(a.name);
    size *= a.size;
  }
  check(size <= 1 << 24, () => `a mesh of ${size} devices is larger than mesh-search handles (at most ${1 << 24})`);
  return Object.freeze({ axes: Object.freeze(axes.map((a) => Object.freeze({ ...a }))), size });
}

function parseSize(text: string, what: string): number {
  const t = text.trim();
  check(INT.test(t), `${what}: "${text}" is not a positive integer`);
  const n = Number(t);
  check(n >= 1 && Number.isSafeInteger(n), `${what}: "${text}" is not a positive integer`);
  return n;
}

/**
 * Parse `16x32`, `2x4x8`, `8` (shorthand) or `rows:16;cols:32` (Mesh-TF's form; pairs
 * may also be separated by `,`).
 */
export function parseMesh(text: string): Mesh {
  if (typeof text !== 'string') throw new InputError('the mesh must be a string like 16x32 or rows:16;cols:32');
  const t = text.trim();
  check(t.length > 0, 'the mesh is empty: give it like 16x32 or rows:16;cols:32');
  if (!t.includes(':')) {
    const parts = t.split(/[xX×]/);
    const names = SHORTHAND_NAMES[parts.length];
    check(names, `mesh "${text}": the shorthand takes 1 to 4 sizes (like 16x32); name the axes for more (like a:2;b:2;...)`);
    return makeMesh(parts.map((p, i) => ({ name: names[i], size: parseSize(p, `mesh "${text}"`) })));
  }
  const pairs = t.split(/[;,]/).map((p) => p.trim()).filter((p) => p.length > 0);
  check(pairs.length > 0, `mesh "${text}" has no axes`);
  return makeMesh(
    pairs.map((p) => {
      const bits = p.split(':');
      check(bits.length === 2, `mesh "${text}": "${p}" is not name:size`);
      return { name: bits[0].trim(), size: parseSize(bits[1], `mesh axis "${bits[0].trim()}"`) };
    }),
  );
}

/** `rows:16;cols:32`: the form parseMesh reads back and Mesh-TF's mesh_shape uses. */
export function formatMesh(mesh: Mesh): string {
  return mesh.axes.map((a) => `${a.name}:${a.size}`).join(';');
}

/** `16x32`. */
export function meshShape(mesh: Mesh): string {
  return mesh.axes.map((a) => a.size).join('x');
}

export function axisIndex(mesh: Mesh, name: string): number {
  return mesh.axes.findIndex((a) => a.name === name);
}

/** Coordinates of a device (row-major numbering) along every axis. */
export function deviceCoords(mesh: Mesh, device: number): number[] {
  const coords = new Array<number>(mesh.axes.length);
  let rest = device;
  for (let i = mesh.axes.length - 1; i >= 0; i--) {
    coords[i] = rest % mesh.axes[i].size;
    rest = Math.floor(rest / mesh.axes[i].size);
  }
  return coords;
}

export function deviceIndex(mesh: Mesh, coords: readonly number[]): number {
  let d = 0;
  for (let i = 0; i < mesh.axes.length; i++) d = d * mesh.axes[i].size + coords[i];
  return d;
}

/** Product of the sizes of the axes inside axis i (its stride in device numbering). */
export function innerSize(mesh: Mesh, i: number): number {
  let p = 1;
  for (let j = i + 1; j < mesh.axes.length; j++) p *= mesh.axes[j].size;
  return p;
}
