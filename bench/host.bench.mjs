// bench/host: measures the machine the simulated mesh runs on, through the runtime's own code
// paths, and writes data/host-measured.json, which the `host` hardware profile is built from
// (src/cost/host.ts; every number there cites this bench):
//  - cores: os.availableParallelism();
//  - per-kernel overhead and memory throughput: an elementwise add through the runtime's kernel
//    wrapper (tensor in, kernel, data back) at sizes from 1 to 2^20 floats: the one-float add is
//    the overhead, the largest (overhead off) the bandwidth (bytes: 2 reads + 1 write of floats);
//  - matmul throughput: the runtime's einsum at the GEMM shapes of the `small` model (the median
//    rate of those of 1e8 FLOPs or more), and the 64³ GEMM's time beyond its FLOPs as overhead;
//  - softmax and layer norm: the runtime's own forward of each op (src/runtime/ops.ts: two passes,
//    several kernels, the row statistics read back) over the `small` model's tensors, in seconds
//    per element beyond one kernel's overhead (src/cost/host.ts turns them into the efficiency the
//    cost model's one-kernel pricing needs to match them);
//  - the activation: the runtime's GELU forward and gradient over a [batch, length, d_ff] shard,
//    seconds per element beyond one kernel's overhead;
//  - the model's own einsums: every einsum of the small model, forward and both backward forms,
//    through the runtime's einsum at a 2-device data-parallel shard's shapes (FLOPs over seconds);
//  - shared-memory bandwidth and latency: two worker threads passing buffers through the runtime's
//    SharedExchange (SharedArrayBuffer + Atomics), ping-pong, one way: 1 float gives the latency,
//    4 MiB (latency off) the bandwidth.
// Every time is the least of its repetitions: other processes on the machine only ever add time.
// Usage: node bench/host.bench.mjs [--write]   (--write replaces data/host-measured.json)
import { writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { initBackend, tf } from '../dist/runtime/backend.js';
import { einsum, gelu, geluGrad, MASKED, run } from '../dist/runtime/kernels.js';
import { backward, forward } from '../dist/runtime/ops.js';
import { exchangeMemory, SharedExchange } from '../dist/runtime/exchange.js';
import { buildGraph } from '../dist/model/graph.js';
import { getPreset } from '../dist/model/presets.js';

const backendChoice = process.env.BENCH_BACKEND ?? 'wasm';
const backend = await initBackend(backendChoice);
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];

/** Least seconds of f over reps, after warm-up: other processes only ever add time. */
function time(f, reps) {
  for (let i = 0; i < 3; i++) f();
  const t = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    f();
    t.push((performance.now() - t0) / 1e3);
  }
  return Math.min(...t);
}

// Elementwise: the runtime's `run` wrapper around one add.
const ew = { bytes: [], seconds: [] };
for (const n of [1, 256, 4096, 65536, 262144, 1048576]) {
  const a = { dims: ['d_model'], shape: [n], data: new Float32Array(n).fill(1.5) };
  const s = time(() => run(['d_model'], () => tf.add(tf.tensor(a.data, [n]), tf.tensor(a.data, [n]))), n > 65536 ? 15 : 100);
  ew.bytes.push(12 * n);
  ew.seconds.push(s);
}
// Overhead: the one-float add. Bandwidth: the largest add, its overhead taken off.
const tiny = ew.seconds[0];
const ewBandwidth = ew.bytes.at(-1) / (ew.seconds.at(-1) - tiny);

// Matmul: einsum at the small model's shapes (tokens × d_model × d_ff and its transposes), and smaller.
const mm = { flops: [], seconds: [] };
for (const [m, k, n] of [[64, 64, 64], [256, 256, 256], [2048, 256, 256], [2048, 256, 1024], [2048, 1024, 256]]) {
  const A = tf.randomUniform([m, k]), B = tf.randomUniform([k, n]);
  const s = time(() => run(['batch', 'd_ff'], () => einsum(A, ['batch', 'd_model'], B, ['d_model', 'd_ff'], ['batch', 'd_ff'])), m * n * k > 1e8 ? 5 : 30);
  mm.flops.push(2 * m * k * n);
  mm.seconds.push(s);
  A.dispose(); B.dispose();
}
// Rate: the median of the shapes of 1e8 FLOPs or more. Overhead: what the 64³ GEMM takes beyond its FLOPs.
const rates = mm.flops.map((f, i) => f / mm.seconds[i]);
const mmRate = median(rates.filter((_, i) => mm.flops[i] >= 1e8));
const bestRate = Math.max(...rates);
const mmOverhead = Math.max(0, mm.seconds[0] - mm.flops[0] / mmRate);

