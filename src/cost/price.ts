import { maskAxes, maskSize } from '../layout/layout.js';
import type { Mesh } from '../mesh/mesh.js';
import { innerSize } from '../mesh/mesh.js';
import { paramCount } from '../model/graph.js';
import { latencySteps, sentBytes, type CollectiveKind } from '../lower/collectives.js';
import { microBatchOf, recomputes, recordFlops, strategyOps } from '../lower/instantiate.js';
import { ELEMENT_FLOPS, type LayoutLowering } from '../lower/lower.js';
import { planToJson, RECOMPUTE, RECOMPUTE_LEVEL, type Plan } from '../lower/plan.js';
import type { Collective, LoweredOp, Program } from '../lower/program.js';
import { linAt, type GemmShape, type OpRecord } from '../lower/records.js';
import type { Estimate } from './estimate.js';
import type { HardwareProfile, Link } from './profile.js';
import { torusAxes, torusShare, type TorusAxes } from './torus.js';

/** The link of one mesh axis: an override, else the first level that holds the axis's devices (on a torus level, the share of it the axis's torus dimensions carry: torus.ts). */
export function axisLink(profile: HardwareProfile, mesh: Mesh, axis: number): Link {
  const name = mesh.axes[axis].name;
  const o = profile.axisLinks?.[name];
  if (o) return o;
  const level = networkLevel(profile, mesh, axis);
  const link = profile.levels[level].link;
  const t = torusOf(profile, mesh);
  const share = t?.on[axis] ? torusShare(t, 1 << axis) : 1;
  return share === 1 ? link : { ...link, bandwidth: link.bandwidth * share };
}

/** The torus dimensions each axis spans on the profile's torus level (torus.ts), axes with an axisLinks override off it. */
export function torusOf(profile: HardwareProfile, mesh: Mesh): TorusAxes | null {
  return torusAxes(profile, mesh, (i) => (profile.axisLinks?.[mesh.axes[i].name] ? -1 : networkLevel(profile, mesh, i)));
}

/**
 * Several axes at once run at the slowest achieved bandwidth and the largest latency (DESIGN.md,
 * Pricing), except that axes on a torus level pool their dimensions' links: a collective over
 * axes spanning every dimension of the slice gets all of the chip's bandwidth (torus.ts).
 */
export function maskLink(profile: HardwareProfile, mesh: Mesh, mask: number, kind: CollectiveKind = 'allreduce'): Link {
  let bw = Infinity;
  let lat = 0;
  const t = torusOf(profile, mesh);
  let onTorus = 0;
  for (let i = 0; i < mesh.axes.length; i++) {
    if (!(mask & (1 << i))) continue;
    if (t?.on[i]) { onTorus |= 1 << i; continue; }
    const l = axisLink(profile, mesh, i);
    bw = Math.min(bw, l.bandwidth * (l.efficiency?.[kind] ?? 1));
    lat = Math.max(lat, l.latency);
  }
  if (t && onTorus) {
    const l = profile.levels[t.level].link;
    bw = Math.min(bw, l.bandwidth * torusShare(t, onTorus) * (l.efficiency?.[kind] ?? 1));
    lat = Math.max(lat, l.latency);
  }
  return { bandwidth: bw, latency: lat };
}

const KIND_INDEX: Record<CollectiveKind, number> = { allreduce: 0, allgather: 1, 'reduce-scatter': 2, 'all-to-all': 3, send: 4 };
const linkCache = new WeakMap<HardwareProfile, WeakMap<Mesh, Map<number, { inv: number; fixed: number }>>>();

/** The level an axis's collectives are grouped by: an axisLinks override is a level of its own, else its networkLevel. */
export function axisLevel(profile: HardwareProfile, mesh: Mesh, axis: number): number {
  if (profile.axisLinks?.[mesh.axes[axis].name]) return profile.levels.length + axis;
  return networkLevel(profile, mesh, axis);
}

/**
 * The network level an axis's collectives run on: the first level that holds its span (the
 * devices of its inner axes times its own), except that an axis named `dcn` runs across the
 * outermost level whatever its span, as MaxText's dcn_* parallelism runs across slices (a
 * 2-slice mesh of v5p-128s is 128 chips, well within a v5p pod's ICI reach, but its slices talk
 * over the data-centre network).
 */
export function networkLevel(profile: HardwareProfile, mesh: Mesh, axis: number): number {
  const last = profile.levels.length - 1;
  if (mesh.axes[axis].name === 'dcn') return last;
  const span = innerSize(mesh, axis) * mesh.axes[axis].size;
  // A thread's devices are a contiguous block of indices: an axis lies within every block where its span divides the block.
  const i = profile.levels.findIndex((l) => (l.perThread ? threadBlock(profile, mesh) % span === 0 : span <= l.devices));
  return i < 0 ? last : i;
}

/** Devices per thread of the simulated mesh where the threads split it evenly, else 1 (no axis then lies within a thread). */
function threadBlock(profile: HardwareProfile, mesh: Mesh): number {
  const threads = threadsOf(profile, mesh);
  return mesh.size % threads === 0 ? mesh.size / threads : 1;
}

/**
 * Per (axes, kind): the seconds per byte sent and the fixed seconds of one call. Axes on one level
 * run one ring at that level's achieved bandwidth. A collective over axes on several levels runs
 * hierarchically, as NCCL and XLA's multi-slice collectives do: level by level from the innermost,
 * each outer level moving only the inner group's share (an allreduce: reduce-scatter inside,
 * allreduce across, allgather inside). All-to-alls and sends run one ring at the slowest level.
 */
function ringCost(profile: HardwareProfile, mesh: Mesh, mask: number, kind: CollectiveKind): { inv: number; fixed: number } {
  let byMesh = linkCache.get(profile);
  if (!byMesh) linkCache.set(profile, (byMesh = new WeakMap()));
  let m = byMesh.get(mesh);
  if (!m) byMesh.set(mesh, (m = new Map()));
  const key = mask * 8 + KIND_INDEX[kind];
  let r = m.get(key);
  if (!r) m.set(key, (r = ringCostOf(profile, mesh, mask, kind)));
  return r;
}

