import { describe, expect, it } from 'vitest';
import { getDevice } from '../src/cost/presets.js';
import { exportPlan } from '../src/export/index.js';
import { planFromJson } from '../src/lower/plan.js';
import { parseMesh } from '../src/mesh/mesh.js';
import { getPreset } from '../src/model/presets.js';
import { checkExport } from './engine.check.js';
import { runCli } from './search.helpers.js';

describe('mesh-search on MoE models', () => {
  it('--mesh 8x8 --model mixtral-8x7b --device h100-sxm returns a feasible plan that splits experts', () => {
    const r = runCli(['--mesh', '8x8', '--model', 'mixtral-8x7b', '--device', 'h100-sxm', '--json', '--workers', '0']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.best.feasible).toBe(true);
    expect(j.best.plan.layout).toMatch(/(^|;)experts:/);
    expect(j.best.memory.total).toBeLessThanOrEqual(j.best.memory.capacity);
    // The dispatch and combine all-to-alls are in its communication.
    expect(j.best.communication.collectives.some((c: { kind: string }) => c.kind === 'all-to-all')).toBe(true);
    // Its Megatron-LM export passes the engine fixture check, with the experts over the experts' axes.
    const input = { plan: planFromJson(j.best.plan), mesh: parseMesh('8x8'), spec: getPreset('mixtral-8x7b'), profile: getDevice('h100-sxm') };
    const text = exportPlan(input, 'megatron').text;
    expect(checkExport('megatron', text, input)).toEqual([]);
    expect(text).toContain('--num-experts 8');
    expect(text).toContain('--moe-router-topk 2');
    expect(text).toContain('--expert-model-parallel-size 8');
  });

  it('--engine maxtext --export maxtext on mixtral-8x7b: a decoder_block mixtral config with experts on the expert axis, which passes the fixture check', () => {
    const r = runCli(['--mesh', '8x8', '--model', 'mixtral-8x7b', '--device', 'h100-sxm', '--engine', 'maxtext', '--export', 'maxtext', '--workers', '0']);
    expect(r.code, r.stderr).toBe(0);
    const plan = JSON.parse(runCli(['--mesh', '8x8', '--model', 'mixtral-8x7b', '--device', 'h100-sxm', '--engine', 'maxtext', '--json', '--workers', '0']).stdout).best.plan;
    expect(plan.layout).toMatch(/(^|;)experts:/);
    const input = { plan: planFromJson(plan), mesh: parseMesh('8x8'), spec: getPreset('mixtral-8x7b'), profile: getDevice('h100-sxm') };
    expect(r.stdout).toBe(exportPlan(input, 'maxtext').text);
    expect(checkExport('maxtext', r.stdout, input)).toEqual([]);
    expect(r.stdout).toMatch(/^num_experts: 8$/m);
    expect(r.stdout).toMatch(/^num_experts_per_tok: 2$/m);
    expect(r.stdout).toMatch(/^ici_expert_parallelism: [2-8]$/m);
  });

  it('--engine deepspeed --export deepspeed on mixtral-8x7b: an AutoEP section with the plan\'s expert split, which passes the fixture check', () => {
    const r = runCli(['--mesh', '8x8', '--model', 'mixtral-8x7b', '--device', 'h100-sxm', '--engine', 'deepspeed', '--export', 'deepspeed', '--workers', '0']);
    expect(r.code, r.stderr).toBe(0);
    const plan = JSON.parse(runCli(['--mesh', '8x8', '--model', 'mixtral-8x7b', '--device', 'h100-sxm', '--engine', 'deepspeed', '--json', '--workers', '0']).stdout).best.plan;
    expect(plan.layout).toMatch(/(^|;)experts:/);
    const input = { plan: planFromJson(plan), mesh: parseMesh('8x8'), spec: getPreset('mixtral-8x7b'), profile: getDevice('h100-sxm') };
    expect(r.stdout).toBe(exportPlan(input, 'deepspeed').text);
    expect(checkExport('deepspeed', r.stdout, input)).toEqual([]);
    const ep = JSON.parse(r.stdout).expert_parallel;
    expect(ep.enabled).toBe(true);
    expect(ep.top_k).toBe(2);
    expect(8 % ep.autoep_size).toBe(0);
    expect(ep.autoep_size).toBeGreaterThan(1);
  });

  it('--engine torchtitan --export torchtitan on qwen3-30b-a3b: the shipped qwen3 config, experts over FSDP ranks, which passes the fixture check', () => {
    const args = ['--mesh', '8x8', '--model', 'qwen3-30b-a3b', '--device', 'h100-sxm', '--engine', 'torchtitan', '--workers', '0'];
    const r = runCli([...args, '--export', 'torchtitan']);
    expect(r.code, r.stderr).toBe(0);
    const plan = JSON.parse(runCli([...args, '--json']).stdout).best.plan;
    expect(plan.layout).toMatch(/(^|;)experts:/);
    const input = { plan: planFromJson(plan), mesh: parseMesh('8x8'), spec: getPreset('qwen3-30b-a3b'), profile: getDevice('h100-sxm') };
    expect(r.stdout).toBe(exportPlan(input, 'torchtitan').text);
    expect(checkExport('torchtitan', r.stdout, input)).toEqual([]);
    expect(r.stdout).toMatch(/^--module torchtitan\.models\.qwen3 \\$/m);
    expect(r.stdout).toMatch(/^--config qwen3_30b_a3b \\$/m);
    const ep = Number(/^--parallelism\.expert_parallel_degree (\d+)/m.exec(r.stdout)![1]);
    expect(ep).toBeGreaterThan(1);
    expect(128 % ep).toBe(0);
    // Mixtral is no torchtitan model: a one-line refusal, no stack trace.
    const mixtral = runCli(['--mesh', '8x8', '--model', 'mixtral-8x7b', '--device', 'h100-sxm', '--engine', 'torchtitan', '--workers', '0']);
    expect(mixtral.code).toBe(2);
    expect(mixtral.stderr.trim().split('\n')).toHaveLength(1);
    expect(mixtral.stderr).toMatch(/no shipped flavor/);
  });

  it('--export maxtext refuses in one line what decoder_block mixtral cannot build, and experts off the batch axes', () => {
    const shared = runCli(['export', '--mesh', '2x2', '--model', 'tiny-moe', '--layout', 'batch:rows+cols;experts:cols', '--format', 'maxtext']);
    expect(shared.code).toBe(2);
    expect(shared.stderr.trim().split('\n')).toHaveLength(1);
    expect(shared.stderr).toMatch(/decoder_block mixtral/);
    const off = runCli(['export', '--mesh', '8x8', '--model', 'mixtral-8x7b', '--device', 'h100-sxm', '--layout', 'batch:rows;experts:cols', '--zero', '3', '--format', 'maxtext']);
    expect(off.code).toBe(2);
    expect(off.stderr).toMatch(/expert axis shards batch/);
  });

  it('models lists the MoE presets with their total and active parameters', () => {
    const rows = JSON.parse(runCli(['models', '--json']).stdout) as { name: string; params: number; activeParams?: number }[];
    const m = rows.find((r) => r.name === 'mixtral-8x7b')!;
    expect(m.activeParams! / m.params).toBeCloseTo(12.9 / 46.7, 2);
    expect(rows.find((r) => r.name === 'llama2-7b')!.activeParams).toBeUndefined();
    expect(runCli(['models']).stdout).toMatch(/mixtral-8x7b\s+46\.70B \(12\.88B active\)/);
  });

  it('estimate reports the all-to-alls of experts on the batch axis', () => {
    const r = runCli(['estimate', '--mesh', '2x2', '--model', 'tiny-moe', '--layout', 'batch:rows+cols;experts:cols', '--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    const a2a = j.communication.collectives.filter((c: { kind: string }) => c.kind === 'all-to-all');
    // 2 sequences × 80 slots (2 × 1.25 × 32) × d_model 64 × 4 bytes, 4 per layer (dispatch, combine, both backward), 2 layers.
    expect(a2a).toEqual([{ kind: 'all-to-all', axes: ['cols'], bytes: 2 * 80 * 64 * 4, count: 8 }]);
  });

  it('run --check executes tiny-moe with experts on a batch axis (all-to-all) and matches the unsplit model', () => {
    const r = runCli(['run', '--mesh', '2x2', '--model', 'tiny-moe', '--layout', 'batch:rows+cols;experts:cols', '--steps', '2', '--check', '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.steps).toHaveLength(2);
    expect(out.check.loss).toBeLessThan(1e-5);
    // Parameters with Adam's default eps: a few gradient elements are float noise near zero (see runtime.moe.test.ts).
    expect(out.check.maxRelativeError).toBeLessThan(5e-3);
    expect(out.ops.map((o: { name: string }) => o.name)).toContain('decoder.moe.w1');
  });

  it('refuses a layout naming a dimension no layout splits, in one line, exit 2', () => {
    const r = runCli(['estimate', '--mesh', '2x2', '--model', 'tiny-moe', '--layout', 'expert_capacity:cols']);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('is never split');
  });
});
