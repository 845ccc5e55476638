import { readFileSync } from 'node:fs';
import { findDevice } from './presets.js';
import { validateProfile, type HardwareProfile } from './profile.js';
import { InputError } from '../errors.js';

/** One op kind's forward and backward through the runtime, per element (bench/host.bench.mjs). */
export interface PhaseMeasured {
  readonly date: string;
  readonly loadAverage: number;
  readonly runs: number;
  readonly shape: readonly number[];
  readonly forwardSecondsPerElement: number;
  readonly backwardSecondsPerElement: number;
}

/** What bench/host.bench.mjs measured (data/host-measured.json). */
export interface HostMeasured {
  readonly bench: string;
  readonly date: string;
  readonly backend: string;
  readonly cores: number;
  readonly memoryBytes: number;
  readonly loadAverage: number;
  readonly kernelOverheadSeconds: number;
  readonly memoryBandwidth: number;
  readonly matmulFlops: number;
  readonly matmulBestFlops: number;
  readonly matmulOverheadSeconds: number;
  readonly sharedMemoryBandwidth: number;
  readonly sharedMemoryLatency: number;
  /**
   * Collectives as the simulated mesh runs them, two threads of two devices at once, seconds each
   * thread takes per allreduce of `floats` floats a device (absent in older files): `within`, each
   * thread's two devices together; `across`, each device with its peer on the other thread; `four`,
   * all four devices.
   */
  readonly collectives?: { readonly date: string; readonly loadAverage: number; readonly runs: number; readonly floats: number; readonly withinSeconds: number; readonly acrossSeconds: number; readonly fourSeconds: number };
  /** The runtime's softmax and layer norm forwards, seconds per element beyond one kernel's overhead (absent in older files). */
  readonly ops?: {
    readonly date: string;
    readonly loadAverage: number;
    readonly runs: number;
    readonly softmaxSecondsPerElement: number;
    readonly layernormSecondsPerElement: number;
    /** The small model's einsums through the runtime's einsum, forward and backward forms: FLOPs per second (absent in older files). */
    readonly modelEinsum?: { readonly date: string; readonly loadAverage: number; readonly runs: number; readonly flopsPerSecond: number };
    /**
     * The runtime's GELU (kernels.ts gelu; the backward dy · geluGrad) over the small model's
     * [batch, length, d_ff] shard, seconds per element beyond one kernel's overhead (absent in older files).
     */
    readonly act?: { readonly date: string; readonly loadAverage: number; readonly runs: number; readonly forwardSecondsPerElement: number; readonly backwardSecondsPerElement: number };
    /**
     * The runtime's softmax and loss (src/runtime/ops.ts forward and backward) over one device's
     * share of the small model's attention scores and logits, seconds per element of each phase
     * beyond one kernel's overhead (absent in older files).
     */
    readonly phases?: Readonly<Partial<Record<'softmax' | 'xent', PhaseMeasured>>>;
  };
}

// Bytes the cost model prices per element (float32; src/lower/lower.ts, every operand not fused
// away and the output): a layer norm reads its input and writes its output; a decoder's softmax
// reads the causal mask's output fused into it, so only its own output counts.
const LAYERNORM_BYTES_PER_ELEMENT = 8;
const SOFTMAX_BYTES_PER_ELEMENT = 4;

export const HOST_MEASURED = new URL('../../data/host-measured.json', import.meta.url);

/**
 * The two links of the host profile from bench/host's collectives, by the pricing of a reduction as
 * the simulated mesh runs it (src/cost/price.ts gatherCost; B the buffer): `within` is a thread
 * summing two devices' buffers, 7B of traffic, at the thread's rate; `across` is two devices each
 * crossing one buffer (posted and read, B at the shared-memory rate) and summing 5B at the thread's.
 */
export function hostLinks(c: NonNullable<HostMeasured['collectives']>, fallback: number): { thread: number; shared: number } {
  const B = 4 * c.floats;
  const thread = (7 * B) / c.withinSeconds;
  const crossing = c.acrossSeconds / 2 - (5 * B) / thread;
  // A crossing measured as taking no time (noise in a re-measurement) leaves the ping-pong's figure.
  return { thread, shared: crossing > 0 ? B / crossing : fallback };
}

/**
 * The `host` profile: one simulated device is one tfjs (wasm) kernel stream on one core of this
 * machine; devices beyond the cores share them; collectives are copies through shared memory.
 */
