import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { getDevice } from '../src/cost/presets.js';
import { COLLECTIVE_KINDS } from '../src/lower/collectives.js';
import { parseMesh } from '../src/mesh/mesh.js';
import { buildGraph, DIM_NAMES } from '../src/model/graph.js';
import { getPreset } from '../src/model/presets.js';
import { stateFloor, type StateFloor, type VariantFloor } from '../src/search/bounds.js';
import { decodeFloor, encodeFloor, makeSharedFloors, sharedFloors } from '../src/search/floors.js';
import { recomputes } from '../src/lower/instantiate.js';
import { lowerLayout, lowerRecords, sequenceParallelProblem } from '../src/lower/lower.js';
import { layoutAt, makeSpace } from '../src/search/space.js';
import { tinyMesh, tinyMoeSpec, tinyProfile, tinySpec } from './search.helpers.js';

const sums = fc.record({ all: fc.double({ min: 0, max: 1e3, noNaN: true }), first: fc.double({ min: 0, max: 1e3, noNaN: true }), last: fc.double({ min: 0, max: 1e3, noNaN: true }) });
const variant: fc.Arbitrary<VariantFloor | null> = fc.option(fc.record({
  compute: sums,
  collectives: fc.array(fc.record({
    kind: fc.constantFrom(...COLLECTIVE_KINDS),
    dims: fc.uniqueArray(fc.integer({ min: 0, max: DIM_NAMES.length - 1 }), { maxLength: 4 }).map((ds) => [...ds].sort((a, b) => a - b)),
    stage: fc.constantFrom('all' as const, 'first' as const, 'last' as const),
    backward: fc.boolean(),
    sent: fc.double({ min: 0, max: 1e12, noNaN: true }),
    calls: fc.integer({ min: 1, max: 1000 }),
  }), { maxLength: 12 }),
}), { nil: null });
const floor: fc.Arbitrary<StateFloor> = fc.record({ variants: fc.tuple(variant, variant), compute: fc.double({ min: 0, max: 1e3, noNaN: true }) });

/** Real floors: llama2-7b's on some splits of a 2^5 mesh (bounds.ts stateFloor, two stand-in lowerings each). */
function realFloors(): { split: number[]; work: () => StateFloor }[] {
  const graph = buildGraph(getPreset('llama2-7b'));
  const of = stateFloor(graph, parseMesh('a:2;b:2;c:2;d:2;e:2'), getDevice('a100-80g'));
  const at = (d: string) => DIM_NAMES.indexOf(d as (typeof DIM_NAMES)[number]);
  const out: { split: number[]; work: () => StateFloor }[] = [];
  for (const [b, h, f, l] of [[32, 1, 1, 1], [8, 4, 4, 1], [4, 8, 1, 1], [2, 2, 2, 8], [1, 8, 8, 4], [16, 1, 2, 1]]) {
    const split = DIM_NAMES.map(() => 1);
    split[at('batch')] = b; split[at('heads')] = h; split[at('d_ff')] = f; split[at('layers')] = l;
    out.push({ split, work: () => of(split) });
  }
  return out;
}