// GEMM shape: equal FLOPs with one side 2x to 8x narrower (what a tensor-parallel split does to
// a GEMM). Printed, not written: the host profile has no GEMM curve, as the rate is flat here to
// 64 wide. The physics fit's curve (src/calibrate/physics.ts, prior gemmHalfSize 64) still fits
// the simulated mesh's plans better than one started flat: on the same 20 measured plans of
// bench/calibrate (2026-12-06), 10.4% MAPE and tau 0.80 against 12.4% and 0.75, so it stands in
// for per-shape costs the model has no term for.
const shape = [];
for (const [m, k, n] of [[1024, 256, 256], [2048, 256, 128], [2048, 128, 256], [4096, 256, 64], [4096, 64, 256], [8192, 256, 32]]) {
  const A = tf.randomUniform([m, k]), B = tf.randomUniform([k, n]);
  const s = time(() => run(['batch', 'd_ff'], () => einsum(A, ['batch', 'd_model'], B, ['d_model', 'd_ff'], ['batch', 'd_ff'])), 15);
  shape.push({ m, k, n, flopsPerSecond: Math.round((2 * m * k * n) / s) });
  A.dispose(); B.dispose();
}
console.log(JSON.stringify({ bench: 'host', case: 'GEMM rate at equal FLOPs, narrower sides relative to 1024x256x256', shapes: shape.map((x) => ({ mkn: `${x.m}x${x.k}x${x.n}`, relative: +(x.flopsPerSecond / shape[0].flopsPerSecond).toFixed(3) })) }));

/**
 * One op's forward and backward through the runtime's own generators (src/runtime/ops.ts) on one
 * device that holds every dimension whole: seconds of each, the least of reps (the backward only
 * when asked). The backward is handed the forward's output as its upstream gradient (any values;
 * the kernels do not branch on them).
 */
function opPhases(kind, dims, shape, inputs, { reps = 10, backward: withBackward = true } = {}) {
  const tensors = new Map(Object.entries(inputs));
  const first = Object.keys(inputs)[0];
  const spec = { name: kind, kind, dim: dims.at(-1), inputs: Object.keys(inputs), output: 'y', saves: [] };
  let dy = null;
  const ctx = (rec) => ({
    rec, spec, get: (id) => tensors.get(id), set: (id, x) => tensors.set(id, x), offset: () => 0,
    globalSize: (d) => shape[dims.indexOf(d)], axes: () => [], axesSize: () => 1, partialMask: () => 0,
    gradOut: () => dy ?? (dy = Float32Array.from(tensors.get('y').data.length > 1 ? tensors.get('y').data : [1])),
    contribute: () => {}, tokens: shape.slice(0, -1).reduce((a, b) => a * b, 1), topK: 1,
  });
  const drain = (g) => { for (let r = g.next(); !r.done; r = g.next()); };
  const fwd = ctx({ collectives: [], output: { dims: kind === 'xent' ? [] : dims } });
  const bwd = ctx({ collectives: [], output: { dims }, wrt: first, partial: [] });
  return {
    elements: shape.reduce((a, b) => a * b, 1), forward: time(() => drain(forward(fwd)), reps),
    ...(withBackward ? { backward: time(() => drain(backward(bwd)), reps) } : {}),
  };
}
/** An op's forward alone over x (sin-filled) and the given extra inputs: elements and seconds. */
function opSeconds(kind, dims, shape, extra = {}) {
  const n = shape.reduce((a, b) => a * b, 1);
  const m = opPhases(kind, dims, shape, { x: { dims, shape, data: Float32Array.from({ length: n }, (_, i) => Math.sin(i)) }, ...extra }, { reps: 15, backward: false });
  return { elements: m.elements, seconds: m.forward };
}
// Softmax and layer norm through the runtime's forward of the op: a device's attention scores of
// the small model (4 sequences x 4 heads x 128 x 128 positions) and its residual stream (512 x 256).
const sm = opSeconds('softmax', ['batch', 'heads', 'length', 'memory_length'], [4, 4, 128, 128]);