// Apart from ringCost, whose every call would otherwise allocate the context its closures capture.
function ringCostOf(profile: HardwareProfile, mesh: Mesh, mask: number, kind: CollectiveKind): { inv: number; fixed: number } {
  const n = kind === 'send' ? 2 : maskSize(mesh, mask);
  const call = profile.collectiveLatency ?? 0;
  const groups = new Map<number, number>(); // level -> mask of its axes
  for (let i = 0; i < mesh.axes.length; i++) if (mask & (1 << i)) groups.set(axisLevel(profile, mesh, i), (groups.get(axisLevel(profile, mesh, i)) ?? 0) | (1 << i));
  const share = (k: number) => (kind === 'allreduce' ? (2 * (k - 1)) / k : (k - 1) / k);
  if (n <= 1) return { inv: 0, fixed: 0 };
  // A gathering level (an axisLinks override is a level of its own, past the list) reduces as the
  // simulated mesh does, not by ring: gatherCost.
  const reduces = kind === 'allreduce' || kind === 'reduce-scatter';
  if (reduces && [...groups.keys()].some((level) => profile.levels[level]?.link.reduction === 'gather')) return gatherCost(profile, mesh, mask, groups, kind, n, call);
  if (groups.size <= 1 || kind === 'send' || kind === 'all-to-all') {
    const link = maskLink(profile, mesh, mask, kind);
    return { inv: 1 / link.bandwidth, fixed: latencySteps(kind, n) * link.latency + call };
  }
  // Innermost level first: the level's axes are the mesh's later (inner) ones.
  const levels = [...groups].sort((a, b) => b[1] - a[1]);
  let perByte = 0, fixed = call, inner = 1;
  for (const [, lm] of levels) {
    const k = maskSize(mesh, lm);
    const link = maskLink(profile, mesh, lm, kind);
    perByte += share(k) / inner / link.bandwidth;
    fixed += latencySteps(kind, k) * link.latency;
    inner *= k;
  }
  // collectiveTime multiplies by the bytes a flat ring would send: share(n) · buffer.
  return { inv: perByte / share(n), fixed };
}

/**
 * A reduction as the simulated mesh runs it (src/runtime/executor.ts collective, ring.ts): of a
 * group of n devices, L on each thread, every device posts its whole buffer to shared memory for
 * the other threads and each thread reads the n − L buffers it lacks (one crossing, post and read,
 * at the shared-memory level's bandwidth); each thread then sums what its own devices need: an
 * allreduce the n buffers once (a copy of the first, 2 buffers of traffic, then 3 for each one
 * added) and a copy for each further local device (2 each), a reduce-scatter each local device's
 * 1/n chunk over the n. Per device, of a buffer B:
 *   crossings n·B / (2L) at the outer level, when the group spans threads;
 *   sums (3n + 2L − 3)·B / L (allreduce) or (3n − 1)·B / n (reduce-scatter) at the thread's rate,
 * the rate bench/host measures of these very loops (the perThread level's link; without one, the
 * memory bandwidth). Latency: the outer levels' per call.
 */
function gatherCost(profile: HardwareProfile, mesh: Mesh, mask: number, groups: ReadonlyMap<number, number>, kind: CollectiveKind, n: number, call: number): { inv: number; fixed: number } {
  const threadLevel = profile.levels.find((l) => l.perThread);
  const L = threadLevel ? localMembers(profile, mesh, mask) : 1;
  let outerMask = 0;
  for (const [level, lm] of groups) if (!profile.levels[level]?.perThread) outerMask |= lm;
  const outer = L < n ? maskLink(profile, mesh, outerMask || mask, kind) : null;
  const sumRate = threadLevel ? threadLevel.link.bandwidth * (threadLevel.link.efficiency?.[kind] ?? 1) : profile.memoryBandwidth;
  const crossings = outer ? n / (2 * L) / outer.bandwidth : 0;
  const sums = (kind === 'allreduce' ? (3 * n + 2 * L - 3) / L : (3 * n - 1) / n) / sumRate;
  const share = kind === 'allreduce' ? (2 * (n - 1)) / n : (n - 1) / n;
  // collectiveTime multiplies by the bytes a flat ring would send: share · buffer.
  return { inv: (crossings + sums) / share, fixed: call + (outer ? latencySteps(kind, n / L) * outer.latency : 0) };
}

/**
 * Members of device 0's group over `mask` that run on device 0's thread: the runtime gives thread j
 * a contiguous block of device indices (src/runtime/threads.ts threadOwners), threadBlock of them.
 */
function localMembers(profile: HardwareProfile, mesh: Mesh, mask: number): number {
  const block = threadBlock(profile, mesh);
  let members = [0];
  for (let i = 0; i < mesh.axes.length; i++) {
    if (!(mask & (1 << i))) continue;
    const stride = innerSize(mesh, i);
    members = members.flatMap((m) => Array.from({ length: mesh.axes[i].size }, (_, j) => m + j * stride));
  }
  return Math.max(1, members.filter((m) => m < block).length);
}

/** The share of a collective over these axes that can hide at all: its outermost level's link.overlap (absent: 1). */
function hideableShare(profile: HardwareProfile, mesh: Mesh, mask: number): number {
  let outer = -1;
  for (let i = 0; i < mesh.axes.length; i++) if (mask & (1 << i)) outer = Math.max(outer, axisLevel(profile, mesh, i));
  return outer >= 0 && outer < profile.levels.length ? profile.levels[outer].link.overlap ?? 1 : 1;
}

/** Alpha-beta time of one collective on a ring: bytes over achieved bandwidth, latency per ring step, a fixed cost per call. */
export function collectiveTime(profile: HardwareProfile, mesh: Mesh, c: Pick<Collective, 'kind' | 'mask' | 'sent'>): number {
  return collectiveCalls(profile, mesh, c.kind, c.mask, c.sent, 1);
}

