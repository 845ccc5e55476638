import { getDevice } from '../src/cost/presets.js';
import { price, priceParts } from '../src/cost/price.js';
import type { HardwareProfile } from '../src/cost/profile.js';
import { lower } from '../src/lower/lower.js';
import { makePlan } from '../src/lower/plan.js';
import { formatMesh, parseMesh } from '../src/mesh/mesh.js';
import { buildGraph } from '../src/model/graph.js';
import { getPreset } from '../src/model/presets.js';
import type { RawRow } from '../src/calibrate/resolve.js';

/** A profile to generate synthetic timings from: every fitted parameter away from the base. */
export function truthProfile(): HardwareProfile {
  const base = getDevice('tpu-v2');
  return {
    ...base,
    name: 'truth',
    efficiency: { matmul: 0.45, elementwise: 0.55, softmax: 0.3, reduction: 0.4 },
    efficiencyHalfWork: { matmul: 4e8, elementwise: 2e5, softmax: 1e5, reduction: 3e5 },
    axisLinks: { rows: { bandwidth: 6e9, latency: 6e-6 }, cols: { bandwidth: 3e9, latency: 9e-6 } },
    overlap: 0.6,
  };
}

/** Plans on 2-D meshes that exercise every class and both axes. */
export const SYNTH_CASES: { mesh: string; layout: string; zero?: number; recompute?: string; microbatches?: number }[] = [
  { mesh: '4x4', layout: 'batch:rows;d_ff:cols;heads:cols;vocab:cols' },
  { mesh: '4x4', layout: 'batch:rows+cols' },
  { mesh: '4x4', layout: 'batch:cols;d_ff:rows;heads:rows;vocab:rows', recompute: 'full' },
  { mesh: '4x4', layout: 'batch:rows;d_model:cols', zero: 1 },
  { mesh: '2x8', layout: 'batch:rows;d_ff:cols;heads:cols;vocab:cols', microbatches: 2 },
  { mesh: '2x8', layout: 'batch:cols;d_ff:rows;vocab:rows', recompute: 'selective' },
  { mesh: '2x8', layout: 'batch:rows+cols', zero: 2 },
  { mesh: '8x2', layout: 'batch:rows;heads:cols;d_ff:cols' },
  { mesh: '8x2', layout: 'batch:cols;d_ff:rows;heads:rows;vocab:rows' },
  { mesh: '8x2', layout: 'batch:rows;vocab:cols;d_ff:cols', zero: 3 },
  { mesh: '2x2', layout: 'batch:rows;d_ff:cols;heads:cols' },
  { mesh: '2x2', layout: 'batch:cols;length:rows' },
  { mesh: '2x2', layout: '' , microbatches: 4 },
  { mesh: '4x2', layout: 'batch:rows;d_ff:cols;heads:cols;vocab:cols', recompute: 'full' },
  { mesh: '4x2', layout: 'batch:rows+cols', microbatches: 2 },
  { mesh: '4x2', layout: 'd_ff:rows;heads:rows;batch:cols' },
];

/** Raw benchmark rows whose times are what `truth` prices, optionally with per-class and per-axis times. */
export function synthRows(truth: HardwareProfile, model = 'mtf-lm-s0', opts: { components?: boolean; cases?: typeof SYNTH_CASES } = {}): RawRow[] {
  const graph = buildGraph(getPreset(model));
  return (opts.cases ?? SYNTH_CASES).map((c, i) => {
    const mesh = parseMesh(c.mesh);
    const plan = makePlan(c.layout, c);
    const program = lower(graph, mesh, plan);
    const e = price(program, truth);
    const compute: Record<string, number> = {};
    const comm: Record<string, number> = {};
    if (opts.components) {
      // The cost model's own times per op class and per axis group (what a trace measures).
      const parts = priceParts(program, truth);
      Object.assign(compute, parts.classTime);
      Object.assign(comm, parts.commTime);
    }
    return {
      source: { file: 'synthetic.csv', line: i + 2 }, model, mesh: formatMesh(mesh), layout: c.layout, zero: c.zero,
      recompute: c.recompute, microbatches: c.microbatches, stepTime: e.time.step, compute, comm,
    };
  });
}