// The attention scores of one device of a 2x2 plan that splits one of batch, heads or length in
// two (the small model: 16 sequences x 4 heads x 128 x 128 positions, halved), as tune runs them:
// causally masked, as the decoder's are. The masked half's exponentials take the slow path of
// exp (about 29 ns an element where unmasked scores take 17, 2026-12-07), so the mask matters.
const smDims = ['batch', 'heads', 'length', 'memory_length'], smShape = [8, 4, 128, 128];
const smN = smShape.reduce((a, b) => a * b, 1);
const scores = Float32Array.from({ length: smN }, (_, i) => ((i & 127) > ((i >> 7) & 127) ? MASKED : 0) + Math.sin(i));
const softmaxPhases = opPhases('softmax', smDims, smShape, { x: { dims: smDims, shape: smShape, data: scores } });
// The loss over the small model's logits on a device holding half the tokens (8 x 128 x 256 bytes of vocabulary).
const xDims = ['batch', 'length', 'vocab'], xShape = [8, 128, 256];
const xN = xShape.reduce((a, b) => a * b, 1);
const xentPhases = opPhases('xent', xDims, xShape, {
  logits: { dims: xDims, shape: xShape, data: Float32Array.from({ length: xN }, (_, i) => Math.sin(i)) },
  targets: { dims: xDims.slice(0, 2), shape: xShape.slice(0, 2), data: Float32Array.from({ length: xN / 256 }, (_, i) => (i * 37) % 256) },
});
const ln = opSeconds('layernorm', ['batch', 'd_model'], [512, 256], {
  scale: { dims: ['d_model'], shape: [256], data: new Float32Array(256).fill(1) },
  bias: { dims: ['d_model'], shape: [256], data: new Float32Array(256) },
});
const perElement = (m) => Math.max(0, m.seconds - tiny) / m.elements;

// The activation, GELU as the runtime runs it (kernels.ts: about 7 tfjs kernels forward, the
// gradient dy · geluGrad about 12) over a [batch, length, d_ff] shard of the small model: seconds
// per element beyond one kernel's overhead, forward and backward (src/cost/host.ts elementSeconds).
const actShape = [8, 128, 1024], actN = actShape.reduce((a, b) => a * b, 1), actDims = ['batch', 'length', 'd_ff'];
const actX = Float32Array.from({ length: actN }, (_, i) => Math.sin(i)), actDy = Float32Array.from({ length: actN }, (_, i) => Math.cos(i));
const actForward = { elements: actN, seconds: time(() => run(actDims, () => gelu(tf.tensor(actX, actShape))), 10) };
const actBackward = { elements: actN, seconds: time(() => run(actDims, () => tf.mul(tf.tensor(actDy, actShape), geluGrad(tf.tensor(actX, actShape)))), 10) };

// The model's own einsums: every einsum of the small model (projections, attention core, logits),
// forward and the two backward forms the runtime runs (src/runtime/ops.ts: dy against the other
// operand), at the local shapes of a 2-device data-parallel shard (8 sequences), through the
// runtime's einsum (operands transposed to [batch, free, contracted], heads as a loop of 2-D
// products). Their FLOPs over their time is the rate a step's matmuls reach, below the plain 2-D
// GEMMs' above: src/cost/host.ts takes the ratio as the matmul efficiency.
const smallGraph = buildGraph(getPreset('small'));
const localSize = (d) => (d === 'batch' ? smallGraph.dimSizes.batch / 2 : smallGraph.dimSizes[d]);
let einsumFlops = 0, einsumSeconds = 0;
for (const b of smallGraph.blocks) {
  for (const o of b.ops.filter((x) => x.kind === 'einsum')) {
    const [ad, bd, od] = [o.inputs[0], o.inputs[1], o.output].map((id) => smallGraph.tensors.get(id).dims);
    const flops = 2 * [...new Set([...ad, ...bd, ...od])].reduce((p, d) => p * localSize(d), 1);
    const [A, B, DY] = [ad, bd, od].map((dims) => tf.randomUniform(dims.map(localSize)));
    for (const [x, xd, y, yd, zd] of [[A, ad, B, bd, od], [DY, od, B, bd, ad], [DY, od, A, ad, bd]]) {
      einsumSeconds += (b.repeat ?? 1) * time(() => run(zd, () => einsum(x, xd, y, yd, zd, true)), 5);
      einsumFlops += (b.repeat ?? 1) * flops;
    }
    A.dispose(); B.dispose(); DY.dispose();
  }
}
const modelEinsumFlops = einsumFlops / einsumSeconds;