/** n calls of a collective sending `sent` bytes in all: Σ collectiveTime over the calls, one cost lookup. */
export function collectiveCalls(profile: HardwareProfile, mesh: Mesh, kind: CollectiveKind, mask: number, sent: number, n: number): number {
  const r = ringCost(profile, mesh, mask, kind);
  return sent * r.inv + n * r.fixed;
}

/** The GEMM shape factor Π x/(x + h) over m, n, k at microbatch mb (profile.gemmHalfSize). */
export function gemmFactor(profile: HardwareProfile, g: GemmShape | null, mb = 1): number {
  const h = profile.gemmHalfSize ?? 0;
  if (!g || h <= 0) return 1;
  return shapeFactor(h, g.scales === 'm' ? g.m * mb : g.m, g.scales === 'n' ? g.n * mb : g.n, g.scales === 'k' ? g.k * mb : g.k);
}

/** The saturating curve of gemmFactor: each GEMM side x runs at x / (x + h) of the large-GEMM rate. */
export function shapeFactor(h: number, m: number, n: number, k: number): number {
  return (m / (m + h)) * (n / (n + h)) * (k / (k + h));
}

/** What an op's compute time depends on. */
export interface OpWork {
  readonly klass: LoweredOp['klass'];
  readonly flops: number;
  readonly bytes: number;
  readonly gemm: GemmShape | null;
  readonly kernel: boolean;
  /** The op's kind and phase, where the profile prices some kinds per element (elementSeconds). */
  readonly kind?: string;
  readonly phase?: string;
}

/**
 * Seconds of an elementwise op the profile prices per element (HardwareProfile.elementSeconds):
 * its elements (its FLOPs over the lowering's FLOPs per element) at the measured seconds each, a
 * backward at the backward's, plus its launch; null where the profile has no figure for its kind.
 */
function kindSeconds(profile: HardwareProfile, klass: OpWork['klass'], kind: string | undefined, phase: string | undefined, flops: number, kernel: boolean): number | null {
  const es = kind !== undefined && klass !== 'matmul' ? profile.elementSeconds?.[kind] : undefined;
  if (!es || flops <= 0) return null;
  const elements = flops / ELEMENT_FLOPS[kind!];
  return elements * (phase === 'backward' ? es.backward : es.forward) + (kernel ? (profile.launchOverhead ?? 0) : 0);
}

/**
 * Compute time of one execution of an op, a roofline (DESIGN.md, Pricing): matmuls
 * max(FLOPs / (peak × η(GEMM shape)), bytes / (HBM × η_mem)), other ops max(bytes / (HBM × η_class),
 * FLOPs / vector peak), plus a launch overhead per kernel; an op with no work launches none.
 * `efficiencyHalfWork` (calibration fits it) adds a per-kernel cost in units of work.
 */
export function opTime(profile: HardwareProfile, op: OpWork, peak: number, mb = 1): number {
  return kindSeconds(profile, op.klass, op.kind, op.phase, op.flops, op.kernel) ?? opSeconds(profile, op.klass, op.flops, op.bytes, op.gemm, op.kernel, peak, mb);
}

function opSeconds(profile: HardwareProfile, klass: OpWork['klass'], flops: number, bytes: number, gemm: GemmShape | null, kernel: boolean, peak: number, mb: number): number {
  if (flops <= 0 && bytes <= 0) return 0;
  const launch = kernel ? (profile.launchOverhead ?? 0) : 0;
  const bw = profile.memoryBandwidth;
  if (klass === 'matmul') {
    const half = profile.efficiencyHalfWork?.matmul ?? 0;
    const t = (flops + half) / (peak * profile.efficiency.matmul * gemmFactor(profile, gemm, mb));
    return Math.max(t, bytes / (bw * profile.efficiency.elementwise)) + launch;
  }
  const half = profile.efficiencyHalfWork?.[klass] ?? 0;
  const t = bytes > 0 ? (bytes + half) / (bw * profile.efficiency[klass]) : 0;
  const v = profile.vectorFlops ? flops / profile.vectorFlops : 0;
  return Math.max(t, v) + launch;
}

/**
 * How many devices share each core (profile.concurrentDevices; 1 when every device has its own).
 * A device's kernels, optimizer and collectives all run on its core's time (the host's collectives
 * copy through shared memory on the device's own thread), so each takes this many times as long
 * as on a core of its own; per-class and per-axis times (Detail) stay a device's own, as its trace
 * measures them.
 */
export function coreShare(profile: HardwareProfile, mesh: Mesh): number {
  return mesh.size / threadsOf(profile, mesh);
}

/** How a pipeline's stages sit on the threads that run a mesh whose devices share cores (threadStages). */
export interface ThreadStages {
  /** Devices per thread: mesh size / threads (coreShare; 1 when every device has a core of its own). */
  readonly perThread: number;
  /** The most devices of one stage that one thread holds. */
  readonly busiest: number;
  /** Σ over the stages of the most devices of that stage that one thread holds. */
  readonly serial: number;
}

/** Threads that run a mesh: one per core, at most one per device (src/runtime/threads.ts defaultThreads). */
function threadsOf(profile: HardwareProfile, mesh: Mesh): number {
  return Math.min(profile.concurrentDevices ?? mesh.size, mesh.size);
}

const stageCache = new WeakMap<Mesh, Map<number, ThreadStages>>();

/**
 * Which pipeline stages each thread's devices belong to, where devices share cores: thread j runs
 * the contiguous block of device indices d with floor(d · threads / size) = j, devices numbered
 * row-major over the mesh axes (src/runtime/threads.ts ThreadedMesh.start, its owner rule;
 * mesh.ts deviceCoords), and a device's stage is its index over the axes that split `layers`. A
 * stage axis outer to the blocks gives each thread devices of one stage; an inner one, of several.
 */
