import { ELEMENT_FLOPS } from '../lower/lower.js';
import { InputError, check } from '../errors.js';
import type { CollectiveKind } from '../lower/collectives.js';
import { COLLECTIVE_KINDS } from '../lower/collectives.js';
import type { Dtype } from '../model/spec.js';
import type { Torus } from './torus.js';

/** One direction of a link, per device: bandwidth in bytes/s and latency per ring step in s. */
export interface Link {
  readonly bandwidth: number;
  readonly latency: number;
  /**
   * Optional: the fraction of `bandwidth` a collective of each kind achieves on this link (NCCL's
   * bus bandwidth over the datasheet figure); absent kinds achieve all of it.
   */
  readonly efficiency?: Readonly<Partial<Record<CollectiveKind, number>>>;
  /**
   * Optional: the fraction of this link's overlappable collectives (gradient reduction, ZeRO
   * gathers) that can hide behind compute at all (the profile's `overlap` says how much compute
   * they hide behind); the rest is exposed. Absent: 1. Calibration fits it per network level.
   */
  readonly overlap?: number;
  /**
   * Optional: how a reduction (allreduce, reduce-scatter) moves its data. Absent: a ring, each
   * device sending 2(n−1)/n (allreduce) or (n−1)/n of the buffer. `gather`: every device reads
   * each peer's whole buffer and sums all n itself, at the profile's memory bandwidth, as the
   * simulated mesh's device threads do (src/runtime/executor.ts).
   */
  readonly reduction?: 'gather';
}

/** A level of the network: up to `devices` consecutive devices share this link. */
export interface Level {
  readonly name: string;
  readonly devices: number;
  readonly link: Link;
  /**
   * Optional: the level is a torus of chips (a TPU slice), and link.bandwidth is a chip's over all
   * its dimensions' links; an axis gets the share of the dimensions it spans (cost/torus.ts).
   */
  readonly torus?: Torus;
  /**
   * Optional: the level holds the devices one thread of the simulated mesh runs (the `host`
   * profile): its device count is the mesh's devices per thread, each thread a contiguous block of
   * device indices (src/runtime/threads.ts), and `devices` is not read.
   */
  readonly perThread?: boolean;
}

export type OpClassName = 'matmul' | 'elementwise' | 'softmax' | 'reduction';