// Shared memory: thread 0 (here) posts, thread 1 (a worker) reads and posts back; round trips.
const exchangeUrl = new URL('../dist/runtime/exchange.js', import.meta.url).href;
const sizes = [1, 1024, 65536, 262144, 1048576];
const mem = exchangeMemory(2, Math.max(...sizes), [0, 1]);
const echo = new Worker(`
  const { parentPort, workerData } = require('node:worker_threads');
  import(workerData.url).then(({ SharedExchange }) => {
    const ex = new SharedExchange(workerData.mem, 1);
    parentPort.on('message', ({ n, reps, tag0 }) => {
      for (let r = 0; r < reps; r++) { const x = ex.read(0, tag0 + 2 * r); ex.post(1, tag0 + 2 * r + 1, [0, 1], x); }
      parentPort.postMessage('done');
    });
    parentPort.postMessage('ready');
  });`, { eval: true, workerData: { url: exchangeUrl, mem } });
await new Promise((res) => echo.once('message', res));
const here = new SharedExchange(mem, 0);
const sh = { bytes: [], seconds: [] };
let tag = 1;
for (const n of sizes) {
  const x = { dims: [], shape: [n], data: new Float32Array(n).fill(2) };
  const reps = n > 65536 ? 20 : 200;
  const done = new Promise((res) => echo.once('message', res));
  echo.postMessage({ n, reps, tag0: tag });
  const t = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    here.post(0, tag + 2 * r, [0, 1], x);
    here.read(1, tag + 2 * r + 1);
    t.push((performance.now() - t0) / 1e3 / 2); // one way
  }
  await done;
  tag += 2 * reps;
  sh.bytes.push(4 * n);
  sh.seconds.push(Math.min(...t.slice(3)));
}
await echo.terminate();
const shLatency = sh.seconds[0];
const shBandwidth = sh.bytes.at(-1) / (sh.seconds.at(-1) - shLatency);

// Collectives as the simulated mesh runs them (src/runtime/executor.ts collective over
// SharedExchange, the sums of src/runtime/ring.ts): two threads of two devices each, both at once,
// as a 2x2 mesh runs on two cores, on 1 MiB buffers (a small-model activation shard). `within`: each
// thread's two devices allreduce together (no shared memory); `across`: each device with its peer on
// the other thread (post, read, sum); `four`: all four devices. Least seconds of each thread, then
// the mean of the two. src/cost/host.ts takes the thread level's rate from `within` and the shared-
// memory level's from `across`; `four` checks the pricing of a group that spans both (test/host).
const ringUrl = new URL('../dist/runtime/ring.js', import.meta.url).href;
const collFloats = 262144;
const collMem = exchangeMemory(4, collFloats, [0, 0, 1, 1]);
const collSync = new SharedArrayBuffer(8);
const collWorkers = [0, 1].map((thread) => new Worker(`
  const { parentPort, workerData } = require('node:worker_threads');
  Promise.all([import(workerData.exchangeUrl), import(workerData.ringUrl)]).then(([{ SharedExchange }, { allreduce }]) => {
    const { mem, thread, sync } = workerData;
    const ex = new SharedExchange(mem, thread);
    const gate = new Int32Array(sync);
    const own = thread === 0 ? [0, 1] : [2, 3];
    const peerOf = (d) => (d + 2) % 4;
    parentPort.on('message', ({ cfg, reps, tag0, n }) => {
      const bufs = own.map((d) => ({ dims: ['d_model'], shape: [n], data: new Float32Array(n).fill(d + 1) }));
      const seconds = [];
      for (let r = 0; r < reps; r++) {
        // Both threads start each repetition together.
        const target = 2 * (tag0 + r);
        Atomics.add(gate, 0, 1);
        Atomics.notify(gate, 0);
        for (let v = Atomics.load(gate, 0); v < target; v = Atomics.load(gate, 0)) Atomics.wait(gate, 0, v, 50);
        const tag = tag0 + r, t0 = performance.now();
        if (cfg === 'within') allreduce(bufs.map((b) => b.data));
        else if (cfg === 'across') {
          own.forEach((d, i) => ex.post(d, tag, [Math.min(d, peerOf(d)), Math.max(d, peerOf(d))], bufs[i]));
          own.forEach((d, i) => {
            const x = ex.read(peerOf(d), tag).data;
            allreduce(d < 2 ? [bufs[i].data, x] : [x, bufs[i].data], 'sum', (m) => m === (d < 2 ? 0 : 1));
          });
        } else {
          own.forEach((d, i) => ex.post(d, tag, [0, 1, 2, 3], bufs[i]));
          const got = own.map((d) => ex.read(peerOf(d), tag).data);
          const all = thread === 0 ? [bufs[0].data, bufs[1].data, ...got] : [...got, bufs[0].data, bufs[1].data];
          allreduce(all, 'sum', (m) => (thread === 0 ? m < 2 : m >= 2));
        }
        seconds.push((performance.now() - t0) / 1e3);
      }
      parentPort.postMessage(Math.min(...seconds.slice(3)));
    });
    parentPort.postMessage('ready');
  });`, { eval: true, workerData: { exchangeUrl, ringUrl, mem: collMem, thread, sync: collSync } }));
