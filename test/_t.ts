import { buildGraph } from '../src/model/graph.js';
import { getPreset } from '../src/model/presets.js';
import { parseMesh } from '../src/mesh/mesh.js';
import { lower } from '../src/lower/lower.js';
import { makePlan } from '../src/lower/plan.js';
import { price } from '../src/cost/price.js';
import { getDevice } from '../src/cost/presets.js';
const g = buildGraph(getPreset('transformer-5b'));
for (const L of ['batch:rows;d_ff:cols;heads:cols;vocab:cols', 'batch:rows+cols']) {
const e = price(lower(g, parseMesh('16x32'), makePlan(L)), getDevice('tpu-v2'));
console.log(JSON.stringify({f:e.feasible, r:e.reasons, t:e.time, mfu:e.mfu, m:e.memory, ax: e.communication.byAxis}));
}