export function hostProfile(m: HostMeasured): HardwareProfile {
  const at = `bench/host.bench.mjs, ${m.date.slice(0, 10)}, ${m.backend}, load average ${m.loadAverage}`;
  const peak = m.matmulFlops;
  const einsum = m.ops?.modelEinsum;
  const perElement = (x: { forwardSecondsPerElement: number; backwardSecondsPerElement: number }) => ({ forward: x.forwardSecondsPerElement, backward: x.backwardSecondsPerElement });
  const phases = Object.entries(m.ops?.phases ?? {}).filter((e): e is [string, PhaseMeasured] => e[1] !== undefined);
  const elementSeconds: Record<string, { forward: number; backward: number }> = {
    ...(m.ops?.act ? { act: perElement(m.ops.act) } : {}),
    ...Object.fromEntries(phases.map(([k, x]) => [k, perElement(x)])),
  };
  const runs = (x: { runs: number }) => (x.runs === 1 ? 'one run' : `median of ${x.runs} runs`);
  const links = m.collectives ? hostLinks(m.collectives, m.sharedMemoryBandwidth) : { thread: m.memoryBandwidth, shared: m.sharedMemoryBandwidth };
  const profile = {
    name: 'host',
    description: `this machine as a simulated mesh: ${m.cores} cores, tfjs ${m.backend} kernels, devices on worker threads`,
    // The runtime computes in float32 whatever the model's dtype.
    peakFlops: { bfloat16: peak, float16: peak, float32: peak },
    memoryBytes: m.memoryBytes,
    memoryBandwidth: m.memoryBandwidth,
    levels: [
      // Devices of one thread reduce their buffers on that thread: no copy into shared memory, no wait for another thread.
      { name: 'thread', devices: 1, perThread: true, link: { bandwidth: links.thread, latency: 0, reduction: 'gather' as const } },
      { name: 'shared memory', devices: 1 << 20, link: { bandwidth: links.shared, latency: m.sharedMemoryLatency, reduction: 'gather' as const } },
    ],
    // Softmax and layer norm run as several kernels with their row statistics read back, and the
    // softmax's exponentials bound it (bench/host): priced as one kernel of their bytes, they need
    // the share of the bandwidth that matches their measured time.
    efficiency: {
      // The model's einsums transpose their operands and loop over heads: the share of the 2-D GEMMs' rate they reach.
      matmul: einsum ? Math.min(1, einsum.flopsPerSecond / m.matmulFlops) : 1,
      elementwise: 1,
      softmax: m.ops ? Math.min(1, SOFTMAX_BYTES_PER_ELEMENT / (m.memoryBandwidth * m.ops.softmaxSecondsPerElement)) : 1,
      reduction: m.ops ? Math.min(1, LAYERNORM_BYTES_PER_ELEMENT / (m.memoryBandwidth * m.ops.layernormSecondsPerElement)) : 1,
    },
    // Every kernel pays launchOverhead; a small GEMM pays what it takes beyond that, in FLOPs at the rate.
    efficiencyHalfWork: { matmul: Math.max(0, m.matmulOverheadSeconds - m.kernelOverheadSeconds) * m.matmulFlops },
    // Collectives run on the device's own thread, between its kernels: nothing hides them.
    overlap: 0,
    launchOverhead: m.kernelOverheadSeconds,
    // The activation runs as several kernels (GELU about 7, its gradient about 12), the softmax's
    // forward exponentiates twice where its backward has no exponential, and the loss builds a
    // one-hot of the targets both ways: each priced per element of each phase as measured.
    ...(Object.keys(elementSeconds).length ? { elementSeconds } : {}),
    concurrentDevices: m.cores,
    pipelineSchedule: 'sequential' as const,
    sources: {
      peakFlops: `${at}: median rate of the runtime's einsum at the small model's GEMM shapes, as plain 2-D GEMMs`,
      'efficiency.matmul': einsum
        ? `bench/host.bench.mjs, ${einsum.date.slice(0, 10)}, load average ${einsum.loadAverage}, ${runs(einsum)}: every einsum of the small model, forward and both backward forms, through the runtime's einsum at a 2-device data-parallel shard's shapes, FLOPs per second, over the 2-D GEMMs' rate above`
        : 'taken as 1: the 2-D GEMMs\' rate above; calibration fits it',
      memoryBandwidth: `${at}: an elementwise add of 2^20 floats through the runtime's kernel wrapper, its overhead taken off`,
      'efficiencyHalfWork.matmul': `${at}: a 64³ einsum's time beyond its FLOPs at that rate and the launch overhead`,
      launchOverhead: `${at}: a one-float add through the runtime's kernel wrapper`,
      'levels.shared memory': m.collectives
        ? `bench/host.bench.mjs, ${m.collectives.date.slice(0, 10)}, load average ${m.collectives.loadAverage}, ${runs(m.collectives)}: bandwidth from an allreduce of 1 MiB a device between two threads of two devices each, as the runtime runs it (hostLinks); latency: ${at}, ping-pong through SharedExchange, one float one way`
        : `${at}: ping-pong through SharedExchange between two threads, one way (1 float: latency; 4 MiB: bandwidth)`,
      'levels.thread': m.collectives
        ? `bench/host.bench.mjs, ${m.collectives.date.slice(0, 10)}, load average ${m.collectives.loadAverage}, ${runs(m.collectives)}: the rate at which a thread sums its two devices' 1 MiB buffers in an allreduce (src/runtime/ring.ts), both threads at once (hostLinks); no latency: src/runtime/exchange.ts posts nothing for a group with no member on another thread`
        : `${at}: the bandwidth of an elementwise add (memoryBandwidth), as the members of a collective within one thread read each other's buffers from that thread's memory; no latency: src/runtime/exchange.ts posts nothing for a group with no member on another thread, and src/runtime/executor.ts reduces it in place (calibration fits both)`,
      concurrentDevices: `${at}: os.availableParallelism()`,
      ...(m.ops?.act ? { 'elementSeconds.act': `bench/host.bench.mjs, ${m.ops.act.date.slice(0, 10)}, load average ${m.ops.act.loadAverage}, ${runs(m.ops.act)}: the runtime's GELU forward and gradient (src/runtime/kernels.ts) over an 8x128x1024 shard, seconds per element beyond one kernel's overhead (ReLU is priced the same)` } : {}),
      ...Object.fromEntries(phases.map(([k, x]) => [`elementSeconds.${k}`, `bench/host.bench.mjs, ${x.date.slice(0, 10)}, load average ${x.loadAverage}, ${runs(x)}: the runtime's ${k === 'xent' ? 'loss' : 'softmax'} forward and backward (src/runtime/ops.ts) over a ${x.shape.join('x')} shard${k === 'softmax' ? ' of causally masked scores' : ''}, seconds per element of each beyond one kernel's overhead`])),
      memoryBytes: `${at}: os.totalmem()`,
      overlap: 'src/runtime/executor.ts: a device thread runs its collectives inline',
      pipelineSchedule: 'src/runtime/executor.ts step: each microbatch runs its forward through every stage and its backward back before the next microbatch starts, on every thread',
      'levels.shared memory.reduction': 'src/runtime/executor.ts: every device posts its whole buffer, reads each peer\'s and reduces all of them itself (no ring)',
      'efficiency.softmax, efficiency.reduction': m.ops
        ? `bench/host.bench.mjs, ${m.ops.date.slice(0, 10)}, load average ${m.ops.loadAverage}, ${runs(m.ops)}: the runtime's softmax (4x4x128x128) and layer norm (512x256) forwards, seconds per element, as the share of the bandwidth above that the lowering's bytes of a decoder's softmax and of a layer norm need to take as long; calibration scales them with elementwise`
        : 'taken as elementwise; calibration fits them',
    },
  };
  return validateProfile(profile, 'host profile');
}

let cached: HardwareProfile | undefined;

/** The `host` profile from the shipped (or re-measured) data/host-measured.json. */
export function loadHostProfile(): HardwareProfile {
  if (cached) return cached;
  let m: HostMeasured;
  try {
    m = JSON.parse(readFileSync(HOST_MEASURED, 'utf8')) as HostMeasured;
  } catch (e) {
    throw new InputError(`the host profile needs data/host-measured.json (node bench/host.bench.mjs --write): ${(e as Error).message.split('\n')[0]}`);
  }
  return (cached = hostProfile(m));
}

/** A device preset by name, `host` included. */
export function findProfile(name: string): HardwareProfile | undefined {
  return findDevice(name) ?? (name === 'host' ? loadHostProfile() : undefined);
}
