// bench/estimate: plans priced per second for transformer-5b on 16x32 (tpu-v2), one thread.
// Prints JSON lines; the ratio compares the fast pricer with lower()+price() on the same plans,
// measured side by side in this run.
import { getDevice } from '../dist/cost/presets.js';
import { price } from '../dist/cost/price.js';
import { makePricer } from '../dist/cost/pricer.js';
import { compileLayout, layoutProblem } from '../dist/layout/layout.js';
import { lower } from '../dist/lower/lower.js';
import { makePlan } from '../dist/lower/plan.js';
import { parseMesh } from '../dist/mesh/mesh.js';
import { buildGraph } from '../dist/model/graph.js';
import { getPreset } from '../dist/model/presets.js';

const graph = buildGraph(getPreset('transformer-5b'));
const mesh = parseMesh('16x32');
const device = getDevice('tpu-v2');

// Valid layouts over the dimensions Mesh-TF's paper splits, plus d_model and length.
const dims = ['batch', 'length', 'd_model', 'heads', 'd_ff', 'vocab'];
const layouts = [];
for (let code = 0; code < 4 ** dims.length && layouts.length < 400; code++) {
  const m = new Map();
  let c = code;
  for (const d of dims) {
    const mask = c % 4;
    c = Math.floor(c / 4);
    const axes = mesh.axes.filter((_, i) => mask & (1 << i)).map((a) => a.name);
    if (axes.length) m.set(d, axes);
  }
  if (layoutProblem(graph, mesh, compileLayout(m, mesh)) === null) layouts.push(m);
}
const strategies = [];
for (const zero of [0, 1, 2, 3]) for (const recompute of ['none', 'selective', 'full']) for (const microbatches of [1, 2, 4, 8]) strategies.push({ zero, recompute, microbatches });

/** Steady-state rate: one second of warm-up (V8 tiers the pricer's large walk up late), then timed. */
function rate(fn, plans, seconds = 1.5) {
  const w0 = performance.now();
  while (performance.now() - w0 < 1000) fn(plans);
  const t0 = performance.now();
  let n = 0;
  while (performance.now() - t0 < seconds * 1000) n += fn(plans);
  return n / ((performance.now() - t0) / 1000);
}

// Whole space: every strategy of every layout, as a search walks it (fresh pricer each pass).
const grid = layouts.flatMap((l) => strategies.map((s) => makePlan(l, s)));
const fastGrid = rate((plans) => {
  const pr = makePricer(graph, mesh, device);
  for (const p of plans) pr(p);
  return plans.length;
}, grid);
// Cold: one plan per layout, so no walk is reused.
const cold = layouts.map((l) => makePlan(l));
const fastCold = rate((plans) => {
  const pr = makePricer(graph, mesh, device);
  for (const p of plans) pr(p);
  return plans.length;
}, cold);
const slow = rate((plans) => {
  let n = 0;
  for (const p of plans.slice(0, 40)) {
    try { price(lower(graph, mesh, p), device); } catch { /* invalid microbatch count */ }
    n++;
  }
  return n;
}, grid, 1.5);

console.log(JSON.stringify({ bench: 'estimate', case: 'transformer-5b 16x32 whole strategy grid per layout', layouts: layouts.length, plans: grid.length, plansPerSecond: Math.round(fastGrid), goal: 200000 }));
console.log(JSON.stringify({ bench: 'estimate', case: 'transformer-5b 16x32 one plan per layout (no reuse)', plansPerSecond: Math.round(fastCold) }));
console.log(JSON.stringify({ bench: 'estimate', case: 'lower()+price() building the whole program', plansPerSecond: Math.round(slow), speedupGrid: +(fastGrid / slow).toFixed(1), speedupCold: +(fastCold / slow).toFixed(1) }));
