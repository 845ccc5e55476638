import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli } from './support/cli.js';

const paper = ['estimate', '--mesh', '16x32', '--model', 'transformer-5b', '--layout', 'batch:rows;d_ff:cols;heads:cols;vocab:cols'];

describe('mesh-search estimate', () => {
  it('prints one JSON object with the fields of DESIGN.md and nothing else on stdout', () => {
    const r = cli([...paper, '--json']);
    expect(r.code).toBe(0);
    const e = JSON.parse(r.stdout);
    expect(Object.keys(e)).toEqual(expect.arrayContaining(['model', 'mesh', 'plan', 'valid', 'feasible', 'reasons', 'flops', 'memory', 'communication', 'time', 'mfu', 'tokensPerSecond']));
    expect(Object.keys(e.memory)).toEqual(expect.arrayContaining(['params', 'gradients', 'optimizer', 'activations', 'temporary', 'total', 'capacity']));
    expect(Object.keys(e.time)).toEqual(expect.arrayContaining(['compute', 'communication', 'exposedCommunication', 'bubble', 'step']));
    expect(Object.keys(e.flops)).toEqual(['modelPerStep', 'matmulPerStep', 'perDevice']);
    expect(e.model).toEqual({ name: 'mtf-lm-s5', params: expect.any(Number) });
    expect(e.plan).toEqual({ layout: 'batch:rows;heads:cols;d_ff:cols;vocab:cols', zero: 0, recompute: 'none', microbatches: 1, sequenceParallel: false, virtualStages: 1 });
    expect(e.communication.byAxis.rows).toBeGreaterThan(0);
    expect(e.communication.byAxis.cols).toBeGreaterThan(0);
    expect(e.mfu).toBeGreaterThan(0);
    expect(e.mfu).toBeLessThan(1);
  });

  it('reads the layout, mesh and model of a plan file and lets flags override it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ms-'));
    const file = join(dir, 'plan.json');
    writeFileSync(file, JSON.stringify({ plan: { layout: 'batch:rows;d_ff:cols;heads:cols;vocab:cols', zero: 1, recompute: 'full', microbatches: 2 }, mesh: '16x32', model: 'transformer-5b', device: 'tpu-v2' }));
    const a = JSON.parse(cli(['estimate', '--plan', file, '--json']).stdout);
    expect(a.plan).toEqual({ layout: 'batch:rows;heads:cols;d_ff:cols;vocab:cols', zero: 1, recompute: 'full', microbatches: 2, sequenceParallel: false, virtualStages: 1 });
    const b = JSON.parse(cli(['estimate', '--plan', file, '--zero', '3', '--json']).stdout);
    expect(b.plan.zero).toBe(3);
    expect(b.memory.total).toBeLessThan(a.memory.total);
  });

  it('reports an indivisible layout as invalid, with how far over memory it would be, and exits 2', () => {
    const r = cli(['estimate', '--mesh', '16x32', '--model', 'transformer-5b', '--layout', 'batch:rows+cols', '--json']);
    expect(r.code).toBe(2);
    const e = JSON.parse(r.stdout);
    expect(e.valid).toBe(false);
    expect(e.reasons.join(' ')).toMatch(/not divisible by 512.*exceeds .* by [\d.]+ GiB/);
  });
});

