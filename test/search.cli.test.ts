import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { getDevice } from '../src/cost/presets.js';
import { makePricer } from '../src/cost/pricer.js';
import { parseMesh } from '../src/mesh/mesh.js';
import { buildGraph } from '../src/model/graph.js';
import { getPreset } from '../src/model/presets.js';
import { planFromJson } from '../src/lower/plan.js';
import { runCli } from './search.helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'ms-search-'));
const PAPER = 'batch:rows;d_ff:cols;heads:cols;vocab:cols';

describe('mesh-search --mesh 16x32 --model transformer-5b', () => {
  const out = join(dir, 'plan.json');
  const r = runCli(['--mesh', '16x32', '--model', 'transformer-5b', '--json', '--out', out, '--workers', '2']);
  const result = JSON.parse(r.stdout);

  it('prints DESIGN.md\'s search JSON and nothing else on stdout or stderr', () => {
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(Object.keys(result)).toEqual(['best', 'top', 'pareto', 'searched']);
    expect(Object.keys(result.searched)).toEqual(['plans', 'valid', 'feasible', 'pruned', 'seconds', 'workers', 'sequenceParallel', 'hybrid']);
    expect(result.searched.workers).toBe(2);
    expect(result.top).toHaveLength(5);
    expect(result.top[0]).toEqual(result.best);
    expect(result.pareto[0]).toEqual(result.best);
    for (const e of [...result.top, ...result.pareto]) expect(e.feasible).toBe(true);
  });

  it('finds a plan whose step time is no worse than the paper\'s layout', () => {
    const paper = JSON.parse(runCli(['estimate', '--mesh', '16x32', '--model', 'transformer-5b', '--layout', PAPER, '--json']).stdout);
    expect(paper.feasible).toBe(true);
    expect(result.best.time.step).toBeLessThanOrEqual(paper.time.step);
  });

  it('writes a plan file whose estimate equals `mesh-search estimate` on it, and the pricer\'s numbers', () => {
    const file = JSON.parse(readFileSync(out, 'utf8'));
    expect(file).toMatchObject({ plan: result.best.plan, mesh: 'rows:16;cols:32', model: 'transformer-5b', device: 'tpu-v2' });
    expect(file.estimate).toEqual(result.best);
    const again = runCli(['estimate', '--plan', out, '--json']);
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout)).toEqual(result.best);
    const cost = makePricer(buildGraph(getPreset('transformer-5b')), parseMesh('16x32'), getDevice('tpu-v2'))(planFromJson(file.plan));
    expect(cost.step).toBe(result.best.time.step);
    expect(cost.memory).toBe(result.best.memory.total);
  });

  it('gives the same answer inline, with `search` named, as on workers', () => {
    const inline = JSON.parse(runCli(['search', '--mesh', '16x32', '--model', 'transformer-5b', '--json', '--workers', '0']).stdout);
    expect(inline.searched.workers).toBe(0);
    // What was priced (and so pruned and found feasible) depends on which share found what first;
    // the answer and the counts of the space do not.
    const same = (r: typeof result) => ({ ...r, searched: { plans: r.searched.plans, valid: r.searched.valid } });
    expect(same(inline)).toEqual(same(result));
  });
});

describe('the text answer', () => {
  it('shows the top plans, the paper\'s layout and, with --explain, the best against the runner-up', () => {
    const r = runCli(['--mesh', '16x32', '--model', 'transformer-5b', '--top', '3', '--explain', '--workers', '0']);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/#\s+layout\s+zero\s+recompute\s+microbatches\s+seq-par\s+step\s+MFU\s+memory\/device\s+sent\/device/);
    expect(r.stdout.split('\n').filter((l) => /^ ?[123] {2}batch/.test(l))).toHaveLength(3 + 3);
    expect(r.stdout).toMatch(/the paper's layout batch:rows;d_ff:cols;heads:cols;vocab:cols .*: step [\d.]+ ms, MFU [\d.]+%, .* the best plan is [\d.]+x as fast/);
    expect(r.stdout).toMatch(/runner-up: batch/);
    expect(r.stdout).toMatch(/memory per device .* (best wins|runner-up wins|equal)/);
  });

  it('says when no plan fits, names memory as the binding constraint and shows how far over the closest is', () => {
    const profile = join(dir, 'small.json');
    writeFileSync(profile, JSON.stringify({ ...getDevice('tpu-v2'), name: 'small', memoryBytes: 2 ** 28 }));
    const r = runCli(['--mesh', '2', '--model', 'mtf-lm-s0', '--device', profile, '--workers', '0']);
    expect(r.code).toBe(3);
    expect(r.stdout).toMatch(/no feasible plan: every one of the [\d,]+ valid plans needs more memory per device than the small's 256.00 MiB \(the binding constraint is memory capacity\)/);
    expect(r.stdout).toMatch(/closest plan \(least memory\): .* zero \d recompute full microbatches \d+\n {2}needs [\d.]+ [GM]iB per device, [\d.]+ [GM]iB \(\d+ bytes\) over capacity/);
    const j = JSON.parse(runCli(['--mesh', '2', '--model', 'mtf-lm-s0', '--device', profile, '--workers', '0', '--json']).stdout);
    expect(j.best).toBeNull();
    expect(j.closest.memory.total).toBeGreaterThan(2 ** 28);
  });

  it('with --objective memory, ranks plans by memory per device', () => {
    const j = JSON.parse(runCli(['--mesh', '2x4', '--model', 'tiny', '--objective', 'memory', '--json', '--workers', '0']).stdout);
    const mem = j.top.map((e: { memory: { total: number } }) => e.memory.total);
    expect(mem).toEqual([...mem].sort((a, b) => a - b));
    expect(j.best.plan.recompute).toBe('full');
  });

  it('rejects a bad --objective without printing an answer', () => {
    const r = runCli(['--mesh', '2x4', '--model', 'tiny', '--objective', 'speed']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('rejects a mesh larger than the model can use in one line, exit 2', () => {
    const r = runCli(['--mesh', '256x256', '--model', 'tiny']);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^mesh-search: the mesh rows:256;cols:256 has 65536 devices, more than tiny can use/);
    expect(r.stdout).toBe('');
  });
});
