import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InputError } from '../src/errors.js';
import { buildGraph, paramCount } from '../src/model/graph.js';
import { getPreset, listPresets } from '../src/model/presets.js';
import { parseModelSpec } from '../src/model/spec.js';

const params = (name: string) => paramCount(buildGraph(getPreset(name)));

describe('model presets', () => {
  it('transformer-5b is mtf-lm-s5 with 4.90B parameters', () => {
    expect(getPreset('transformer-5b')).toBe(getPreset('mtf-lm-s5'));
    expect((params('transformer-5b') / 1e9).toFixed(2)).toBe('4.90');
  });

  it("matches the paper's parameter counts for every mtf_transformer_paper_lm size", () => {
    // tensor2tensor mtf_transformer_paper_lm docstring: size → params/10^9.
    const table: [number, string][] = [[-1, '0.14'], [0, '0.22'], [1, '0.37'], [2, '0.67'], [3, '1.28'], [4, '2.48'], [5, '4.90']];
    for (const [s, p] of table) expect((params(`mtf-lm-s${s}`) / 1e9).toFixed(2)).toBe(p);
  });

  it('GPT-3 175B is within 0.5% of 175B, Llama 2 7B of 6.74B, T5 11B of 11.3B', () => {
    expect(Math.abs(params('gpt3-175b') / 175e9 - 1)).toBeLessThan(0.005);
    expect(Math.abs(params('llama2-7b') / 6.74e9 - 1)).toBeLessThan(0.005);
    expect(Math.abs(params('t5-11b') / 11.3e9 - 1)).toBeLessThan(0.01);
  });

  it('lists every preset the issue names', () => {
    const names = listPresets().map((p) => p.name);
    for (const n of ['mtf-lm-s-1', 'mtf-lm-s5', 'transformer-5b', 'mtf-tr-s-1', 'mtf-tr-s4', 'gpt3-125m', 'gpt3-350m', 'gpt3-760m', 'gpt3-1.3b',
      'gpt3-2.7b', 'gpt3-6.7b', 'gpt3-13b', 'gpt3-175b', 't5-11b', 'llama2-7b', 'llama2-70b', 'tiny']) expect(names).toContain(n);
  });

  it('tiny is the runtime test model of issue 4', () => {
    const t = getPreset('tiny');
    expect([t.decoderLayers, t.dModel, t.heads, t.dKv, t.dFf, t.vocab, t.seqLen, t.batch]).toEqual([2, 64, 4, 16, 256, 128, 32, 8]);
  });

  it('every graph counts each weight once and every op reads tensors that exist', () => {
    for (const p of listPresets()) {
      const g = buildGraph(p.spec);
      expect(new Set(g.weights).size).toBe(g.weights.length);
      for (const b of g.blocks) for (const op of b.ops) for (const id of [...op.inputs, op.output, ...op.saves]) expect(g.tensors.has(id)).toBe(true);
    }
  });
});

describe('model spec files', () => {
  it('names the field that is wrong', () => {
    expect(() => parseModelSpec({ layers: 2, dModel: 0 })).toThrow(/"dModel" must be an integer >= 1/);
    expect(() => parseModelSpec({ layers: 2, dModel: 8, heads: 2, dKv: 4, dFf: 8, vocab: 8, seqLen: 4, batch: 2, activation: 'tanh' })).toThrow(/"activation" must be one of relu, gelu, swiglu/);
    expect(() => parseModelSpec({ layer: 2 })).toThrow(/unknown field "layer"/);
    expect(() => parseModelSpec([])).toThrow(InputError);
  });

  it('reads back every spec it wrote', () => {
    for (const p of listPresets()) expect(parseModelSpec(JSON.parse(JSON.stringify(p.spec)))).toEqual(p.spec);
  });

  it('never fails with anything but an InputError on any JSON value', () => {
    const field = fc.constantFrom('name', 'kind', 'layers', 'encoderLayers', 'decoderLayers', 'dModel', 'heads', 'dKv', 'dFf', 'vocab', 'seqLen', 'batch', 'dtype', 'dropout', 'tiedEmbeddings', 'activation', 'positions');
    const spec = fc.dictionary(field, fc.oneof(fc.jsonValue(), fc.integer({ min: -3, max: 300 })));
    fc.assert(fc.property(fc.oneof(fc.jsonValue(), spec), (v) => {
      try {
        const s = parseModelSpec(v);
        expect(paramCount(buildGraph(s))).toBeGreaterThan(0);
      } catch (e) {
        expect(e).toBeInstanceOf(InputError);
      }
    }), { numRuns: 1000 });
  });
});