await Promise.all(collWorkers.map((w) => new Promise((res) => w.once('message', res))));
const collectiveSeconds = {};
let collTag = 1;
for (const cfg of ['within', 'across', 'four']) {
  const reps = 40;
  const least = await Promise.all(collWorkers.map((w) => new Promise((res) => { w.once('message', res); w.postMessage({ cfg, reps, tag0: collTag, n: collFloats }); })));
  collTag += reps;
  collectiveSeconds[cfg] = (least[0] + least[1]) / 2;
}
await Promise.all(collWorkers.map((w) => w.terminate()));
const collectives = { date: new Date().toISOString(), loadAverage: +loadavg()[0].toFixed(2), runs: 1, floats: collFloats, withinSeconds: collectiveSeconds.within, acrossSeconds: collectiveSeconds.across, fourSeconds: collectiveSeconds.four };

const measured = {
  bench: 'bench/host.bench.mjs',
  date: new Date().toISOString(),
  backend,
  cores: availableParallelism(),
  memoryBytes: totalmem(),
  loadAverage: +loadavg()[0].toFixed(2),
  kernelOverheadSeconds: tiny,
  memoryBandwidth: ewBandwidth,
  matmulFlops: mmRate,
  matmulBestFlops: bestRate,
  matmulOverheadSeconds: mmOverhead,
  sharedMemoryBandwidth: shBandwidth,
  sharedMemoryLatency: shLatency,
  collectives,
  ops: { date: new Date().toISOString(), loadAverage: +loadavg()[0].toFixed(2), runs: 1, softmaxSecondsPerElement: perElement(sm), layernormSecondsPerElement: perElement(ln),
    modelEinsum: { date: new Date().toISOString(), loadAverage: +loadavg()[0].toFixed(2), runs: 1, flopsPerSecond: modelEinsumFlops },
    act: { date: new Date().toISOString(), loadAverage: +loadavg()[0].toFixed(2), runs: 1, forwardSecondsPerElement: perElement(actForward), backwardSecondsPerElement: perElement(actBackward) },
    phases: Object.fromEntries([['softmax', softmaxPhases], ['xent', xentPhases]].map(([k, m]) => [k, {
      date: new Date().toISOString(), loadAverage: +loadavg()[0].toFixed(2), runs: 1, shape: k === 'softmax' ? smShape : xShape,
      forwardSecondsPerElement: perElement({ elements: m.elements, seconds: m.forward }), backwardSecondsPerElement: perElement({ elements: m.elements, seconds: m.backward }),
    }])) },
  points: { elementwise: ew, matmul: mm, sharedMemory: sh, softmax: sm, layernorm: ln },
};
console.log(JSON.stringify({ ...measured, bench: 'host', points: undefined }));
if (process.argv.includes('--write')) {
  const out = fileURLToPath(new URL('../data/host-measured.json', import.meta.url));
  writeFileSync(out, JSON.stringify(measured, null, 2) + '\n');
  process.stderr.write(`wrote ${out}\n`);
}
