import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { getDevice } from '../src/cost/presets.js';
import { exportPlan } from '../src/export/index.js';
import { makePlan } from '../src/lower/plan.js';
import { parseMesh } from '../src/mesh/mesh.js';
import { getPreset } from '../src/model/presets.js';
import { runMain } from './support/capture.js';

const dir = mkdtempSync(join(tmpdir(), 'mesh-search-export-'));
const paperLayout = 'batch:rows;d_ff:cols;heads:cols;vocab:cols';
const planFile = join(dir, 'plan.json');
writeFileSync(planFile, JSON.stringify({
  plan: { layout: paperLayout, zero: 0, recompute: 'none', microbatches: 1 },
  mesh: 'rows:16;cols:32', model: 'transformer-5b', device: 'tpu-v2',
}));

describe('mesh-search export', () => {
  it('prints the configuration of a plan file, the same text the library writes', async () => {
    const r = await runMain(['export', '--plan', planFile, '--format', 'mesh-tf']);
    expect(r.code).toBe(0);
    const expected = exportPlan({ plan: makePlan(paperLayout), mesh: parseMesh('16x32'), spec: getPreset('transformer-5b'), profile: getDevice('tpu-v2') }, 'mesh-tf').text;
    expect(r.stdout).toBe(expected);
    expect(r.stdout).toMatch(/^LAYOUT_RULES = "batch:rows;heads:cols;d_ff:cols;vocab:cols"$/m);
  });

  it('exits 2 and says exactly what is missing when the target cannot express the plan, writing nothing', async () => {
    const out = join(dir, 'ds.json');
    const r = await runMain(['export', '--plan', planFile, '--format', 'deepspeed', '--out', out]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^mesh-search: deepspeed cannot express this plan: .*vocab:cols cannot be expressed/);
    expect(() => readFileSync(out)).toThrow();
  });

  it('refuses a pipeline for Mesh-TF from flags, overriding the plan file', async () => {
    const r = await runMain(['export', '--plan', planFile, '--format', 'mesh-tf', '--mesh', '2x4x8', '--layout', 'layers:x;batch:y;d_ff:z;heads:z;vocab:z']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/mesh-tf cannot express this plan: .*Mesh-TF has no pipeline parallelism: layers:x/);
  });

  it('writes --out and reports where', async () => {
    const out = join(dir, 'maxtext.yml');
    const r = await runMain(['export', '--plan', planFile, '--format', 'maxtext', '--out', out]);
    expect(r.code).toBe(0);
    expect(readFileSync(out, 'utf8')).toMatch(/^ici_tensor_parallelism: 32$/m);
    expect(r.stderr).toMatch(/wrote the maxtext configuration/);
  });

  it('rejects an unknown format and a missing plan with exit 2', async () => {
    expect((await runMain(['export', '--plan', planFile, '--format', 'jax'])).code).toBe(2);
    const r = await runMain(['export', '--format', 'megatron']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/export needs --plan/);
  });
});