/** A hardware profile (DESIGN.md): presets ship, calibration writes new ones. */
export interface HardwareProfile {
  readonly name: string;
  readonly description: string;
  /** Peak FLOP/s per device, by dtype. */
  readonly peakFlops: Readonly<Record<Dtype, number>>;
  readonly memoryBytes: number;
  /** HBM bandwidth per device, bytes/s: what elementwise ops are priced by. */
  readonly memoryBandwidth: number;
  /** Network levels, innermost first; an axis uses the first level that holds all its devices. */
  readonly levels: readonly Level[];
  /** Per mesh axis overrides (calibration fits these). */
  readonly axisLinks?: Readonly<Record<string, Link>>;
  /** Fraction of peak (matmul) or of memory bandwidth (the others) each op class reaches. */
  readonly efficiency: Readonly<Record<OpClassName, number>>;
  /**
   * Optional, per op class: the work (FLOPs for matmuls, bytes for the others) at which an op
   * reaches half its class efficiency; efficiency at work w is efficiency·w/(w + halfWork), i.e.
   * a fixed cost per kernel, so small matmuls run further below peak. Absent or 0: no size effect.
   */
  readonly efficiencyHalfWork?: Readonly<Partial<Record<OpClassName, number>>>;
  /**
   * Optional GEMM shape curve: a matmul of local sizes m, n, k reaches efficiency.matmul ·
   * Π x/(x + gemmHalfSize) over x in m, n, k (small or skinny GEMMs run below peak). Absent: 1.
   */
  readonly gemmHalfSize?: number;
  /** Optional: seconds each kernel launch costs beyond its roofline time. */
  readonly launchOverhead?: number;
  /**
   * Optional, by op kind (`act`, ...): seconds per element of an op's output (forward and its rerun)
   * and of its gradient (backward), kernel launches aside, where a backend runs the op as several
   * kernels whose time its bytes do not tell (the host's tfjs GELU is about 7 of them, its gradient
   * about 12: bench/host). Replaces the class's bandwidth pricing for that kind.
   */
  readonly elementSeconds?: Readonly<Partial<Record<string, { readonly forward: number; readonly backward: number }>>>;
  /** Optional: peak FLOP/s of the vector units, which bound non-matmul ops with many FLOPs per byte. */
  readonly vectorFlops?: number;
  /** Optional: fixed seconds per collective call, beyond its ring steps (NCCL's launch and sync). */
  readonly collectiveLatency?: number;
  /**
   * Fraction of the compute that overlappable communication (data-parallel gradient reduction,
   * ZeRO parameter gathers) can hide behind (0..1): 1 is bucketed overlap as PyTorch DDP and
   * Megatron's --overlap-grad-reduce do it, always less the last bucket.
   */
  readonly overlap: number;
  /**
   * Optional: fraction of the backward's tensor-parallel collectives (a layout's activation
   * collectives) hidden behind the weight gradients' GEMMs, which do not depend on them (0 unless
   * the engine overlaps them). The forward's (and recompute's) are never hidden: the next op reads them.
   */
  readonly tensorParallelOverlap?: number;
  /**
   * Optional: what full recompute runs again. 'layer' (absent): the layer's whole forward, as
   * PyTorch's checkpoint and Megatron-LM's full granularity do. 'needed': only the forward ops whose
   * outputs the backward reads, or that rebuild those, as XLA compiles JAX's remat and TF's
   * recompute_grad (it drops dead code: the MLP's output projection is not rerun).
   */
  readonly fullRecompute?: 'layer' | 'needed';
  /**
   * Optional: the speed of eager PyTorch's kernels (torchtitan, DeepSpeed, llm-foundry: the model
   * code run op by op) as a fraction of the fused ones (Transformer Engine, XLA) the efficiencies
   * describe; absent: 1. An engine that runs eager kernels applies it (engine asRunBy).
   */
  readonly eagerCompute?: number;
  /** Optional: whose kernels the efficiencies describe: 'fused' (absent), or 'eager' once asRunBy has applied eagerCompute. */
  readonly kernels?: 'fused' | 'eager';
  /** Optional: how many devices of the mesh compute at once (a host's cores); beyond it they share. */
  readonly concurrentDevices?: number;
  /**
   * Optional: how the engine runs a pipeline's microbatches. '1f1b' (absent): 1F1B, interleaved
   * over virtual stages (Narayanan et al. 2021). 'sequential': one microbatch at a time, its
   * forward through every stage and its backward back before the next starts (no two stages ever
   * run at once), as the simulated mesh's runtime runs them (src/runtime/executor.ts step).
   */
  readonly pipelineSchedule?: '1f1b' | 'sequential';
  /** Where each number came from. */
  readonly sources: Readonly<Record<string, string>>;
  /** Set by calibration: what the profile was fitted from. */
  readonly fittedFrom?: unknown;
  /**
   * Optional: the chip, when profiles of one chip differ only in their network (DGX H100 and
   * A3 VMs): bench/accuracy fits them as one family, sharing the chip's constants.
   */
  readonly chip?: string;
}