describe('bad input', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ms-bad-'));
  const notJson = join(dir, 'bad.json');
  writeFileSync(notJson, '{ "dModel": ');
  const wrongField = join(dir, 'wrong.json');
  writeFileSync(wrongField, JSON.stringify({ layers: 2, dModel: -4 }));
  const cases: [string, string[], RegExp][] = [
    ['a malformed mesh', ['estimate', '--mesh', '16y32', '--model', 'tiny', '--layout', ''], /mesh/],
    ['a mesh axis of size 0', ['estimate', '--mesh', '0x4', '--model', 'tiny', '--layout', ''], /positive integer/],
    ['a malformed layout', ['estimate', '--mesh', '2x2', '--model', 'tiny', '--layout', 'batch=rows'], /not dimension:axis/],
    ['an unknown dimension', ['estimate', '--mesh', '2x2', '--model', 'tiny', '--layout', 'bacth:rows'], /unknown dimension "bacth"/],
    ['two dimensions on one axis', ['estimate', '--mesh', '2x2', '--model', 'tiny', '--layout', 'batch:rows;d_model:rows'], /two dimensions, batch and d_model, on mesh axis rows/],
    ['an unknown model preset', ['estimate', '--mesh', '2x2', '--model', 'gpt5', '--layout', ''], /unknown model "gpt5"/],
    ['an unknown device', ['estimate', '--mesh', '2x2', '--model', 'tiny', '--layout', '', '--device', 'tpu-v9'], /unknown device "tpu-v9"/],
    ['a model file that is not JSON', ['estimate', '--mesh', '2x2', '--model', notJson, '--layout', ''], /not valid JSON/],
    ['a model file with a bad field', ['estimate', '--mesh', '2x2', '--model', wrongField, '--layout', ''], /"dModel" must be an integer/],
    ['a missing model file', ['estimate', '--mesh', '2x2', '--model', join(dir, 'none.json'), '--layout', ''], /no such file/],
    ['a bad ZeRO stage', ['estimate', '--mesh', '2x2', '--model', 'tiny', '--layout', '', '--zero', '5'], /--zero must be an integer from 0 to 3, got "5"/],
    ['microbatches that do not divide the batch', ['estimate', '--mesh', '2x2', '--model', 'tiny', '--layout', '', '--microbatches', '3', '--json'], /microbatches do not divide/],
    ['an unknown flag', ['estimate', '--mesh', '2x2', '--model', 'tiny', '--layot', ''], /Unknown argument/],
    ['a value outside its choices', ['--mesh', '2x2', '--model', 'tiny', '--objective', 'speed', '--json'], /Invalid values: Argument: objective, Given: "speed"/],
  ];
  it.each(cases)('%s: one line on stderr, exit code 2, no stack trace', (_, args, why) => {
    const r = cli(args);
    expect(r.code).toBe(2);
    const text = r.stderr.trim() || JSON.parse(r.stdout).reasons.join('\n');
    expect(text).toMatch(why);
    expect(r.stderr.trim().split('\n').length).toBeLessThanOrEqual(1);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});

describe('search files', () => {
  it('--out writes a plan that estimate reads back, even for a model given as a spec file, and --report an HTML page', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ms-out-'));
    const spec = join(dir, 'model.json');
    writeFileSync(spec, JSON.stringify({ name: 'mine', layers: 2, dModel: 32, heads: 4, dKv: 8, dFf: 64, vocab: 64, seqLen: 16, batch: 8, dtype: 'float32' }));
    const r = cli(['--mesh', '2x2', '--model', spec, '--out', join(dir, 'plan.json'), '--report', join(dir, 'r.html'), '--json']);
    expect(r.code).toBe(0);
    const best = JSON.parse(r.stdout).best;
    const again = cli(['estimate', '--plan', join(dir, 'plan.json'), '--json']);
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout).time.step).toBeCloseTo(best.time.step, 12);
    expect(readFileSync(join(dir, 'r.html'), 'utf8')).toMatch(/<svg/);
  });
});

describe('listings', () => {
  it('models lists the presets with their parameter counts', () => {
    const r = cli(['models', '--json']);
    const rows = JSON.parse(r.stdout) as { name: string; params: number }[];
    expect(rows.find((x) => x.name === 'transformer-5b')!.params / 1e9).toBeCloseTo(4.9, 2);
    expect(cli(['models']).stdout).toMatch(/transformer-5b \(= mtf-lm-s5\)\s+4\.90B/);
  });

  it('devices lists the hardware profiles with their sources', () => {
    const rows = JSON.parse(cli(['devices', '--json']).stdout) as { name: string; sources: Record<string, string> }[];
    expect(rows.map((r) => r.name)).toEqual(['tpu-v2', 'tpu-v3', 'tpu-v4', 'tpu-v5e', 'tpu-v5p', 'tpu-v6e', 'a100-40g', 'a100-80g', 'h100-sxm', 'h100-a3-high', 'h200', 'b200']);
    for (const r of rows) expect(Object.keys(r.sources).length).toBeGreaterThan(3);
  });
});