export function threadStages(profile: HardwareProfile, mesh: Mesh, layersMask: number): ThreadStages {
  const size = mesh.size;
  const k = threadsOf(profile, mesh);
  // A device per thread, or no stages: a thread's devices are all of one stage.
  if (k >= size) return { perThread: 1, busiest: 1, serial: maskSize(mesh, layersMask) };
  if (layersMask === 0) return { perThread: size / k, busiest: size / k, serial: size / k };
  let byMesh = stageCache.get(mesh);
  if (!byMesh) stageCache.set(mesh, (byMesh = new Map()));
  let r = byMesh.get(layersMask);
  if (!r) {
    const p = maskSize(mesh, layersMask);
    // Per axis: its stride in the device index (row-major) and in the stage index.
    const A = mesh.axes.length;
    const inner = new Array<number>(A), stageStride = new Array<number>(A).fill(0);
    for (let i = A - 1, m = 1, st = 1; i >= 0; i--) {
      inner[i] = m;
      m *= mesh.axes[i].size;
      if (layersMask & (1 << i)) { stageStride[i] = st; st *= mesh.axes[i].size; }
    }
    const counts = new Int32Array(k * p);
    for (let d = 0; d < size; d++) {
      let stage = 0;
      for (let i = 0; i < A; i++) if (stageStride[i]) stage += (Math.floor(d / inner[i]) % mesh.axes[i].size) * stageStride[i];
      counts[Math.floor((d * k) / size) * p + stage]++;
    }
    let busiest = 0, serial = 0;
    for (let st = 0; st < p; st++) {
      let most = 0;
      for (let j = 0; j < k; j++) most = Math.max(most, counts[j * p + st]);
      busiest = Math.max(busiest, most);
      serial += most;
    }
    byMesh.set(layersMask, (r = { perThread: size / k, busiest, serial }));
  }
  return r;
}

/**
 * Whether swapping mesh axes i and j maps every thread's block of devices onto a block (so the
 * stages each thread holds, threadStages, stay the same): both axes lie within one block (their
 * span divides the block's devices) or both run across blocks (their stride is a multiple of it).
 * Always, where every device has a core of its own.
 */
export function sameThreadBlocks(profile: HardwareProfile, mesh: Mesh, i: number, j: number): boolean {
  const k = threadsOf(profile, mesh);
  if (k >= mesh.size) return true;
  if (mesh.size % k !== 0) return false;
  const n = mesh.size / k;
  const within = (a: number) => n % (innerSize(mesh, a) * mesh.axes[a].size) === 0;
  const across = (a: number) => innerSize(mesh, a) % n === 0;
  return (within(i) && within(j)) || (across(i) && across(j));
}

/**
 * The pipeline's bubble in microbatch times of the slowest stage (each coreShare times a device's
 * own). 1F1B (Narayanan et al. 2021, Sec. 2.2): (p − 1)/V. Where a thread holds devices of several
 * stages it runs one stage's devices while another's wait, so the step is the larger of the
 * thread's own work, M microbatches of all its devices, and the pipeline's, M + (p − 1)/V
 * microbatches of the most devices of one stage on one thread (threadStages).
 *
 * profile.pipelineSchedule 'sequential': one microbatch at a time, its forward through every stage
 * and its backward back before the next starts (src/runtime/executor.ts step, on every thread), so
 * a microbatch takes, stage after stage, the most devices of that stage on one thread: M ·
 * (serial / perThread − 1) besides the M microbatches of the device's own (on cores of their own, M(p − 1)).
 */
export function bubbleShare(profile: HardwareProfile, mesh: Mesh, layersMask: number, M: number, V: number): number {
  const p = maskSize(mesh, layersMask);
  return p <= 1 ? 0 : bubbleOf(profile, threadStages(profile, mesh, layersMask), p, M, V);
}

/** bubbleShare of p stages sitting on the threads as `t` says: the schedule's rule, in one place. */
function bubbleOf(profile: HardwareProfile, t: ThreadStages, p: number, M: number, V: number): number {
  if (profile.pipelineSchedule === 'sequential') return M * (t.serial / t.perThread - 1);
  // A thread of one stage's devices (each device on a core of its own, or stage axes outer to the blocks): as ever.
  if (t.busiest === t.perThread) return (p - 1) / V;
  return Math.max(0, ((M + (p - 1) / V) * t.busiest) / t.perThread - M);
}

/**
 * The least of step / (M microbatch times of the slowest stage) over plans of p stages and at most
 * mMax microbatches (the search's bounds): 1 + bubbleShare / M, least at the most microbatches
 * (sequential: the same at every count). With the layers axes' mask, that layout's; without, the
 * least over layouts: a thread holds at least ⌊size / threads⌋ devices, of at most p stages, so one
 * stage has at least ⌈⌊size / threads⌋ / p⌉ of them; a stage's size / p devices lie on the threads,
 * at least ⌈size / (p · threads)⌉ on one; and one thread holds at least ⌈size / threads⌉ devices.
 */
export function pipelineFactor(profile: HardwareProfile, mesh: Mesh, p: number, mMax: number, layersMask?: number): number {
  if (p <= 1) return 1;
  const size = mesh.size, k = threadsOf(profile, mesh);
  const t = layersMask !== undefined ? threadStages(profile, mesh, layersMask)
    : k >= size ? { perThread: 1, busiest: 1, serial: p }
      : { perThread: size / k, busiest: Math.max(1, Math.ceil(Math.floor(size / k) / p)), serial: Math.max(Math.ceil(size / k), p * Math.ceil(size / (p * k))) };
  return 1 + bubbleOf(profile, t, p, mMax, 1) / mMax;
}

/** Sums of some of a layout's records at one microbatch count (a Walk is the sum of two). */
export interface WalkPart {
  /** Per microbatch on one device, by pipeline-stage part: compute of the forward and of the backward (with recompute), blocking communication. */
  readonly fwd: StageSums;
  readonly bwd: StageSums;
  readonly blocking: StageSums;
  /** Σ of all collective times (what `communication` reports), per step. */
  readonly communication: number;
  readonly bytesPerDevice: number;
  /** Model (no recompute) matmul FLOPs of a step over all devices. */
  readonly modelFlops: number;
}

/** Sums of one (layout, recompute, microbatches): what the strategy does not change. */
export interface Walk extends WalkPart {
  readonly M: number;
}

export interface StageSums { all: number; first: number; last: number }

