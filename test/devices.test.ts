import { describe, expect, it } from 'vitest';
import { getDevice } from '../src/cost/presets.js';
import { validateProfile } from '../src/cost/profile.js';

const GB = 1e9, T = 1e12;
const ici = (name: string) => getDevice(name).levels[0];
const rel = (a: number, b: number) => Math.abs(a / b - 1);

// Each preset's per-chip constants against the per-pod or per-system totals the same datasheet
// prints independently: a per-chip figure mistyped (or halved the wrong way) fails here.
describe('the newer device presets agree with their datasheets\' system totals', () => {
  it('every one is a valid profile that cites a source for its peak, memory and links', () => {
    for (const name of ['tpu-v5e', 'tpu-v5p', 'tpu-v6e', 'b200']) {
      const p = getDevice(name);
      expect(validateProfile(JSON.parse(JSON.stringify(p))).name).toBe(name);
      for (const k of ['peak', 'memory', 'float32', 'latency']) expect(p.sources[k]?.length ?? 0).toBeGreaterThan(20);
    }
  });

  it('tpu-v5e: 256 chips give the pod\'s 50.63 PFLOPs bf16, 51.2 TB/s all-reduce and 6.4 Tbps of data-centre network', () => {
    const p = getDevice('tpu-v5e');
    expect(ici('tpu-v5e').devices).toBe(256);
    expect(rel(256 * p.peakFlops.bfloat16, 50.63e15)).toBeLessThan(0.005);
    expect(256 * ici('tpu-v5e').link.bandwidth).toBe(51.2 * T);
    expect(256 * p.levels[1].link.bandwidth * 8).toBe(6.4e12);
  });

  it('tpu-v6e: 256 chips give the pod\'s 234.9 PFLOPs bf16 and 102.4 TB/s all-reduce', () => {
    const p = getDevice('tpu-v6e');
    expect(ici('tpu-v6e').devices).toBe(256);
    expect(rel(256 * p.peakFlops.bfloat16, 234.9e15)).toBeLessThan(0.005);
    expect(256 * ici('tpu-v6e').link.bandwidth).toBe(102.4 * T);
  });

  it('tpu-v5p: each way is half the 1200 GBps bidirectional ICI per chip; DCN is 50 Gbps per chip; slices up to 6144 chips', () => {
    const p = getDevice('tpu-v5p');
    expect(2 * ici('tpu-v5p').link.bandwidth).toBe(1200 * GB);
    expect(p.levels[1].link.bandwidth * 8).toBe(50e9);
    expect(ici('tpu-v5p').devices).toBe(6144);
  });

  it('tpu-v5p and tpu-v6e, with no published rows, take the v5e fit\'s measured overlaps instead of the datasheet\'s assumed ones', () => {
    const v5e = getDevice('tpu-v5e');
    const dcnOverlap = (p: ReturnType<typeof getDevice>) => p.levels.find((l) => l.name === 'dcn')!.link.overlap;
    for (const name of ['tpu-v5p', 'tpu-v6e']) {
      const p = getDevice(name);
      // The datasheet profile assumes all the traffic between slices hidden (1); the v5e fit saw none.
      expect(dcnOverlap(v5e)).toBeLessThan(1);
      expect(p.tensorParallelOverlap).toBe(v5e.tensorParallelOverlap);
      expect(dcnOverlap(p)).toBe(dcnOverlap(v5e));
      expect(p.sources.tensorParallelOverlap).toMatch(/tpu-v5e fit/);
      expect(p.sources.linkOverlap).toMatch(/tpu-v5e fit/);
    }
  });

  it('b200: 8 GPUs give DGX B200\'s 1440 GB of HBM3e at 64 TB/s and 14.4 TB/s of NVLink', () => {
    const p = getDevice('b200');
    expect(ici('b200').devices).toBe(8);
    expect(8 * p.memoryBytes).toBe(1440 * GB);
    expect(8 * p.memoryBandwidth).toBe(64 * T);
    expect(8 * 2 * ici('b200').link.bandwidth).toBe(14.4 * T);
    expect(p.peakFlops.bfloat16).toBe(2.25e15);
  });
});
