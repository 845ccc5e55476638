import type { TopLevelSpec } from 'vega-lite';
import type { Estimate } from '../../cost/estimate.js';
import { axesOf, parseLayout } from '../../layout/layout.js';
import { deviceCoords, makeMesh } from '../../mesh/mesh.js';
import { buildGraph, weightBlock, type DimName } from '../../model/graph.js';
import type { ModelSpec } from '../../model/spec.js';
import { planKey, type SearchResult } from './result.js';

const GiB = 2 ** 30;

/** Every distinct plan of the result, flagged when on the Pareto front or best. */
export function planRows(result: SearchResult): { e: Estimate; pareto: boolean; best: boolean }[] {
  const pareto = new Set(result.pareto.map(planKey));
  const best = result.best ? planKey(result.best) : null;
  const rows = new Map<string, { e: Estimate; pareto: boolean; best: boolean }>();
  for (const e of [...(result.best ? [result.best] : []), ...result.pareto, ...result.top]) {
    const k = planKey(e);
    if (!rows.has(k)) rows.set(k, { e, pareto: pareto.has(k), best: k === best });
  }
  return [...rows.values()];
}

/** The strategy first: layouts are long and labels get cut at the end. */
const describe = (e: Estimate) => `zero ${e.plan.zero}, ${e.plan.recompute}, ${e.plan.microbatches} mb: ${e.plan.layout || '(replicated)'}`;

/** Step time against memory per device, the Pareto front drawn through its plans. */
export function paretoChart(result: SearchResult): TopLevelSpec {
  const values = planRows(result).map(({ e, pareto, best }) => ({
    plan: describe(e), memory: e.memory.total / GiB, step: e.time.step, pareto, best, feasible: e.feasible,
  }));
  const capacities = [...new Set(planRows(result).map((r) => r.e.memory.capacity))];
  const x = { field: 'memory', type: 'quantitative' as const, title: 'memory per device (GiB)', scale: { zero: true } };
  const y = { field: 'step', type: 'quantitative' as const, title: 'step time (s)', scale: { zero: true } };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: 'Pareto front: step time against memory per device',
    width: 560, height: 340,
    data: { values },
    layer: [
      ...(capacities.length === 1
        ? [{ name: 'capacity', data: { values: [{ capacity: capacities[0] / GiB }] }, mark: { type: 'rule' as const, color: '#c0392b', strokeDash: [6, 4] }, encoding: { x: { field: 'capacity', type: 'quantitative' as const } } }]
        : []),
      { name: 'plans', mark: { type: 'point', color: '#999', opacity: 0.6 }, encoding: { x, y } },
      { name: 'front', transform: [{ filter: 'datum.pareto' }], mark: { type: 'line', color: '#2c6fbb', interpolate: 'step-after' }, encoding: { x, y, order: { field: 'memory', type: 'quantitative' } } },
      { name: 'pareto', transform: [{ filter: 'datum.pareto' }], mark: { type: 'point', filled: true, size: 70, color: '#2c6fbb' }, encoding: { x, y, tooltip: [{ field: 'plan' }] } },
      { name: 'best', transform: [{ filter: 'datum.best' }], mark: { type: 'point', shape: 'diamond', filled: true, size: 140, color: '#e67e22' }, encoding: { x, y } },
    ],
  } as TopLevelSpec;
}

/**
 * The best plans' step time stacked: compute, communication left exposed (apportioned to
 * each axis by the bytes it carries), pipeline bubble.
 */