/** Per collective, for the estimate's table: kind, axes, buffer bytes and executions per step. */
export interface Detail {
  /** Bytes sent per step by axes, and each collective (the estimate's table; priceParts needs neither). */
  byAxis?: Record<string, number>;
  /** Seconds per step by op class, and in collectives by axes (what benchmark rows may measure). */
  classTime?: Record<string, number>;
  commTime?: Record<string, number>;
  collectives?: Map<string, { kind: string; axes: string[]; bytes: number; count: number }>;
  /** Instead of byAxis and collectives: each note as made, for a memoised part of a price to replay (PriceMemo). */
  log?: Noted[];
}

/** One note of a logging detail: what note() would have added, and where. */
interface Noted {
  readonly axesKey: string;
  readonly key: string;
  readonly kind: string;
  readonly axes: readonly string[];
  readonly bytes: number;
  readonly sent: number;
  readonly count: number;
}

const axesKeys = new WeakMap<readonly string[], string>();

/** `x+y`: the key of an axes list (maskAxes hands out one array per mask, so each is joined once). */
function axesKey(axes: readonly string[]): string {
  let k = axesKeys.get(axes);
  if (k === undefined) axesKeys.set(axes, (k = axes.join('+')));
  return k;
}

function note(detail: Detail | undefined, c: { kind: string; axes: readonly string[]; bytes: number; sent: number }, count: number): void {
  if (detail?.log) {
    const axes = axesKey(c.axes);
    detail.log.push({ axesKey: axes, key: `${c.kind}|${axes}|${c.bytes}`, kind: c.kind, axes: c.axes, bytes: c.bytes, sent: c.sent, count });
    return;
  }
  if (!detail?.collectives || !detail.byAxis) return;
  const key = axesKey(c.axes);
  addNote(detail as NotedTable, key, `${c.kind}|${key}|${c.bytes}`, c.kind, c.axes, c.bytes, c.sent, count);
}

/** What one note adds to a table: its bytes sent to its axes' sum, its count to its collective's entry. */
function addNote(t: NotedTable, axes: string, key: string, kind: string, axesList: readonly string[], bytes: number, sent: number, count: number): void {
  t.byAxis[axes] = (t.byAxis[axes] ?? 0) + sent * count;
  const agg = t.collectives.get(key);
  if (agg) agg.count += count;
  else t.collectives.set(key, { kind, axes: [...axesList], bytes, count });
}

/** Notes a logging detail kept, made again on `detail` in their order: the very sums and entries the notes would have made there. */
function replay(detail: NotedTable, log: readonly Noted[]): void {
  for (let i = 0; i < log.length; i++) {
    const n = log[i];
    addNote(detail, n.axesKey, n.key, n.kind, n.axes, n.bytes, n.sent, n.count);
  }
}

/** A part of a price with the notes it made. */
interface Logged<T> {
  readonly value: T;
  readonly log: readonly Noted[];
}

/**
 * What the prices of several plans of one lowering on one profile share (price's optional memo):
 * the forward and backward walk per microbatch count, the recompute walk per (mode, microbatches)
 * and the strategy terms per (ZeRO stage and axes, microbatches), each with the notes of its
 * collectives, which every price replays into its own table (the base walk's kept as the table
 * they make, which each price starts from a copy of). A search's answers are a handful of
 * plans on a few layouts (transformer-5b on 16x32: 16 plans, 5 distinct walks of 3 layouts).
 */
export interface PriceMemo {
  /** By microbatch count: the base walk, with its notes made on an empty table (what every price of that count starts from). */
  readonly base: Map<number, { readonly value: WalkPart; readonly table: NotedTable }>;
  readonly recompute: Map<number, Logged<WalkPart>>;
  readonly strategy: Map<string, Logged<StrategyCost>>;
}

export function priceMemo(): PriceMemo {
  return { base: new Map(), recompute: new Map(), strategy: new Map() };
}

/** What notes make: bytes by axes and the collectives' table, in the order their keys came. */
type NotedTable = { byAxis: Record<string, number>; collectives: NonNullable<Detail['collectives']> };

/** A fresh copy of a table (entries copied, so that notes made on the copy leave the original as it was). */
function copyTable(t: NotedTable): NotedTable {
  const collectives: NotedTable['collectives'] = new Map();
  for (const [k, v] of t.collectives) collectives.set(k, { kind: v.kind, axes: [...v.axes], bytes: v.bytes, count: v.count });
  return { byAxis: { ...t.byAxis }, collectives };
}

function logged<K, T>(memo: Map<K, Logged<T>>, key: K, work: (detail: Detail) => T): Logged<T> {
  let hit = memo.get(key);
  if (!hit) {
    const log: Noted[] = [];
    memo.set(key, (hit = { value: work({ log }), log }));
  }
  return hit;
}

/**
 * Price records at M microbatches of mb sequences (the one loop every estimate runs): forward
 * records into `fwd`, the rest into `bwd`; model FLOPs from the records that count as model work.
 */
