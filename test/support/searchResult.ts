import type { Estimate } from '../../src/cost/estimate.js';
import { estimatePlan } from '../../src/cost/estimatePlan.js';
import { getDevice } from '../../src/cost/presets.js';
import type { SearchResult } from '../../src/export/report/report.js';
import { makePlan } from '../../src/lower/plan.js';
import { parseMesh } from '../../src/mesh/mesh.js';
import { buildGraph } from '../../src/model/graph.js';
import { getPreset } from '../../src/model/presets.js';

/** Plans of the paper's 5B model on its 16x32 pod, priced by the cost model. */
const PLANS: [string, { zero?: number; recompute?: string; microbatches?: number }][] = [
  ['batch:rows;d_ff:cols;heads:cols;vocab:cols', {}],
  ['batch:rows;d_ff:cols;heads:cols;vocab:cols', { zero: 1 }],
  ['batch:rows;d_ff:cols;heads:cols;vocab:cols', { zero: 3 }],
  ['batch:rows;d_ff:cols;heads:cols;vocab:cols', { recompute: 'full' }],
  ['batch:rows;d_ff:cols;heads:cols;vocab:cols', { microbatches: 4 }],
  ['batch:rows;d_ff:cols;heads:cols;vocab:cols', { zero: 1, recompute: 'selective', microbatches: 2 }],
  ['batch:rows;d_ff:cols;heads:cols;vocab:cols', { zero: 3, recompute: 'full', microbatches: 4 }],
  ['batch:rows;d_ff:cols;heads:cols;vocab:cols', { zero: 3, recompute: 'selective', microbatches: 2 }],
  ['batch:rows;d_ff:cols;heads:cols', {}],
  ['batch:cols;d_ff:rows;heads:rows;vocab:rows', {}],
  ['batch:rows;d_ff:rows+cols;heads:cols;vocab:cols', {}],
];

/** A search result as DESIGN.md prints it, assembled from estimates: top by step time, Pareto front of (memory, step). */
export function searchResultFixture(): SearchResult {
  const graph = buildGraph(getPreset('transformer-5b'));
  const mesh = parseMesh('16x32');
  const profile = getDevice('tpu-v2');
  const all: Estimate[] = [];
  for (const [layout, o] of PLANS) {
    try {
      all.push(estimatePlan(graph, mesh, makePlan(layout, o), profile));
    } catch {
      // A layout with two dimensions on one axis is not a plan: the search never offers it.
    }
  }
  const valid = all.filter((e) => e.valid);
  const byStep = (a: Estimate, b: Estimate) => a.time.step - b.time.step || a.memory.total - b.memory.total;
  const top = [...valid].sort(byStep);
  const pareto = valid.filter((e) => !valid.some((o) => o !== e
    && o.time.step <= e.time.step && o.memory.total <= e.memory.total
    && (o.time.step < e.time.step || o.memory.total < e.memory.total)))
    .sort((a, b) => a.memory.total - b.memory.total);
  const feasible = valid.filter((e) => e.feasible).sort(byStep);
  return {
    best: feasible[0] ?? null, top: top.slice(0, 5), pareto,
    searched: { plans: PLANS.length, valid: valid.length, feasible: feasible.length, pruned: 0, seconds: 0.1, workers: 0, sequenceParallel: 0 },
  };
}