export function timeChart(result: SearchResult, count = 8): TopLevelSpec {
  const plans = (result.top.length > 0 ? result.top : result.best ? [result.best] : []).slice(0, count);
  const values: { plan: string; part: string; seconds: number; order: number }[] = [];
  const parts = new Set<string>(['compute']);
  plans.forEach((e, i) => {
    const label = `#${i + 1} ${describe(e)}`;
    values.push({ plan: label, part: 'compute', seconds: e.time.compute, order: 0 });
    const byAxis = Object.entries(e.communication.byAxis).filter(([, b]) => b > 0);
    const total = byAxis.reduce((s, [, b]) => s + b, 0);
    for (const [axis, bytes] of byAxis) {
      const part = `communication on ${axis}`;
      parts.add(part);
      values.push({ plan: label, part, seconds: total > 0 ? (e.time.exposedCommunication * bytes) / total : 0, order: 1 });
    }
    if (byAxis.length === 0 && e.time.exposedCommunication > 0) {
      parts.add('communication');
      values.push({ plan: label, part: 'communication', seconds: e.time.exposedCommunication, order: 1 });
    }
    values.push({ plan: label, part: 'bubble', seconds: e.time.bubble, order: 2 });
  });
  parts.add('bubble');
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: 'Step time of the best plans',
    width: 560,
    height: { step: 26 },
    data: { values },
    name: 'time',
    mark: 'bar',
    encoding: {
      y: { field: 'plan', type: 'nominal', sort: null, title: null, axis: { labelLimit: 480 } },
      x: { field: 'seconds', type: 'quantitative', stack: 'zero', title: 'seconds per step' },
      color: { field: 'part', type: 'nominal', scale: { domain: [...parts] }, title: null, legend: { orient: 'bottom', columns: 3, labelLimit: 300 } },
      order: { field: 'order', type: 'quantitative' },
    },
  } as TopLevelSpec;
}

/**
 * The mesh, once per weight of the best plan: each device coloured by the shard of that
 * weight it holds (devices of one colour hold the same slice). Rows are the outer axes
 * flattened, columns the innermost axis.
 */
export function meshChart(best: Estimate, spec: ModelSpec, maxWeights = 12): TopLevelSpec | null {
  const mesh = makeMesh(best.mesh.axes.map((a) => ({ name: a.name, size: a.size })));
  if (mesh.size > 4096) return null;
  const layout = parseLayout(best.plan.layout);
  const graph = buildGraph(spec);
  const inner = mesh.axes[mesh.axes.length - 1].size;
  const weights = graph.weights.filter((w) => graph.tensors.get(w)!.dims.length >= 2).slice(0, maxWeights);
  const values: { weight: string; row: number; col: number; shard: number }[] = [];
  for (const w of weights) {
    const dims: DimName[] = [...graph.tensors.get(w)!.dims];
    if (weightBlock(graph, w).layered) dims.push('layers');
    const split = new Set(dims.flatMap((d) => axesOf(layout, d)));
    const used = mesh.axes.map((a, i) => ({ a, i })).filter(({ a }) => split.has(a.name));
    const shards = used.reduce((p, { a }) => p * a.size, 1);
    const label = `${w}\n[${dims.join(', ')}]: ${shards === 1 ? 'replicated' : `${shards} shards`}`;
    for (let d = 0; d < mesh.size; d++) {
      const c = deviceCoords(mesh, d);
      let shard = 0;
      for (const { a, i } of used) shard = shard * a.size + c[i];
      values.push({ weight: label, row: Math.floor(d / inner), col: d % inner, shard });
    }
  }
  const cell = Math.max(4, Math.min(18, Math.floor(240 / inner)));
  const rows = mesh.size / inner;
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: `How the best plan splits each weight over the mesh ${mesh.axes.map((a) => `${a.name}:${a.size}`).join(';')}`,
    data: { values },
    facet: { field: 'weight', type: 'nominal', title: null, header: { labelExpr: "split(datum.label, '\\n')", labelLimit: 0 }, sort: null },
    columns: 3,
    spec: {
      width: cell * inner, height: cell * rows,
      name: 'devices',
      mark: 'rect',
      encoding: {
        x: { field: 'col', type: 'ordinal', title: mesh.axes[mesh.axes.length - 1].name, axis: inner > 16 ? { values: [0, inner - 1] } : {} },
        y: { field: 'row', type: 'ordinal', title: mesh.axes.slice(0, -1).map((a) => a.name).join('×') || null, axis: rows > 16 ? { values: [0, rows - 1] } : {} },
        color: { field: 'shard', type: 'quantitative', scale: { scheme: 'viridis' }, legend: null },
      },
    },
    resolve: { scale: { color: 'independent' } },
  } as TopLevelSpec;
}