function walkRecords(l: Pick<LayoutLowering, 'mesh' | 'graph'>, groups: readonly (readonly OpRecord[])[], filter: ((r: OpRecord) => boolean) | null, M: number, mb: number, profile: HardwareProfile, detail?: Detail, collectives = true): WalkPart {
  const { mesh, graph } = l;
  const peak = profile.peakFlops[graph.spec.dtype];
  const share = coreShare(profile, mesh);
  // Forward, backward and blocking communication, each by stage part (all, first, last).
  const sums = new Float64Array(9);
  let communication = 0, bytesPerDevice = 0, modelFlops = 0;
  // A layout's collectives in the forward (and its recompute) are on the critical path: the next op
  // reads their result. Those of the backward can hide behind the weight gradients' GEMMs, which do
  // not read them: tensorParallelOverlap of them does (src/cost/profile.ts).
  const bwdExposed = 1 - (profile.tensorParallelOverlap ?? 0);
  const perKind = profile.elementSeconds !== undefined;
  // Indexed loops: the one loop every estimate runs, where for-of left iterator objects to collect.
  for (let g = 0; g < groups.length; g++) {
    const records = groups[g];
    for (let ri = 0; ri < records.length; ri++) {
      const r = records[ri];
      if (filter && !filter(r)) continue;
      // Per microbatch: the stage sums are what one microbatch costs the device; counts are per step.
      const perMb = r.perStage;
      const flops = r.flops.perSeq * mb + r.flops.fixed;
      const stage = r.stage === 'all' ? 0 : r.stage === 'first' ? 1 : 2;
      // The device's own time (what its trace measures), and what it takes on a shared core.
      const byKind = perKind ? kindSeconds(profile, r.klass, r.kind, r.phase, flops, r.kernel) : null;
      const own = (byKind ?? opSeconds(profile, r.klass, flops, r.bytes.perSeq * mb + r.bytes.fixed, r.gemm, r.kernel, peak, mb)) * perMb;
      sums[(r.phase === 'forward' ? 0 : 3) + stage] += own * share;
      if (detail?.classTime) detail.classTime[r.klass] = (detail.classTime[r.klass] ?? 0) + own * M;
      if (r.model && r.phase !== 'recompute' && r.klass === 'matmul') modelFlops += (flops * perMb * M * mesh.size) / r.duplication;
      if (!collectives) continue;
      for (let ci = 0; ci < r.collectives.length; ci++) {
        const c = r.collectives[ci];
        const bytes = c.bytes.perSeq * mb + c.bytes.fixed;
        const sent = sentBytes(c.kind, bytes, c.groupSize);
        const rc = ringCost(profile, mesh, c.mask, c.kind);
        const t = (sent * rc.inv + rc.fixed) * perMb;
        sums[6 + stage] += (r.phase === 'backward' ? t * bwdExposed : t) * share;
        communication += t * M;
        bytesPerDevice += sent * perMb * M;
        if (detail) note(detail, { kind: c.kind, axes: c.axes, bytes, sent }, perMb * M);
        if (detail?.commTime) detail.commTime[axesKey(c.axes)] = (detail.commTime[axesKey(c.axes)] ?? 0) + t * M;
      }
    }
  }
  const part = (i: number): StageSums => ({ all: sums[i], first: sums[i + 1], last: sums[i + 2] });
  return { fwd: part(0), bwd: part(3), blocking: part(6), communication, bytesPerDevice, modelFlops };
}

/**
 * The compute of some records at M microbatches of mb sequences, by phase and stage part, with
 * their collectives left unpriced (blocking and communication 0): what a bound that prices the
 * collectives its own way needs (src/search/bounds.ts stateFloor).
 */
export function walkCompute(l: Pick<LayoutLowering, 'mesh' | 'graph'>, records: readonly (readonly OpRecord[])[], M: number, mb: number, profile: HardwareProfile): WalkPart {
  return walkRecords(l, records, null, M, mb, profile, undefined, false);
}

/** The part of a walk every recompute mode shares: the forward and backward records. */
export function walkBase(l: LayoutLowering, M: number, mb: number, profile: HardwareProfile, detail?: Detail): WalkPart {
  return walkRecords(l, [l.forward, l.backward], null, M, mb, profile, detail);
}

/** The part a recompute mode adds: the forward records the backward runs again. */
export function walkRecompute(l: LayoutLowering, recompute: Plan['recompute'], M: number, mb: number, profile: HardwareProfile, detail?: Detail): WalkPart {
  const needed = profile.fullRecompute === 'needed';
  return walkRecords(l, [l.recompute], (r) => recomputes(r, recompute, needed), M, mb, profile, detail);
}

const addSums = (a: StageSums, b: StageSums): StageSums => ({ all: a.all + b.all, first: a.first + b.first, last: a.last + b.last });

/** A walk from its shared part and its recompute part (the pricer caches the two separately). */
export function combineWalk(M: number, base: WalkPart, rec: WalkPart): Walk {
  return {
    M, fwd: addSums(base.fwd, rec.fwd), bwd: addSums(base.bwd, rec.bwd), blocking: addSums(base.blocking, rec.blocking),
    communication: base.communication + rec.communication, bytesPerDevice: base.bytesPerDevice + rec.bytesPerDevice,
    modelFlops: base.modelFlops + rec.modelFlops,
  };
}

/** Walk a layout's records at one recompute mode and microbatch count. */
export function walk(l: LayoutLowering, recompute: Plan['recompute'], M: number, mb: number, profile: HardwareProfile, detail?: Detail): Walk {
  return combineWalk(M, walkBase(l, M, mb, profile, detail), walkRecompute(l, recompute, M, mb, profile, detail));
}

/**
 * The strategy's terms of one plan (gradient sync, Adam, ZeRO's gathers), priced. Per step or per
 * microbatch, none depends on the microbatch count, which the pricer relies on to price them once
 * per ZeRO stage (a test holds it to that).
 */
export interface StrategyCost {
  /** Optimizer compute per step. */
  readonly optimizer: number;
  /** Gradient sync: once per step (ZeRO 0-1) or after every microbatch (ZeRO 2-3, per microbatch). */
  readonly gradientPerStep: number;
  readonly gradientPerMicrobatch: number;
  /** ZeRO parameter gathers: after the optimizer (stages 1-2, per step) or per microbatch (stage 3). */
  readonly gatherPerStep: number;
  readonly gatherPerMicrobatch: number;
  /** Σ collective time and bytes sent: the part once per step and the part per microbatch. */
  readonly communicationPerStep: number;
  readonly communicationPerMicrobatch: number;
  readonly bytesPerStep: number;
  readonly bytesPerMicrobatch: number;
  /** Overlappable collectives' time that their link cannot hide (Link.overlap): once per step and per microbatch. */
  readonly unhiddenPerStep: number;
  readonly unhiddenPerMicrobatch: number;
}

