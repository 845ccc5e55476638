import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { lower } from '../src/lower/lower.js';
import { makePlan } from '../src/lower/plan.js';
import { parseMesh } from '../src/mesh/mesh.js';
import { buildGraph } from '../src/model/graph.js';
import { parseModelSpec } from '../src/model/spec.js';
import { DIM_NAMES } from '../src/model/graph.js';
import { getDevice } from '../src/cost/presets.js';
import { matmulBound } from '../src/search/bounds.js';

/**
 * A fused causal attention kernel skips the key tiles wholly above the diagonal (FlashAttention-2,
 * Dao 2023, Sec. 3.1.1), 128 x 128 tiles (Sec. 3.3). The share of the core's work it runs is counted
 * here tile by tile, independently of the formula the lowering uses.
 */
function tilesRun(s: number, tile = 128): number {
  const n = Math.ceil(s / tile);
  let run = 0;
  for (let q = 0; q < n; q++) for (let k = 0; k < n; k++) if (k * tile <= Math.min(s, (q + 1) * tile) - 1) run++;
  return run / (n * n);
}

const gpt = (h: number, a: number, l: number, s: number, B: number, V: number, flash: boolean, kind: 'decoder' | 'encoder-decoder' = 'decoder') =>
  buildGraph(parseModelSpec({ name: 'gpt', kind, layers: l, dModel: h, heads: a, dKv: h / a, dFf: 4 * h, vocab: V, seqLen: s, batch: B, activation: 'gelu', dropout: false, dtype: 'bfloat16', flashAttention: flash }));

const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

describe('fused causal attention runs the tiles on and below the diagonal', () => {
  it("matmul FLOPs are Narayanan et al.'s F with the attention term scaled by the share of tiles run", () => {
    fc.assert(fc.property(
      fc.constantFrom(64, 128), fc.constantFrom(2, 4), fc.integer({ min: 1, max: 4 }), fc.constantFrom(128, 256, 384, 1000, 2048, 8192),
      fc.integer({ min: 1, max: 4 }), fc.integer({ min: 10, max: 2000 }),
      (h, a, l, s, B, V) => {
        const share = tilesRun(s);
        const flash = lower(gpt(h, a, l, s, B, V, true), parseMesh('1'), makePlan('')).flops.matmulPerStep;
        const plain = lower(gpt(h, a, l, s, B, V, false), parseMesh('1'), makePlan('')).flops.matmulPerStep;
        // 72·B·s·l·h²·(1 + s/(6h) + V/(12·l·h)): the s/(6h) term, 12·B·s²·l·h, is QKᵀ and A·V, forward and backward.
        expect(rel(plain, 72 * B * s * l * h * h * (1 + s / (6 * h) + V / (12 * l * h)))).toBeLessThan(1e-9);
        // The fused kernel's backward recomputes S = QKᵀ (Dao et al. 2022, Algorithm 4): 14·B·s²·l·h, of which it runs the share.
        expect(rel(flash, 72 * B * s * l * h * h * (1 + V / (12 * l * h)) + 14 * share * B * s * s * l * h)).toBeLessThan(1e-9);
      },
    ), { numRuns: 40, seed: 17 });
  });

  it("the search's matmul bound counts the same share: unsplit, it is the forward and backward einsums' F at the matmul rate", () => {
    const base = getDevice('h100-sxm');
    // No GEMM shape curve: the bound is then FLOPs over the rate, exactly.
    const profile = { ...base, gemmHalfSize: 0 };
    const rate = profile.peakFlops.bfloat16 * profile.efficiency.matmul;
    const ones = DIM_NAMES.map(() => 1);
    fc.assert(fc.property(fc.constantFrom(64, 128), fc.constantFrom(2, 4), fc.integer({ min: 1, max: 4 }), fc.constantFrom(256, 1000, 4096), fc.integer({ min: 10, max: 2000 }), (h, a, l, s, V) => {
      const share = tilesRun(s);
      const f = matmulBound(gpt(h, a, l, s, 2, V, true), profile)(ones) * rate;
      // The bound leaves out the kernel's recompute of QKᵀ in the backward (it only adds): 12, not 14, B·s²·l·h.
      expect(rel(f, 72 * 2 * s * l * h * h * (1 + (share * s) / (6 * h) + V / (12 * l * h)))).toBeLessThan(1e-9);
    }), { numRuns: 20, seed: 23 });
  });

  it('at 2048 tokens the kernel runs 17/32 of the tiles, at 8192 65/128', () => {
    expect(tilesRun(2048)).toBe(17 / 32);
    expect(tilesRun(8192)).toBe(65 / 128);
    const f = (s: number, flash: boolean) => lower(gpt(128, 4, 1, s, 1, 100, flash), parseMesh('1'), makePlan('')).ops.find((o) => o.phase === 'forward' && o.name.endsWith('.qk'))!.flops;
    expect(f(2048, true) / f(2048, false)).toBeCloseTo(17 / 32, 12);
    expect(f(8192, true) / f(8192, false)).toBeCloseTo(65 / 128, 12);
  });

  it('an encoder-decoder skips tiles only in the decoder self-attention: the encoder and cross-attention are unmasked', () => {
    const s = 1024, share = tilesRun(s);
    const ops = (flash: boolean) => lower(gpt(128, 4, 2, s, 2, 100, flash, 'encoder-decoder'), parseMesh('1'), makePlan('')).ops.filter((o) => o.phase === 'forward' && o.name.endsWith('.qk'));
    const on = ops(true), off = ops(false);
    expect(on.map((o) => o.name)).toEqual(off.map((o) => o.name));
    // Decoder self-attention masks positions after the query; the encoder's and the cross-attention's scores are all used.
    const ratios = on.map((o, i) => o.flops / off[i].flops);
    expect(ratios.filter((r) => Math.abs(r - share) < 1e-12).length).toBe(1);
    expect(ratios.filter((r) => Math.abs(r - 1) < 1e-12).length).toBe(on.length - 1);
  });
});
