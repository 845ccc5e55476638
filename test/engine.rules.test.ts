import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { getDevice } from '../src/cost/presets.js';
import { CAPABILITIES, ENGINES, whyNot } from '../src/engine/index.js';
import { RECOMPUTE, type Plan, type ZeroStage } from '../src/lower/plan.js';
import { parseMesh } from '../src/mesh/mesh.js';
import { buildGraph } from '../src/model/graph.js';
import { smallSpec, validLayout } from './support/arbitraries.js';

const setup = fc.record({
  spec: smallSpec(),
  mesh: fc.constantFrom('2x2', '2x4', '2x2x2', '4x2').map(parseMesh),
  engine: fc.constantFrom(...ENGINES),
}).chain((s) => fc.record({ s: fc.constant(s), layout: validLayout(buildGraph(s.spec), s.mesh) }));

describe('engine rules', () => {
  it("the layout-only reasons hold for every strategy: a layout they refuse has no plan the engine runs", () => {
    fc.assert(fc.property(setup, ({ s, layout }) => {
      const profile = getDevice('h100-sxm');
      const probe: Plan = { layout, zero: 0, recompute: 'none', microbatches: 1, sequenceParallel: false, virtualStages: 1 };
      const layoutOk = whyNot(s.engine, probe, s.mesh, s.spec, profile, 'layout').length === 0;
      for (const zero of [0, 1, 2, 3] as ZeroStage[]) {
        for (const recompute of RECOMPUTE) {
          for (const microbatches of [1, 2, 4]) {
            for (const [sequenceParallel, virtualStages] of [[false, 1], [true, 1], [false, 2]] as const) {
              const ok = whyNot(s.engine, { layout, zero, recompute, microbatches, sequenceParallel, virtualStages }, s.mesh, s.spec, profile).length === 0;
              if (ok) expect(layoutOk, `${s.engine} ${[...layout].join(' ')} zero ${zero} ${recompute} m ${microbatches} sp ${sequenceParallel} v ${virtualStages}`).toBe(true);
            }
          }
        }
      }
    }), { numRuns: 400, seed: 21 });
  });

  it('a plan is refused exactly when it asks for something the capability record does not list', () => {
    const mesh = parseMesh('2x4');
    const spec = { ...buildGraph(smallSpecFixed()).spec };
    for (const engine of ENGINES) {
      const cap = CAPABILITIES[engine];
      for (const zero of [0, 1, 2, 3] as ZeroStage[]) {
        const r = whyNot(engine, { layout: new Map([['batch', ['x', 'y']]]), zero, recompute: 'none', microbatches: 1, sequenceParallel: false, virtualStages: 1 } as Plan, mesh, spec);
        expect(r.some((x) => x.includes(`zero ${zero}`)), `${engine} zero ${zero}`).toBe(!cap.zero.includes(zero));
      }
    }
  });
});

function smallSpecFixed() {
  return fc.sample(smallSpec(), { numRuns: 1, seed: 1 })[0];
}
