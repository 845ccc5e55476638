import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli } from './support/cli.js';

// A translation-shaped model (cross-attention reads the encoder's output): bytes as tokens, so it trains on text.
const spec = {
  name: 'tiny-ed', kind: 'encoder-decoder', encoderLayers: 2, decoderLayers: 2, dModel: 32, heads: 4, dKv: 8,
  dFf: 64, vocab: 128, seqLen: 16, batch: 4, dtype: 'float32', dropout: false, tiedEmbeddings: false,
  activation: 'relu', positions: 'learned',
};

describe('encoder-decoder models on the simulated mesh', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ms-ed-'));
  const model = join(dir, 'ed.json');
  writeFileSync(model, JSON.stringify(spec));

  it.each([
    ['batch:rows;heads:cols', []],
    ['memory_length:rows;d_ff:cols', ['--recompute', 'full']],
    ['length:rows;vocab:cols', ['--zero', '3', '--microbatches', '2']],
  ])('run --check on 2x2 with %s %j: loss and parameters equal the unsplit model below 1e-4', (layout, extra) => {
    const r = cli(['run', '--mesh', '2x2', '--model', model, '--layout', layout, ...extra, '--steps', '2', '--check', '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.check.maxRelativeError).toBeLessThan(1e-4);
    expect(out.steps.length).toBe(2);
  });

  it('train runs and lowers the loss', () => {
    const r = cli(['train', '--mesh', '2x2', '--model', model, '--layout', 'batch:rows;heads:cols', '--steps', '30', '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.losses.length).toBe(30);
    expect(out.losses[29]).toBeLessThan(out.losses[0]);
  });
});
