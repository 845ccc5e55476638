// bench/runtime: ratios measured side by side in one run on the simulated mesh (tiny model).
//  - a 2x2 sharded training step against the unsplit step of the same model (goal: ≤ 1.3x);
//  - the wasm backend against the cpu backend on the same step;
//  - the simulated ring allreduce's bandwidth (bytes each device sends per second).
import { loadavg } from 'node:os';
import { DEFAULT_ADAM } from '../dist/runtime/adam.js';
import { Executor, initBackend, randomBatches } from '../dist/runtime/index.js';
import { allreduce } from '../dist/runtime/ring.js';
import { lower } from '../dist/lower/lower.js';
import { makePlan } from '../dist/lower/plan.js';
import { parseMesh } from '../dist/mesh/mesh.js';
import { buildGraph } from '../dist/model/graph.js';
import { getPreset } from '../dist/model/presets.js';

const graph = buildGraph(getPreset('tiny'));
const batches = randomBatches(graph, 1);

/** Median seconds of a training step (after two warm-up steps). */
function stepSeconds(mesh, layout, steps = 7) {
  const ex = new Executor(lower(graph, parseMesh(mesh), makePlan(layout)), { seed: 1, adam: DEFAULT_ADAM, trace: false });
  ex.step(batches(0));
  ex.step(batches(1));
  const t = [];
  for (let s = 0; s < steps; s++) {
    const t0 = performance.now();
    ex.step(batches(s + 2));
    t.push((performance.now() - t0) / 1e3);
  }
  return t.sort((a, b) => a - b)[Math.floor(t.length / 2)];
}

const load = () => loadavg()[0];
const unsplitOf = {};

for (const backend of ['wasm', 'cpu']) {
  await initBackend(backend);
  // Interleave the two so that machine noise hits both alike.
  const unsplit = [], sharded = [];
  for (let r = 0; r < 3; r++) {
    unsplit.push(stepSeconds('1', ''));
    sharded.push(stepSeconds('2x2', 'batch:rows;heads:cols;d_ff:cols;vocab:cols'));
  }
  const med = (a) => a.sort((x, y) => x - y)[1];
  unsplitOf[backend] = med(unsplit);
  console.log(JSON.stringify({ bench: 'runtime', case: `2x2 sharded step vs unsplit step, ${backend}`, unsplitSeconds: med(unsplit), shardedSeconds: med(sharded), ratio: +(med(sharded) / med(unsplit)).toFixed(2), goal: 1.3, loadAverage: load() }));
}
console.log(JSON.stringify({ bench: 'runtime', case: 'wasm vs cpu backend, unsplit tiny step', wasmSeconds: unsplitOf.wasm, cpuSeconds: unsplitOf.cpu, speedupOfWasm: +(unsplitOf.cpu / unsplitOf.wasm).toFixed(1) }));

for (const n of [2, 4, 8]) {
  const len = 4 << 20; // 16 MiB of floats per device
  const bufs = Array.from({ length: n }, (_, i) => new Float32Array(len).fill(i));
  allreduce(bufs);
  const t0 = performance.now();
  const reps = 3;
  let sent = 0;
  for (let r = 0; r < reps; r++) sent += allreduce(bufs).sent[0];
  const s = (performance.now() - t0) / 1e3;
  console.log(JSON.stringify({ bench: 'runtime', case: `simulated ring allreduce, ${n} devices, 16 MiB each`, sentPerDeviceGBps: +(sent / s / 1e9).toFixed(3), loadAverage: load() }));
}
