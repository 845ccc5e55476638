// bench/runtime: ratios measured side by side in one run, on the simulated mesh's worker threads,
// with the `small` model (compute, not per-kernel overhead, fills its step):
//  - a spin loop on 1 thread vs on 2 threads at once: the machine's own 2-thread ceiling;
//  - a 2-device data-parallel step vs the unsplit step on one device (goal: ≥ 1.6x faster);
//  - a 2x2 sharded step vs the unsplit step, same cores (goal: ≤ 1.3x the unsplit time).
// Rounds interleave the cases so that other processes' load hits them alike; each case's time is
// its least step over all rounds (the median is printed beside each ratio).
// The goals are measured as `run` runs (node --single-threaded-gc: src/runtime/gc.ts); the same
// cases under V8's default parallel GC follow as a control, in a second process.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { availableParallelism, loadavg } from 'node:os';
import { Worker } from 'node:worker_threads';
import { getDevice } from '../dist/cost/presets.js';
import { makePlan } from '../dist/lower/plan.js';
import { parseMesh } from '../dist/mesh/mesh.js';
import { getPreset } from '../dist/model/presets.js';
import { runPlan } from '../dist/runtime/index.js';

if (!process.env.BENCH_RUNTIME_GC) {
  let failed = false;
  for (const gc of ['single-threaded', 'parallel']) {
    const flags = gc === 'single-threaded' ? ['--single-threaded-gc'] : [];
    const r = spawnSync(process.execPath, [...flags, fileURLToPath(import.meta.url)], { stdio: 'inherit', env: { ...process.env, BENCH_RUNTIME_GC: gc } });
    failed ||= r.status !== 0;
  }
  process.exit(failed ? 1 : 0);
}
const gc = process.env.BENCH_RUNTIME_GC;
const control = gc === 'parallel' ? ' (control: V8 default parallel GC, not how run runs)' : '';

const model = process.env.BENCH_MODEL ?? 'small';
const spec = getPreset(model);
const device = getDevice('tpu-v2');
const rounds = Number(process.env.BENCH_ROUNDS ?? 2);
const med = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const load = () => +loadavg()[0].toFixed(2);

/** Seconds of each step, the first (warm-up: kernels compile, buffers allocate) left out. */
async function step(mesh, layout, steps = 3) {
  const r = await runPlan({ spec, mesh: parseMesh(mesh), plan: makePlan(layout), steps: steps + 1, device, backend: 'wasm' });
  return r.steps.slice(1).map((s) => s.seconds);
}

const SPIN = `const { parentPort } = require('node:worker_threads');
parentPort.on('message', (n) => { const t0 = performance.now(); let x = 0; for (let i = 0; i < n; i++) x = (x * 1664525 + 1013904223) | 0; parentPort.postMessage([performance.now() - t0, x]); });`;

/** Seconds for `threads` threads to each spin n iterations at once. */
async function spin(threads, n = 3e8) {
  const ws = Array.from({ length: threads }, () => new Worker(SPIN, { eval: true }));
  const t0 = performance.now();
  await Promise.all(ws.map((w) => new Promise((res) => { w.once('message', res); w.postMessage(n); })));
  const s = (performance.now() - t0) / 1e3;
  await Promise.all(ws.map((w) => w.terminate()));
  return s;
}

const res = { spin1: [], spin2: [], unsplit: [], dp: [], sharded: [] };
for (let r = 0; r < rounds; r++) {
  res.spin1.push(await spin(1));
  res.spin2.push(await spin(2));
  res.unsplit.push(...await step('1', ''));
  res.dp.push(...await step('2', 'batch:x'));
  res.sharded.push(...await step('2x2', 'batch:rows;heads:cols;d_ff:cols;vocab:cols'));
  process.stderr.write(`round ${r + 1}/${rounds} done, load ${load()}\n`);
}
// Each case's least step over every round (as `run` and `tune` read a trace: other processes only
// ever add time, so the least is the closest to this code on an idle machine), and the median beside it.
const m = Object.fromEntries(Object.entries(res).map(([k, v]) => [k, Math.min(...v)]));
const md = Object.fromEntries(Object.entries(res).map(([k, v]) => [k, med(v)]));
const ceiling = (2 * m.spin1) / m.spin2;
if (!control) console.log(JSON.stringify({ bench: 'runtime', case: 'spin loop: 2 threads at once vs 1 (the machine\'s 2-thread ceiling)', cores: availableParallelism(), oneThreadSeconds: +m.spin1.toFixed(3), twoThreadsSeconds: +m.spin2.toFixed(3), ceiling: +ceiling.toFixed(2), loadAverage: load() }));
console.log(JSON.stringify({ bench: 'runtime', case: `${model}: 2-device data-parallel step vs unsplit step on one device${control}`, gc, unsplitSeconds: +m.unsplit.toFixed(3), dataParallelSeconds: +m.dp.toFixed(3), speedup: +(m.unsplit / m.dp).toFixed(2), medianSpeedup: +(md.unsplit / md.dp).toFixed(2), goal: 1.6, ofCeiling: +((m.unsplit / m.dp) / ceiling).toFixed(2), loadAverage: load() }));
console.log(JSON.stringify({ bench: 'runtime', case: `${model}: 2x2 sharded step (batch:rows;heads:cols;d_ff:cols;vocab:cols) vs unsplit step${control}`, gc, unsplitSeconds: +m.unsplit.toFixed(3), shardedSeconds: +m.sharded.toFixed(3), ratio: +(m.sharded / m.unsplit).toFixed(2), medianRatio: +(md.sharded / md.unsplit).toFixed(2), goal: 1.3, loadAverage: load() }));