export function strategyCost(l: LayoutLowering, plan: Plan, profile: HardwareProfile, detail?: Detail): StrategyCost {
  const { mesh } = l;
  const peak = profile.peakFlops[l.graph.spec.dtype];
  const M = plan.microbatches;
  let optimizer = 0, gradientPerStep = 0, gradientPerMicrobatch = 0, gatherPerStep = 0, gatherPerMicrobatch = 0;
  let communicationPerStep = 0, communicationPerMicrobatch = 0, bytesPerStep = 0, bytesPerMicrobatch = 0;
  let unhiddenPerStep = 0, unhiddenPerMicrobatch = 0;
  const share = coreShare(profile, mesh);
  for (const op of strategyOps(l, plan)) {
    if (op.kind === 'send') continue; // sendTime prices them
    const ot = opTime(profile, op, peak) * op.count;
    optimizer += ot * share;
    if (detail?.classTime) detail.classTime[op.klass] = (detail.classTime[op.klass] ?? 0) + ot;
    // ZeRO-2 and -3 reduce-scatter the gradient after every microbatch (instantiate.ts strategyOps).
    const perMicrobatch = op.phase === 'sync' && plan.zero >= 2 && op.collectives[0]?.kind === 'reduce-scatter';
    const everyMicrobatch = perMicrobatch || op.phase === 'forward';
    for (const c of op.collectives) {
      const t0 = collectiveTime(profile, mesh, c) * op.count;
      if (everyMicrobatch) {
        communicationPerMicrobatch += t0 / M;
        bytesPerMicrobatch += (c.sent * op.count) / M;
      } else {
        communicationPerStep += t0;
        bytesPerStep += c.sent * op.count;
      }
      note(detail, c, op.count);
      if (detail?.commTime) detail.commTime[axesKey(c.axes)] = (detail.commTime[axesKey(c.axes)] ?? 0) + t0;
      const h = hideableShare(profile, mesh, c.mask);
      const ts = t0 * share;
      const t = ts * h;
      if (everyMicrobatch) unhiddenPerMicrobatch += (ts - t) / M;
      else unhiddenPerStep += ts - t;
      if (c.role === 'gather') {
        if (op.phase === 'forward') gatherPerMicrobatch += t / M;
        else gatherPerStep += t;
      } else if (perMicrobatch) gradientPerMicrobatch += t / M;
      else gradientPerStep += t;
    }
  }
  return { optimizer, gradientPerStep, gradientPerMicrobatch, gatherPerStep, gatherPerMicrobatch, communicationPerStep, communicationPerMicrobatch, bytesPerStep, bytesPerMicrobatch, unhiddenPerStep, unhiddenPerMicrobatch };
}

const NO_SEND = Object.freeze({ perMicrobatch: 0, bytes: 0 });

/** A stage's sums: the layers' and its own part (one stage holds both the first's and the last's). */
function stageSum(x: StageSums, k: 'first' | 'last', p: number): number {
  return x.all + x[k] + (p === 1 ? x[k === 'first' ? 'last' : 'first'] : 0);
}

/** What of a communication time t stays exposed behind `behind` seconds of compute: always its last bucket, one layer's share. */
function hidden(t: number, behind: number, layersPerStage: number, overlap: number): number {
  return t <= 0 ? 0 : Math.max(t / (layersPerStage + 1), t - overlap * behind);
}

/** Sends between pipeline stages, per microbatch: the activation forward and its gradient back, V times each. */
export function sendTime(l: LayoutLowering, plan: Plan, profile: HardwareProfile, detail?: Detail): { perMicrobatch: number; bytes: number } {
  if (!l.stageMessage) return NO_SEND;
  const msg = linAt(l.stageMessage.bytes, microBatchOf(l, plan));
  const mask = l.layout.mask.layers;
  const t = collectiveTime(profile, l.mesh, { kind: 'send', mask, sent: msg });
  const count = plan.microbatches * plan.virtualStages;
  if (detail) for (let i = 0; i < 2; i++) note(detail, { kind: 'send', axes: maskAxes(l.mesh, mask), bytes: msg, sent: msg }, count);
  if (detail?.commTime) detail.commTime[maskAxes(l.mesh, mask).join('+')] = (detail.commTime[maskAxes(l.mesh, mask).join('+')] ?? 0) + 2 * t * count;
  return { perMicrobatch: 2 * plan.virtualStages * t * coreShare(profile, l.mesh), bytes: 2 * msg * count };
}

/** Step-time parts of one plan (DESIGN.md, Pricing): what the estimate and the search both report. */
export interface StepParts {
  readonly compute: number;
  readonly communication: number;
  readonly exposed: number;
  readonly bubble: number;
  readonly step: number;
  readonly bytesPerDevice: number;
  readonly mfu: number;
}

/**
 * Put a walk and a strategy together into a step. Per microbatch, a stage runs its forward, its
 * backward and its blocking collectives; the pipeline runs M + (p−1)/V of the slowest stage's
 * microbatches (1F1B, interleaved: Narayanan et al. 2021, Sec. 2.2), sends between stages exposed.
 * Gradient reduction hides behind the backward of the microbatch it follows, always less its last
 * bucket (one layer's share); ZeRO-3's gathers hide behind the forward and backward compute of the
 * layer before, less the first layer's.
 */
