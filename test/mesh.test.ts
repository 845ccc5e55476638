import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InputError } from '../src/errors.js';
import { deviceCoords, deviceIndex, formatMesh, parseMesh } from '../src/mesh/mesh.js';

describe('meshes', () => {
  it('reads the shorthand with the names DESIGN.md gives each rank', () => {
    expect(parseMesh('16x32').axes).toEqual([{ name: 'rows', size: 16 }, { name: 'cols', size: 32 }]);
    expect(parseMesh('2x4x8').axes.map((a) => a.name)).toEqual(['x', 'y', 'z']);
    expect(parseMesh('4x4x4x8').size).toBe(512);
    expect(parseMesh('8').axes).toEqual([{ name: 'x', size: 8 }]);
  });

  it("reads Mesh-TF's named form, with ; or , between pairs", () => {
    expect(parseMesh('rows:16;cols:32')).toEqual(parseMesh('16x32'));
    expect(parseMesh('batch:8,model:4').axes).toEqual([{ name: 'batch', size: 8 }, { name: 'model', size: 4 }]);
  });

  it('prints a mesh that parses back to itself', () => {
    fc.assert(fc.property(fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 4 }), (sizes) => {
      const m = parseMesh(sizes.join('x'));
      expect(parseMesh(formatMesh(m))).toEqual(m);
    }));
  });

  it.each([
    ['', /empty/],
    ['16x0', /not a positive integer/],
    ['16x-2', /not a positive integer/],
    ['2x2x2x2x2', /1 to 4 sizes/],
    ['rows:16;rows:2', /named twice/],
    ['rows:16;cols', /not name:size/],
    ['rows:1.5', /not a positive integer/],
    ['9:4', /must be letters/],
  ])('rejects %j with a message that says why', (text, why) => {
    expect(() => parseMesh(text)).toThrow(InputError);
    expect(() => parseMesh(text)).toThrow(why);
  });

  it('never fails with anything but a one-line InputError on any string', () => {
    fc.assert(fc.property(fc.string({ maxLength: 40 }), (s) => {
      try {
        parseMesh(s);
      } catch (e) {
        expect(e).toBeInstanceOf(InputError);
        expect((e as Error).message).not.toContain('\n');
      }
    }), { numRuns: 2000 });
  });

  it('numbers devices row-major', () => {
    const m = parseMesh('2x3x4');
    fc.assert(fc.property(fc.integer({ min: 0, max: 23 }), (d) => {
      expect(deviceIndex(m, deviceCoords(m, d))).toBe(d);
    }));
    expect(deviceCoords(m, 5)).toEqual([0, 1, 1]);
  });
});
