import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { getDevice } from '../src/cost/presets.js';
import type { HardwareProfile } from '../src/cost/profile.js';
import { parseMesh, type Mesh } from '../src/mesh/mesh.js';
import { parseModelSpec, type ModelSpec } from '../src/model/spec.js';
import type { SearchResult } from '../src/search/index.js';

/** A small model of small, partly odd sizes: many layouts divide, some do not. */
export function tinySpec(): fc.Arbitrary<ModelSpec> {
  return fc.record({
    kind: fc.constantFrom('decoder', 'encoder-decoder'),
    layers: fc.constantFrom(1, 2, 3, 4),
    dModel: fc.constantFrom(4, 6, 8),
    heads: fc.constantFrom(1, 2, 3, 4),
    dKv: fc.constantFrom(2, 4),
    dFf: fc.constantFrom(4, 8, 12),
    vocab: fc.constantFrom(6, 8),
    // 256 tokens: two 128-token tiles, so a fused causal kernel runs 3/4 of its attention core (lower.ts causalShare).
    seqLen: fc.constantFrom(2, 4, 256),
    batch: fc.constantFrom(1, 2, 4, 6, 8),
    activation: fc.constantFrom('relu', 'gelu', 'swiglu'),
    dropout: fc.boolean(),
    tiedEmbeddings: fc.boolean(),
    dtype: fc.constantFrom('bfloat16', 'float32'),
    // Query heads per K/V head where heads allows: 2 makes a grouped-query model (with q_group).
    group: fc.constantFrom(1, 1, 2),
    flashAttention: fc.boolean(),
  }).map(({ group, ...r }) => parseModelSpec({ name: 'random', ...r, kvHeads: r.heads % group === 0 ? r.heads / group : r.heads }));
}

/** A small mixture-of-experts model: 2 to 4 experts on every layer or every other one, some with a shared expert. */
export function tinyMoeSpec(): fc.Arbitrary<ModelSpec> {
  return fc.record({
    layers: fc.constantFrom(2, 4),
    dModel: fc.constantFrom(4, 8),
    heads: fc.constantFrom(1, 2),
    dFfExpert: fc.constantFrom(4, 6),
    seqLen: fc.constantFrom(2, 4),
    batch: fc.constantFrom(2, 4, 8),
    experts: fc.constantFrom(2, 3, 4),
    topK: fc.constantFrom(1, 2),
    moeEvery: fc.constantFrom(1, 2),
    sharedExperts: fc.constantFrom(0, 1),
    activation: fc.constantFrom('relu', 'swiglu'),
    dtype: fc.constantFrom('bfloat16', 'float32'),
  }).map((r) => parseModelSpec({ name: 'random-moe', kind: 'decoder', dKv: 2, dFf: 8, vocab: 8, dropout: false, ...r }));
}

/** A mesh of 1 to 3 small axes. */
export function tinyMesh(maxAxes = 3): fc.Arbitrary<Mesh> {
  return fc.array(fc.constantFrom(1, 2, 2, 3, 4), { minLength: 1, maxLength: maxAxes })
    .map((sizes) => parseMesh(sizes.map((s, i) => `a${i}:${s}`).join(';')));
}

/**
 * A hardware profile whose memory makes some plans fit and others not, with links that make
 * axes interchangeable (one level) or not (small nodes, a torus whose dimensions axes of one size
 * span differently, or an axis override), some on a few shared cores.
 */
export function tinyProfile(): fc.Arbitrary<HardwareProfile> {
  return fc.record({
    base: fc.constantFrom('tpu-v2', 'a100-80g'),
    memoryLog2: fc.integer({ min: 9, max: 17 }),
    nodeDevices: fc.constantFrom(2, 4, 1e9),
    torus: fc.constantFrom(0, 0, 2, 3),
    override: fc.boolean(),
    needed: fc.boolean(),
    // Devices beyond this many share cores (the host profile's simulated mesh); 0: each has its own.
    cores: fc.constantFrom(0, 0, 0, 2, 3),
    // A pipeline as 1F1B, or one microbatch at a time through every stage (the runtime's schedule).
    sequential: fc.boolean(),
    // How much of the backward's tensor-parallel collectives hides (the forward's never does).
    tpOverlap: fc.constantFrom(0, 0.5, 1),
  }).map(({ base, memoryLog2, nodeDevices, torus, override, needed, cores, sequential, tpOverlap }) => {
    const p = getDevice(base);
    return {
      ...p,
      memoryBytes: 2 ** memoryLog2,
      levels: [{ ...p.levels[0], devices: nodeDevices, ...(torus ? { torus: { dims: torus } } : {}) }, p.levels[1]],
      axisLinks: override ? { a1: { bandwidth: 1e9, latency: 1e-5 } } : undefined,
      // Full recompute as a compiler that drops dead code runs it, or the whole layer again.
      fullRecompute: needed ? 'needed' : 'layer',
      ...(cores ? { concurrentDevices: cores } : {}),
      ...(sequential ? { pipelineSchedule: 'sequential' as const } : {}),
      tensorParallelOverlap: tpOverlap,
    };
  });
}

/** The answer of a search, without what may differ between runs (time taken, workers used). */
export function answer(r: SearchResult): unknown {
  return { best: r.best, top: r.top, pareto: r.pareto, closest: r.closest, plans: r.searched.plans, valid: r.searched.valid };
}

const bin = fileURLToPath(new URL('../bin/mesh-search.js', import.meta.url));

/** Run the built CLI (npm test builds dist/ first). */
export function runCli(args: string[], env: Record<string, string> = {}): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, ...env } });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}