export function validateProfile(value: unknown, where = 'profile'): HardwareProfile {
  check(typeof value === 'object' && value !== null && !Array.isArray(value), `${where}: expected a JSON object`);
  const o = value as Record<string, unknown>;
  // Finite and within what hardware can be (bounds well outside every datasheet): absurd numbers would price as Infinity or NaN.
  const num = (v: unknown, what: string, lo: number, hi: number, unit: string) =>
    check(typeof v === 'number' && Number.isFinite(v) && v >= lo && v <= hi, `${where}: ${what} must be a number from ${lo} to ${hi}${unit}, got ${JSON.stringify(v) ?? 'nothing'}`);
  const pos = (v: unknown, what: string, lo = 1e3, hi = 1e18, unit = '') => num(v, what, lo, hi, unit);
  const latency = (v: unknown, what: string) => num(v, what, 0, 1, ' s');
  check(typeof o.name === 'string', `${where}: "name" must be a string`);
  const peak = o.peakFlops as Record<string, unknown> | undefined;
  check(typeof peak === 'object' && peak !== null, `${where}: "peakFlops" must be an object by dtype`);
  for (const d of ['bfloat16', 'float16', 'float32']) pos(peak[d], `peakFlops.${d}`, 1e6, 1e18, ' FLOP/s');
  pos(o.memoryBytes, 'memoryBytes', 2 ** 20, 2 ** 50, ' bytes');
  pos(o.memoryBandwidth, 'memoryBandwidth', 1e6, 1e16, ' bytes/s');
  check(Array.isArray(o.levels) && o.levels.length > 0, `${where}: "levels" must be a non-empty list`);
  for (const [i, l] of (o.levels as Record<string, unknown>[]).entries()) {
    check(typeof l === 'object' && l !== null, `${where}: levels[${i}] must be an object`);
    check(Number.isSafeInteger(l.devices) && (l.devices as number) >= 1, `${where}: levels[${i}].devices must be an integer >= 1, got ${JSON.stringify(l.devices)}`);
    const link = l.link as Record<string, unknown>;
    check(typeof link === 'object' && link !== null, `${where}: levels[${i}].link must be an object`);
    pos(link.bandwidth, `levels[${i}].link.bandwidth`, 1e3, 1e18, ' bytes/s');
    latency(link.latency, `levels[${i}].link.latency`);
    check(l.perThread === undefined || typeof l.perThread === 'boolean', `${where}: levels[${i}].perThread must be true or false, got ${JSON.stringify(l.perThread)}`);
    if (l.torus !== undefined) {
      const t = l.torus as Record<string, unknown>;
      check(typeof t === 'object' && t !== null && !Array.isArray(t), `${where}: levels[${i}].torus must be an object like {"dims": 3, "cube": 4}`);
      check(Number.isInteger(t.dims) && (t.dims as number) >= 1 && (t.dims as number) <= 6, `${where}: levels[${i}].torus.dims must be a whole number from 1 to 6, got ${JSON.stringify(t.dims)}`);
      check(t.cube === undefined || (Number.isInteger(t.cube) && (t.cube as number) >= 1 && (t.cube as number) <= 64), `${where}: levels[${i}].torus.cube must be a whole number from 1 to 64, got ${JSON.stringify(t.cube)}`);
    }
  }
  check((o.levels as Record<string, unknown>[]).filter((l) => l.torus !== undefined).length <= 1, `${where}: at most one level may be a torus`);
  if (o.axisLinks !== undefined) {
    check(typeof o.axisLinks === 'object' && o.axisLinks !== null && !Array.isArray(o.axisLinks), `${where}: "axisLinks" must be an object`);
    for (const [a, l] of Object.entries(o.axisLinks as Record<string, Record<string, unknown>>)) {
      check(typeof l === 'object' && l !== null, `${where}: axisLinks.${a} must be an object with bandwidth and latency`);
      pos(l.bandwidth, `axisLinks.${a}.bandwidth`, 1e3, 1e18, ' bytes/s');
      latency(l.latency, `axisLinks.${a}.latency`);
    }
  }
  const eff = o.efficiency as Record<string, unknown>;
  check(typeof eff === 'object' && eff !== null, `${where}: "efficiency" must be an object`);
  for (const k of ['matmul', 'elementwise', 'softmax', 'reduction']) {
    const v = eff[k];
    check(typeof v === 'number' && v > 0 && v <= 1, `${where}: efficiency.${k} must be in (0, 1], got ${JSON.stringify(v)}`);
  }
  if (o.efficiencyHalfWork !== undefined) {
    const h = o.efficiencyHalfWork as Record<string, unknown>;
    check(typeof h === 'object' && h !== null && !Array.isArray(h), `${where}: "efficiencyHalfWork" must be an object by op class`);
    for (const [k, v] of Object.entries(h)) {
      check(['matmul', 'elementwise', 'softmax', 'reduction'].includes(k), `${where}: efficiencyHalfWork.${k} is not an op class (matmul, elementwise, softmax, reduction)`);
      num(v, `efficiencyHalfWork.${k}`, 0, 1e18, '');
    }
  }
  check(typeof o.overlap === 'number' && o.overlap >= 0 && o.overlap <= 1, `${where}: "overlap" must be in [0, 1], got ${JSON.stringify(o.overlap) ?? 'nothing'}`);
  check(o.description === undefined || typeof o.description === 'string', `${where}: "description" must be a string`);
  check(o.chip === undefined || (typeof o.chip === 'string' && o.chip.length > 0), `${where}: "chip" must be a non-empty string`);
  check(o.sources === undefined || (typeof o.sources === 'object' && o.sources !== null && !Array.isArray(o.sources)), `${where}: "sources" must be an object`);
  const optional = (key: string, ok: (v: number) => boolean, what: string) => {
    const v = o[key];
    if (v === undefined) return;
    check(typeof v === 'number' && Number.isFinite(v) && ok(v), `${where}: "${key}" must be ${what}, got ${JSON.stringify(v)}`);
  };
  optional('gemmHalfSize', (v) => v >= 0 && v <= 1e9, 'a number of elements >= 0');
  optional('launchOverhead', (v) => v >= 0 && v <= 1, 'seconds >= 0 (at most 1)');
  optional('vectorFlops', (v) => v >= 1e6, 'a FLOP/s figure >= 1e6');
  if (o.elementSeconds !== undefined) {
    const es = o.elementSeconds as Record<string, unknown>;
    check(typeof es === 'object' && es !== null && !Array.isArray(es), `${where}: "elementSeconds" must be an object by op kind`);
    for (const [k, v] of Object.entries(es)) {
      check(k in ELEMENT_FLOPS && ELEMENT_FLOPS[k] > 0, `${where}: elementSeconds.${k} is not an elementwise op kind with work (${Object.keys(ELEMENT_FLOPS).filter((x) => ELEMENT_FLOPS[x] > 0).join(', ')})`);
      const e = v as Record<string, unknown>;
      check(typeof e === 'object' && e !== null, `${where}: elementSeconds.${k} must be {"forward": s, "backward": s}`);
      for (const ph of ['forward', 'backward']) num(e[ph], `elementSeconds.${k}.${ph}`, 0, 1, ' s');
    }
  }
  optional('collectiveLatency', (v) => v >= 0 && v <= 1, 'seconds >= 0 (at most 1)');
  optional('tensorParallelOverlap', (v) => v >= 0 && v <= 1, 'in [0, 1]');
  check(o.fullRecompute === undefined || o.fullRecompute === 'layer' || o.fullRecompute === 'needed', `${where}: "fullRecompute" must be "layer" or "needed", got ${JSON.stringify(o.fullRecompute)}`);
  optional('eagerCompute', (v) => v > 0 && v <= 1.5, 'in (0, 1.5]');
  check(o.kernels === undefined || o.kernels === 'fused' || o.kernels === 'eager', `${where}: "kernels" must be "fused" or "eager", got ${JSON.stringify(o.kernels)}`);
  optional('concurrentDevices', (v) => Number.isInteger(v) && v >= 1, 'a whole number >= 1');
  check(o.pipelineSchedule === undefined || o.pipelineSchedule === '1f1b' || o.pipelineSchedule === 'sequential', `${where}: "pipelineSchedule" must be "1f1b" or "sequential", got ${JSON.stringify(o.pipelineSchedule)}`);
  const linkEff = (l: Record<string, unknown>, at: string) => {
    if (l.efficiency === undefined) return;
    check(typeof l.efficiency === 'object' && l.efficiency !== null && !Array.isArray(l.efficiency), `${where}: ${at}.efficiency must be an object by collective kind`);
    for (const [k, v] of Object.entries(l.efficiency as Record<string, unknown>)) {
      check((COLLECTIVE_KINDS as readonly string[]).includes(k), `${where}: ${at}.efficiency.${k} is not a collective kind (${COLLECTIVE_KINDS.join(', ')})`);
      check(typeof v === 'number' && v > 0 && v <= 1, `${where}: ${at}.efficiency.${k} must be in (0, 1], got ${JSON.stringify(v)}`);
    }
  };
  (o.levels as Record<string, unknown>[]).forEach((l, i) => {
    const link = l.link as Record<string, unknown>;
    linkEff(link, `levels[${i}].link`);
    check(link.overlap === undefined || (typeof link.overlap === 'number' && link.overlap >= 0 && link.overlap <= 1), `${where}: levels[${i}].link.overlap must be in [0, 1], got ${JSON.stringify(link.overlap)}`);
    check(link.reduction === undefined || link.reduction === 'gather', `${where}: levels[${i}].link.reduction must be "gather" or absent (a ring), got ${JSON.stringify(link.reduction)}`);
  });
  for (const [a, l] of Object.entries((o.axisLinks ?? {}) as Record<string, Record<string, unknown>>)) linkEff(l, `axisLinks.${a}`);
  return { description: '', sources: {}, ...(o as object) } as HardwareProfile;
}

export function profileError(name: string, known: string[]): InputError {
  return new InputError(`unknown device "${name}"; presets are ${known.join(', ')} (or give a profile JSON file)`);
}
