import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { HOST_MEASURED, hostProfile, loadHostProfile } from '../src/cost/host.js';
import { opTime } from '../src/cost/price.js';
import type { LoweredOp } from '../src/lower/program.js';
import { cli } from './support/cli.js';

const measured = JSON.parse(readFileSync(HOST_MEASURED, 'utf8'));

describe('the host profile', () => {
  it('is built from bench/host.bench.mjs\'s measurements, each cited', () => {
    const p = loadHostProfile();
    expect(p.peakFlops.float32).toBe(measured.matmulFlops);
    expect(p.memoryBandwidth).toBe(measured.memoryBandwidth);
    expect(p.levels[0].link).toEqual({ bandwidth: measured.sharedMemoryBandwidth, latency: measured.sharedMemoryLatency });
    for (const k of ['peakFlops', 'memoryBandwidth', 'levels.shared memory', 'concurrentDevices', 'launchOverhead']) expect(p.sources[k]).toMatch(/bench\/host\.bench\.mjs/);
  });

  it('prices a kernel of no size at the measured per-kernel overhead, and a large one at the measured rate', () => {
    const p = hostProfile({ ...measured, kernelOverheadSeconds: 2e-5, memoryBandwidth: 1e9, matmulFlops: 1e10, matmulOverheadSeconds: 1e-4 });
    const op = (klass: string, flops: number, bytes: number) => ({ klass, flops, bytes, gemm: null, kernel: true }) as unknown as LoweredOp;
    expect(opTime(p, op('elementwise', 0, 1), 1e10)).toBeCloseTo(2e-5 + 1e-9, 12);
    expect(opTime(p, op('elementwise', 0, 1e9), 1e10)).toBeCloseTo(1 + 2e-5, 9);
    expect(opTime(p, op('matmul', 1e10, 0), 1e10)).toBeCloseTo(1 + 1e-4, 9);
  });

  it('--device host prices an estimate; an unknown device names host among the presets', () => {
    const r = cli(['estimate', '--mesh', '2x2', '--model', 'small', '--layout', 'batch:rows;heads:cols', '--device', 'host', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).time.step).toBeGreaterThan(0);
    const bad = cli(['estimate', '--mesh', '2x2', '--model', 'small', '--layout', '', '--device', 'hots']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/host/);
  });
});
