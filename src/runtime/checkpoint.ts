import { InputError } from '../errors.js';
import { readJsonFile, writeAtomic } from '../inputs/index.js';
import { planToJson } from '../lower/plan.js';
import { formatMesh } from '../mesh/mesh.js';
import type { Executor } from './executor.js';

/**
 * A checkpoint holds every device's own shards (weights, Adam moments), not global tensors:
 * a run resumes on the same mesh, model and plan. Written to a temporary file, then renamed,
 * so a crash mid-write never leaves a torn checkpoint in place of the last good one.
 */
interface CheckpointFile {
  format: 'mesh-search-checkpoint/1';
  step: number;
  model: unknown;
  mesh: string;
  plan: unknown;
  seed: number;
  losses: number[];
  devices: { params: Record<string, string>; m: Record<string, string>; v: Record<string, string> }[];
}

const FORMAT = 'mesh-search-checkpoint/1';
/** Checkpoints are base64 of every shard three times over: allow them more than other inputs. */
const MAX_CHECKPOINT_BYTES = 512 * 2 ** 20 - 64;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

const enc = (x: Float32Array) => Buffer.from(x.buffer, x.byteOffset, x.byteLength).toString('base64');
const dump = (m: Map<string, Float32Array>) => Object.fromEntries([...m].map(([k, v]) => [k, enc(v)]));

function identity(ex: Executor) {
  const { graph, mesh, plan } = ex.program;
  return { model: graph.spec, mesh: formatMesh(mesh), plan: planToJson(plan) };
}

export function saveCheckpoint(path: string, ex: Executor, seed: number, losses: number[]): void {
  const file: CheckpointFile = {
    format: FORMAT, step: ex.stepIndex, ...identity(ex), seed, losses,
    devices: ex.devices.map((d) => ({ params: dump(d.params), m: dump(d.adamM), v: dump(d.adamV) })),
  };
  writeAtomic(path, JSON.stringify(file), 'the checkpoint');
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** One shard: base64 of exactly `n` finite float32 values. */
function shard(s: unknown, n: number, where: string): Float32Array {
  if (typeof s !== 'string' || s.length % 4 !== 0 || !BASE64.test(s)) throw new InputError(`${where} is not base64 text`);
  const b = Buffer.from(s, 'base64');
  if (b.byteLength !== 4 * n) throw new InputError(`${where} holds ${b.byteLength / 4} values, but this plan's shard has ${n}`);
  const out = new Float32Array(n);
  new Uint8Array(out.buffer).set(b);
  for (let i = 0; i < n; i++) if (!Number.isFinite(out[i])) throw new InputError(`${where} holds a value that is not finite (${out[i]}) at index ${i}`);
  return out;
}

/** Every shard of one kind on one device: the same names as the executor's, each the right size. */
function shards(value: unknown, sizes: Map<string, number>, where: string): Map<string, Float32Array> {
  if (!isObject(value)) throw new InputError(`${where} must be an object of base64 shards`);
  for (const k of Object.keys(value)) if (!sizes.has(k)) throw new InputError(`${where} has a tensor "${k}" this plan does not have`);
  const out = new Map<string, Float32Array>();
  for (const [k, n] of sizes) {
    if (!(k in value)) throw new InputError(`${where} lacks tensor "${k}"`);
    out.set(k, shard(value[k], n, `${where}.${k}`));
  }
  return out;
}

/**
 * Load a checkpoint into a fresh executor of the same mesh, model and plan; returns its losses.
 * Everything is checked before anything is set: a refused checkpoint leaves the executor as it was.
 */
export function loadCheckpoint(path: string, ex: Executor, maxSteps = Number.MAX_SAFE_INTEGER): { seed: number; losses: number[] } {
  const v = readJsonFile(path, 'checkpoint', MAX_CHECKPOINT_BYTES);
  const where = `checkpoint ${path}`;
  if (!isObject(v) || v.format !== FORMAT) throw new InputError(`${path} is not a mesh-search checkpoint (no "format": "${FORMAT}")`);
  const file = v as Record<string, unknown>;
  const want = identity(ex);
  for (const k of ['model', 'mesh', 'plan'] as const) {
    if (JSON.stringify(file[k]) !== JSON.stringify(want[k])) {
      throw new InputError(`${where} was written for ${k} ${JSON.stringify(file[k]) ?? 'nothing'}, not ${JSON.stringify(want[k])}`);
    }
  }
  const step = file.step;
  if (typeof step !== 'number' || !Number.isSafeInteger(step) || step < 0 || step > maxSteps) {
    throw new InputError(`${where}: "step" must be an integer from 0 to ${maxSteps}, got ${JSON.stringify(step)}`);
  }
  const seed = file.seed;
  if (typeof seed !== 'number' || !Number.isSafeInteger(seed)) throw new InputError(`${where}: "seed" must be an integer, got ${JSON.stringify(seed)}`);
  const losses = file.losses;
  if (!Array.isArray(losses) || losses.length !== step) {
    throw new InputError(`${where}: "losses" must list one loss per step done (${step}), got ${Array.isArray(losses) ? `${losses.length}` : JSON.stringify(losses)}`);
  }
  losses.forEach((l, i) => {
    if (typeof l !== 'number' || !Number.isFinite(l) || l < 0) throw new InputError(`${where}: losses[${i}] must be a finite number >= 0, got ${JSON.stringify(l)}`);
  });
  const devices = file.devices;
  if (!Array.isArray(devices) || devices.length !== ex.devices.length) {
    throw new InputError(`${where}: "devices" must list the ${ex.devices.length} devices of the mesh, got ${Array.isArray(devices) ? devices.length : JSON.stringify(devices)}`);
  }
  const loaded = ex.devices.map((d, i) => {
    const s = devices[i];
    if (!isObject(s)) throw new InputError(`${where}: devices[${i}] must be an object with params, m and v`);
    const sizes = ex.shardSizes(d);
    return {
      params: shards(s.params, sizes.params, `${where}: devices[${i}].params`),
      m: shards(s.m, sizes.moments, `${where}: devices[${i}].m`),
      v: shards(s.v, sizes.moments, `${where}: devices[${i}].v`),
    };
  });
  ex.devices.forEach((d, i) => {
    for (const [k, x] of loaded[i].params) d.params.set(k, x);
    for (const [k, x] of loaded[i].m) d.adamM.set(k, x);
    for (const [k, x] of loaded[i].v) d.adamV.set(k, x);
  });
  ex.stepIndex = step;
  return { seed, losses: losses as number[] };
}
