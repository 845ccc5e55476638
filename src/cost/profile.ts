import { InputError, check } from '../errors.js';
import type { CollectiveKind } from '../lower/collectives.js';
import { COLLECTIVE_KINDS } from '../lower/collectives.js';
import type { Dtype } from '../model/spec.js';

/** One direction of a link, per device: bandwidth in bytes/s and latency per ring step in s. */
export interface Link {
  readonly bandwidth: number;
  readonly latency: number;
  /**
   * Optional: the fraction of `bandwidth` a collective of each kind achieves on this link (NCCL's
   * bus bandwidth over the datasheet figure); absent kinds achieve all of it.
   */
  readonly efficiency?: Readonly<Partial<Record<CollectiveKind, number>>>;
}

/** A level of the network: up to `devices` consecutive devices share this link. */
export interface Level {
  readonly name: string;
  readonly devices: number;
  readonly link: Link;
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
  /** Optional: fraction of tensor-parallel collectives hidden behind compute (0 unless the engine overlaps them). */
  readonly tensorParallelOverlap?: number;
  /** Optional: how many devices of the mesh compute at once (a host's cores); beyond it they share. */
  readonly concurrentDevices?: number;
  /** Where each number came from. */
  readonly sources: Readonly<Record<string, string>>;
  /** Set by calibration: what the profile was fitted from. */
  readonly fittedFrom?: unknown;
}

export function validateProfile(value: unknown, where = 'profile'): HardwareProfile {
  check(typeof value === 'object' && value !== null && !Array.isArray(value), `${where}: expected a JSON object`);
  const o = value as Record<string, unknown>;
  const pos = (v: unknown, what: string) =>
    check(typeof v === 'number' && Number.isFinite(v) && v > 0, `${where}: ${what} must be a positive number, got ${JSON.stringify(v)}`);
  check(typeof o.name === 'string', `${where}: "name" must be a string`);
  const peak = o.peakFlops as Record<string, unknown> | undefined;
  check(typeof peak === 'object' && peak !== null, `${where}: "peakFlops" must be an object by dtype`);
  for (const d of ['bfloat16', 'float16', 'float32']) pos(peak[d], `peakFlops.${d}`);
  pos(o.memoryBytes, 'memoryBytes');
  pos(o.memoryBandwidth, 'memoryBandwidth');
  check(Array.isArray(o.levels) && o.levels.length > 0, `${where}: "levels" must be a non-empty list`);
  for (const [i, l] of (o.levels as Record<string, unknown>[]).entries()) {
    check(typeof l === 'object' && l !== null, `${where}: levels[${i}] must be an object`);
    pos(l.devices, `levels[${i}].devices`);
    const link = l.link as Record<string, unknown>;
    check(typeof link === 'object' && link !== null, `${where}: levels[${i}].link must be an object`);
    pos(link.bandwidth, `levels[${i}].link.bandwidth`);
    check(typeof link.latency === 'number' && link.latency >= 0, `${where}: levels[${i}].link.latency must be >= 0`);
  }
  if (o.axisLinks !== undefined) {
    check(typeof o.axisLinks === 'object' && o.axisLinks !== null, `${where}: "axisLinks" must be an object`);
    for (const [a, l] of Object.entries(o.axisLinks as Record<string, Record<string, unknown>>)) {
      pos(l?.bandwidth, `axisLinks.${a}.bandwidth`);
      check(typeof l.latency === 'number' && l.latency >= 0, `${where}: axisLinks.${a}.latency must be >= 0`);
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
      check(typeof v === 'number' && Number.isFinite(v) && v >= 0, `${where}: efficiencyHalfWork.${k} must be a number >= 0, got ${JSON.stringify(v)}`);
    }
  }
  check(typeof o.overlap === 'number' && o.overlap >= 0 && o.overlap <= 1, `${where}: "overlap" must be in [0, 1]`);
  const optional = (key: string, ok: (v: number) => boolean, what: string) => {
    const v = o[key];
    if (v === undefined) return;
    check(typeof v === 'number' && Number.isFinite(v) && ok(v), `${where}: "${key}" must be ${what}, got ${JSON.stringify(v)}`);
  };
  optional('gemmHalfSize', (v) => v >= 0 && v <= 1e9, 'a number of elements >= 0');
  optional('launchOverhead', (v) => v >= 0 && v <= 1, 'seconds >= 0 (at most 1)');
  optional('vectorFlops', (v) => v >= 1e6, 'a FLOP/s figure >= 1e6');
  optional('collectiveLatency', (v) => v >= 0 && v <= 1, 'seconds >= 0 (at most 1)');
  optional('tensorParallelOverlap', (v) => v >= 0 && v <= 1, 'in [0, 1]');
  optional('concurrentDevices', (v) => Number.isInteger(v) && v >= 1, 'a whole number >= 1');
  const linkEff = (l: Record<string, unknown>, at: string) => {
    if (l.efficiency === undefined) return;
    check(typeof l.efficiency === 'object' && l.efficiency !== null && !Array.isArray(l.efficiency), `${where}: ${at}.efficiency must be an object by collective kind`);
    for (const [k, v] of Object.entries(l.efficiency as Record<string, unknown>)) {
      check((COLLECTIVE_KINDS as readonly string[]).includes(k), `${where}: ${at}.efficiency.${k} is not a collective kind (${COLLECTIVE_KINDS.join(', ')})`);
      check(typeof v === 'number' && v > 0 && v <= 1, `${where}: ${at}.efficiency.${k} must be in (0, 1], got ${JSON.stringify(v)}`);
    }
  };
  (o.levels as Record<string, unknown>[]).forEach((l, i) => linkEff(l.link as Record<string, unknown>, `levels[${i}].link`));
  for (const [a, l] of Object.entries((o.axisLinks ?? {}) as Record<string, Record<string, unknown>>)) linkEff(l, `axisLinks.${a}`);
  return { description: '', sources: {}, ...(o as object) } as HardwareProfile;
}

export function profileError(name: string, known: string[]): InputError {
  return new InputError(`unknown device "${name}"; presets are ${known.join(', ')} (or give a profile JSON file)`);
}