describe('state floors shared between threads (src/search/floors.ts)', () => {
  it('decode(encode(f)) is f, for any floor', () => {
    fc.assert(fc.property(floor, (f) => {
      expect(decodeFloor(encodeFloor(f), 0)).toEqual(f);
      // At an offset in a larger store, as the shared data keeps them.
      const enc = [7, 7, 7, ...encodeFloor(f), 9];
      expect(decodeFloor(enc, 3)).toEqual(f);
    }), { seed: 61, numRuns: 200 });
  });

  it('a floor worked out through one view is read through another, equal and without working it out again', () => {
    const store = makeSharedFloors(8);
    const a = sharedFloors(store), b = sharedFloors(store);
    const floors = realFloors();
    // Some have no sequence-parallel variant, some do (heads and d_ff on one axis): both shapes go through the store.
    expect(floors.some(({ work }) => work().variants[1] === null)).toBe(true);
    expect(floors.some(({ work }) => work().variants[1] !== null)).toBe(true);
    let worked = 0;
    floors.forEach(({ work }, s) => a.get(1000 + 7 * s, () => (worked++, work())));
    expect(worked).toBe(floors.length);
    floors.forEach(({ work }, s) => {
      const got = b.get(1000 + 7 * s, () => { throw new Error('worked out twice'); });
      expect(got).toEqual(work());
    });
  });

  it('a floor whose work threw, or that did not fit in the store, is worked out by the next thread itself', () => {
    const store = makeSharedFloors(1); // 16 slots
    const a = sharedFloors(store), b = sharedFloors(store);
    const [{ work }] = realFloors();
    expect(() => a.get(5, () => { throw new Error('boom'); })).toThrow('boom');
    let worked = 0;
    expect(b.get(5, () => (worked++, work()))).toEqual(work());
    expect(worked).toBe(1);
    // More states than slots: every one still gets its own floor.
    const many = Array.from({ length: 40 }, (_, s) => ({ s, f: { variants: [null, null], compute: s } as StateFloor }));
    for (const { s, f } of many) expect(a.get(100 + s, () => f).compute).toBe(s);
    for (const { s, f } of many) expect(b.get(100 + s, () => f).compute).toBe(s);
  });

  it('the store grows its data as floors are published, and every floor reads back whole', () => {
    const store = makeSharedFloors(200);
    const start = store.data.byteLength;
    const a = sharedFloors(store), b = sharedFloors(store);
    const big = (s: number): StateFloor => ({
      compute: s,
      variants: [{
        compute: { all: s, first: s / 2, last: s / 3 },
        collectives: Array.from({ length: 60 }, (_, i) => ({ kind: COLLECTIVE_KINDS[i % COLLECTIVE_KINDS.length], dims: [i % DIM_NAMES.length], stage: 'all' as const, backward: i % 2 === 0, sent: s * 1000 + i, calls: 1 + i })),
      }, null],
    });
    for (let s = 0; s < 200; s++) a.get(s, () => big(s));
    expect(store.data.byteLength).toBeGreaterThan(start);
    for (let s = 0; s < 200; s++) expect(b.get(s, () => { throw new Error('worked out twice'); })).toEqual(big(s));
  });

  it('the stand-in lowering (lowerRecords) has lowerLayout\'s records: forward, backward and the recompute every mode runs', () => {
    for (const [specs, seed] of [[tinySpec(), 71], [tinyMoeSpec(), 73]] as const) {
      let checked = 0, withSp = 0;
      fc.assert(fc.property(specs, tinyMesh(3), tinyProfile(), fc.nat(), fc.boolean(), (spec, mesh, profile, pick, sp) => {
        const graph = buildGraph(spec);
        const space = makeSpace(graph, mesh, profile);
        const at = layoutAt(space, pick % space.ranks);
        if (!at) return;
        const sequenceParallel = sp && sequenceParallelProblem(graph, mesh, at.layout) === null;
        const full = lowerLayout(graph, mesh, at.layout, { sequenceParallel });
        const records = lowerRecords(graph, mesh, at.layout, { sequenceParallel });
        expect(records.forward).toEqual(full.forward);
        expect(records.backward).toEqual(full.backward.filter((r) => r.kind !== 'gradsum'));
        expect(records.recompute).toEqual(full.recompute.filter((r) => recomputes(r, 'none')));
        expect([records.sequenceParallel, records.seqMask, records.layout]).toEqual([full.sequenceParallel, full.seqMask, full.layout]);
        checked++;
        if (sequenceParallel) withSp++;
      }), { seed, numRuns: 200 });
      // Most draws are valid layouts, some of them sequence-parallel.
      expect(checked).toBeGreaterThan(50);
      if (seed === 71) expect(withSp).toBeGreaterThan(5);
    }
  });
});
