import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { InputError } from '../errors.js';
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

const enc = (x: Float32Array) => Buffer.from(x.buffer, x.byteOffset, x.byteLength).toString('base64');
function dec(s: string): Float32Array {
  const b = Buffer.from(s, 'base64');
  const out = new Float32Array(b.byteLength / 4);
  new Uint8Array(out.buffer).set(b);
  return out;
}
const dump = (m: Map<string, Float32Array>) => Object.fromEntries([...m].map(([k, v]) => [k, enc(v)]));

function identity(ex: Executor) {
  const { graph, mesh, plan } = ex.program;
  return { model: graph.spec, mesh: formatMesh(mesh), plan: planToJson(plan) };
}

export function saveCheckpoint(path: string, ex: Executor, seed: number, losses: number[]): void {
  const file: CheckpointFile = {
    format: 'mesh-search-checkpoint/1', step: ex.stepIndex, ...identity(ex), seed, losses,
    devices: ex.devices.map((d) => ({ params: dump(d.params), m: dump(d.adamM), v: dump(d.adamV) })),
  };
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify(file));
  renameSync(tmp, path);
}

/** Load a checkpoint into a fresh executor of the same mesh, model and plan; returns its losses. */
export function loadCheckpoint(path: string, ex: Executor): { seed: number; losses: number[] } {
  let file: CheckpointFile;
  try {
    file = JSON.parse(readFileSync(path, 'utf8')) as CheckpointFile;
  } catch (e) {
    throw new InputError(`cannot read checkpoint ${path}: ${(e as Error).message.split('\n')[0]}`);
  }
  if (file.format !== 'mesh-search-checkpoint/1') throw new InputError(`${path} is not a mesh-search checkpoint`);
  const want = identity(ex);
  for (const k of ['model', 'mesh', 'plan'] as const) {
    if (JSON.stringify(file[k]) !== JSON.stringify(want[k])) {
      throw new InputError(`checkpoint ${path} was written for ${k} ${JSON.stringify(file[k])}, not ${JSON.stringify(want[k])}`);
    }
  }
  ex.devices.forEach((d, i) => {
    const s = file.devices[i];
    for (const [k, v] of Object.entries(s.params)) d.params.set(k, dec(v));
    for (const [k, v] of Object.entries(s.m)) d.adamM.set(k, dec(v));
    for (const [k, v] of Object.entries(s.v)) d.adamV.set(k, dec(v));
  });
  ex.stepIndex = file.step;
  return { seed: file.seed, losses: file.losses };
}