export function stepParts(l: LayoutLowering, plan: Plan, profile: HardwareProfile, w: Walk, s: StrategyCost): StepParts {
  const p = l.layout.split.layers;
  const V = plan.virtualStages;
  const M = plan.microbatches;
  const k: 'first' | 'last' = stageSum(w.fwd, 'first', p) + stageSum(w.bwd, 'first', p) + stageSum(w.blocking, 'first', p) >= stageSum(w.fwd, 'last', p) + stageSum(w.bwd, 'last', p) + stageSum(w.blocking, 'last', p) ? 'first' : 'last';
  const slowFwd = stageSum(w.fwd, k, p), slowBwd = stageSum(w.bwd, k, p), slowBlocking = stageSum(w.blocking, k, p);
  const layersPerStage = Math.max(1, l.graph.dimSizes.layers / p);
  const o = profile.overlap;
  const send = sendTime(l, plan, profile);
  const computeMb = slowFwd + slowBwd;
  const mbTime = computeMb + slowBlocking + (p > 1 ? send.perMicrobatch : 0);
  const bubble = p > 1 ? bubbleShare(profile, l.mesh, l.layout.mask.layers, M, V) * mbTime : 0;
  const gatherMb = hidden(s.gatherPerMicrobatch / 2, slowFwd, layersPerStage, o) + hidden(s.gatherPerMicrobatch / 2, slowBwd, layersPerStage, o);
  const exposedMb = slowBlocking + (p > 1 ? send.perMicrobatch : 0) + hidden(s.gradientPerMicrobatch, slowBwd, layersPerStage, o) + gatherMb + s.unhiddenPerMicrobatch;
  const exposed = M * exposedMb + hidden(s.gradientPerStep, slowBwd, layersPerStage, o) + hidden(s.gatherPerStep, slowFwd, layersPerStage, o) + s.unhiddenPerStep;
  const compute = M * computeMb + s.optimizer;
  const step = compute + exposed + bubble;
  const peak = profile.peakFlops[l.graph.spec.dtype];
  return {
    compute, communication: w.communication + s.communicationPerStep + M * (s.communicationPerMicrobatch + send.perMicrobatch), exposed, bubble, step,
    bytesPerDevice: w.bytesPerDevice + s.bytesPerStep + M * s.bytesPerMicrobatch + send.bytes, mfu: w.modelFlops / (step * l.mesh.size * peak),
  };
}

/** A program's step time with its seconds per op class and per collective axes (what calibration fits to). */
export function priceParts(program: Program, profile: HardwareProfile): { step: number; classTime: Record<string, number>; commTime: Record<string, number> } {
  const { plan, lowering } = program;
  const detail: Detail = { classTime: {}, commTime: {} };
  const w = walk(lowering, plan.recompute, plan.microbatches, microBatchOf(lowering, plan), profile, detail);
  const s = strategyCost(lowering, plan, profile, detail);
  sendTime(lowering, plan, profile, detail);
  return { step: stepParts(lowering, plan, profile, w, s).step, classTime: detail.classTime!, commTime: detail.commTime! };
}

/**
 * The program's FLOPs as the profile's engine runs them: the program holds every op full recompute
 * may rerun, and a compiler that drops dead code (fullRecompute 'needed') skips the unneeded ones.
 */
function flopsAsRun(program: Program, profile: HardwareProfile): Program['flops'] {
  if (profile.fullRecompute !== 'needed' || program.plan.recompute !== 'full') return { ...program.flops };
  const skipped = recordFlops(program.lowering, program.plan, (r) => r.phase === 'recompute' && r.unneeded === true && recomputes(r, program.plan.recompute));
  return { ...program.flops, perDevice: program.flops.perDevice - skipped.perDevice, matmulPerStep: program.flops.matmulPerStep - skipped.matmulPerStep };
}

/**
 * Price a lowered program on a hardware profile. With a memo (PriceMemo: one per lowering and
 * profile), the parts it shares with plans priced before are taken from it and their notes
 * replayed in the order the walk makes them: the same figures, to the bit.
 */
export function price(program: Program, profile: HardwareProfile, memo?: PriceMemo): Estimate {
  const { graph, mesh, plan, lowering } = program;
  let detail: NotedTable, w: Walk, s: StrategyCost;
  if (!memo) {
    detail = { byAxis: {}, collectives: new Map() };
    w = walk(lowering, plan.recompute, plan.microbatches, microBatchOf(lowering, plan), profile, detail);
    s = strategyCost(lowering, plan, profile, detail);
    sendTime(lowering, plan, profile, detail);
  } else {
    const M = plan.microbatches, mb = microBatchOf(lowering, plan);
    // walk's two parts in walk's order, then the strategy's terms and the sends, as above.
    let base = memo.base.get(M);
    if (!base) {
      const log: Noted[] = [];
      const value = walkBase(lowering, M, mb, profile, { log });
      // The table the base walk's notes make on an empty one: each price starts from a copy of it.
      const table: NotedTable = { byAxis: {}, collectives: new Map() };
      replay(table, log);
      memo.base.set(M, (base = { value, table }));
    }
    const rec = logged(memo.recompute, M * RECOMPUTE.length + RECOMPUTE_LEVEL[plan.recompute], (d) => walkRecompute(lowering, plan.recompute, M, mb, profile, d));
    w = combineWalk(M, base.value, rec.value);
    const st = logged(memo.strategy, `${plan.zero}|${plan.zeroAxes?.join('+') ?? ''}|${M}`, (d) => strategyCost(lowering, plan, profile, d));
    s = st.value;
    const sends: Noted[] = [];
    sendTime(lowering, plan, profile, { log: sends });
    detail = copyTable(base.table);
    replay(detail, rec.log);
    replay(detail, st.log);
    replay(detail, sends);
  }
  const parts = stepParts(lowering, plan, profile, w, s);
  const capacity = profile.memoryBytes;
  const feasible = program.memory.total <= capacity;
  const reasons: string[] = [];
  if (!feasible) {
    reasons.push(`memory ${fmtBytes(program.memory.total)} per device exceeds the ${profile.name} capacity of ${fmtBytes(capacity)} by ${fmtBytes(program.memory.total - capacity)}`);
  }
  return {
    model: { name: graph.spec.name, params: paramCount(graph) },
    mesh: { axes: mesh.axes.map((a) => ({ name: a.name, size: a.size })) },
    plan: planToJson(plan),
    device: profile.name,
    valid: true,
    feasible,
    reasons,
    flops: flopsAsRun(program, profile),
    memory: { ...program.memory, capacity },
    communication: { bytesPerDevice: parts.bytesPerDevice, byAxis: detail.byAxis, collectives: [...detail.collectives.values()] },
    time: { compute: parts.compute, communication: parts.communication, exposedCommunication: parts.exposed, bubble: parts.bubble, step: parts.step },
    mfu: program.flops.modelPerStep / (parts.step * mesh.size * profile.peakFlops[graph.spec.dtype]),
    tokensPerSecond: (graph.spec.batch * graph.spec.seqLen) / parts.step,
  };
}

export function fmtBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(u === 0 ? 0 : 2)} ${units[u]}`;
}
