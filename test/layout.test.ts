import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InputError, LayoutError } from '../src/errors.js';
import { formatLayout, parseLayout, validateLayout } from '../src/layout/layout.js';
import { parseMesh } from '../src/mesh/mesh.js';
import { buildGraph } from '../src/model/graph.js';
import { getPreset } from '../src/model/presets.js';
import { anyLayout } from './support/arbitraries.js';

const g5b = buildGraph(getPreset('transformer-5b'));
const mesh = parseMesh('16x32');

describe('layouts', () => {
  it("reads Mesh-TF's rules and several axes for one dimension", () => {
    const l = parseLayout('batch:rows;d_ff:cols;heads:cols;vocab:cols');
    expect(l.get('batch')).toEqual(['rows']);
    expect(l.get('d_ff')).toEqual(['cols']);
    expect(parseLayout('batch:rows+cols').get('batch')).toEqual(['rows', 'cols']);
    expect(parseLayout('').size).toBe(0);
  });

  it('prints every layout so that it parses back to the same rules', () => {
    fc.assert(fc.property(anyLayout(parseMesh('a:2;b:2;c:2')), (l) => {
      expect(formatLayout(parseLayout(formatLayout(l)))).toBe(formatLayout(l));
      for (const [d, axes] of l) expect(parseLayout(formatLayout(l)).get(d)).toEqual(axes);
    }));
  });

  it('accepts the paper layout for transformer-5b on 16x32', () => {
    expect(() => validateLayout(g5b, mesh, parseLayout('batch:rows;d_ff:cols;heads:cols;vocab:cols'))).not.toThrow();
  });

  it('names the tensor, both dimensions and the axis when two dimensions share an axis', () => {
    const f = () => validateLayout(g5b, mesh, parseLayout('batch:rows;d_model:rows'));
    expect(f).toThrow(LayoutError);
    expect(f).toThrow(/tensor \S+ \[.*batch.*d_model.*\] has two dimensions, batch and d_model, on mesh axis rows/);
  });

  it('names the dimension, its size and the factor that does not divide it', () => {
    expect(() => validateLayout(g5b, mesh, parseLayout('batch:rows+cols'))).toThrow(/batch \(size 256\) is not divisible by 512/);
    expect(() => validateLayout(g5b, mesh, parseLayout('layers:rows'))).toThrow(/layers \(size 6\) is not divisible by 16/);
  });

  it('keeps the pipeline axis for layers alone', () => {
    expect(() => validateLayout(buildGraph(getPreset('gpt3-175b')), parseMesh('4x8'), parseLayout('layers:rows;heads:rows'))).toThrow(/pipeline/);
  });

  it.each([
    ['batch', /not dimension:axis/],
    ['foo:rows', /unknown dimension "foo"/],
    ['batch:rows;batch:cols', /two rules/],
    ['batch:rows+rows', /names axis "rows" twice/],
    ['batch:', /not an axis name/],
  ])('rejects %j', (text, why) => {
    expect(() => parseLayout(text)).toThrow(InputError);
    expect(() => parseLayout(text)).toThrow(why);
  });

  it('rejects an axis the mesh does not have, naming the axes it has', () => {
    expect(() => validateLayout(g5b, mesh, parseLayout('batch:x'))).toThrow(/mesh axis "x" for "batch", but the mesh has only rows, cols/);
  });

  it('never fails with anything but a one-line InputError on any string', () => {
    fc.assert(fc.property(fc.string({ maxLength: 60 }), (s) => {
      try {
        validateLayout(g5b, mesh, parseLayout(s));
      } catch (e) {
        expect(e).toBeInstanceOf(InputError);
        expect((e as Error).message).not.toContain('\n');
      }
    }), { numRuns: 2000 });
  });
});
