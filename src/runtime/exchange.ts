import { DIM_NAMES, type DimName } from '../model/graph.js';
import type { Local } from './shard.js';

/**
 * How the devices of one thread reach the devices of other threads: each device has a slot of
 * shared memory (SharedArrayBuffer) for the buffer it offers to its current collective, a tag
 * saying which collective that is, and a count of the threads still to read it. A device posts
 * only after every reader of its previous buffer has copied it; a reader waits on the tag.
 */
export interface Exchange {
  /** Whether this thread runs device d. */
  owns(d: number): boolean;
  /** Offer device d's buffer to the other threads that run members of `group`. */
  post(d: number, tag: number, group: readonly number[], x: Local): void;
  /** Copy device p's buffer for collective `tag` (waits until p has posted it); `posted`: when p posted it. */
  read(p: number, tag: number): Local & { readonly posted: number };
  /** Microseconds since the run's epoch, on a clock all threads share. */
  now(): number;
  /** Tell the other threads to give up waiting: this one failed. */
  abort(): void;
}

/** Shared memory of one run: built by the main thread, handed to every worker. */
export interface ExchangeMemory {
  readonly ctl: SharedArrayBuffer;
  readonly data: SharedArrayBuffer;
  /** When each device last posted, µs since the epoch. */
  readonly times: SharedArrayBuffer;
  /** Floats per slot. */
  readonly capacity: number;
  /** Thread index of each device. */
  readonly owner: readonly number[];
  /** performance.timeOrigin + performance.now() at the run's start, ms. */
  readonly epochMs: number;
}

const MAX_RANK = 8;
const HEADER = 3 + 2 * MAX_RANK; // rank, length, dims count, shape[8], dims[8]
const ABORT = 0;
const tagAt = (d: number) => 1 + 2 * d;
const pendingAt = (d: number) => 2 + 2 * d;
/** A peer silent this long is taken for lost (a bug, not a slow step: steps take seconds). */
const DEADLINE_MS = 300_000;

export function exchangeMemory(devices: number, capacity: number, owner: readonly number[]): ExchangeMemory {
  return {
    ctl: new SharedArrayBuffer(4 * (1 + 2 * devices)),
    data: new SharedArrayBuffer(4 * devices * (HEADER + capacity)),
    times: new SharedArrayBuffer(8 * devices),
    capacity, owner, epochMs: performance.timeOrigin + performance.now(),
  };
}

export class AbortedByPeer extends Error {
  constructor() {
    super('another device failed: this one stopped waiting for it');
    this.name = 'AbortedByPeer';
  }
}

export class SharedExchange implements Exchange {
  private readonly ctl: Int32Array;
  private readonly ints: Int32Array;
  private readonly floats: Float32Array;
  private readonly times: Float64Array;
  private readonly stride: number;

  constructor(readonly mem: ExchangeMemory, readonly thread: number) {
    this.ctl = new Int32Array(mem.ctl);
    this.ints = new Int32Array(mem.data);
    this.floats = new Float32Array(mem.data);
    this.times = new Float64Array(mem.times);
    this.stride = HEADER + mem.capacity;
  }

  owns(d: number): boolean {
    return this.mem.owner[d] === this.thread;
  }

  now(): number {
    return (performance.timeOrigin + performance.now() - this.mem.epochMs) * 1e3;
  }

  abort(): void {
    Atomics.store(this.ctl, ABORT, 1);
    for (let i = 1; i < this.ctl.length; i++) Atomics.notify(this.ctl, i);
  }

  /** Wait while ctl[i] holds a value for which `go` is false. */
  private waitFor(i: number, go: (v: number) => boolean): void {
    const until = Date.now() + DEADLINE_MS;
    for (;;) {
      const v = Atomics.load(this.ctl, i);
      if (go(v)) return;
      if (Atomics.load(this.ctl, ABORT)) throw new AbortedByPeer();
      if (Date.now() > until) throw new Error(`a simulated device waited ${DEADLINE_MS / 1e3} s for a peer that never answered`);
      Atomics.wait(this.ctl, i, v, 100);
    }
  }

  post(d: number, tag: number, group: readonly number[], x: Local): void {
    const readers = new Set(group.map((g) => this.mem.owner[g]).filter((t) => t !== this.thread)).size;
    if (readers === 0) return;
    if (x.data.length > this.mem.capacity) throw new Error(`a buffer of ${x.data.length} floats exceeds the exchange slot of ${this.mem.capacity}`);
    if (x.shape.length > MAX_RANK || x.dims.length > MAX_RANK) throw new Error(`a tensor of rank ${x.shape.length} cannot cross threads`);
    this.waitFor(pendingAt(d), (v) => v === 0);
    const at = d * this.stride;
    this.ints[at] = x.shape.length;
    this.ints[at + 1] = x.data.length;
    this.ints[at + 2] = x.dims.length;
    x.shape.forEach((s, i) => (this.ints[at + 3 + i] = s));
    x.dims.forEach((dim, i) => (this.ints[at + 3 + MAX_RANK + i] = DIM_NAMES.indexOf(dim)));
    this.floats.set(x.data, at + HEADER);
    this.times[d] = this.now();
    Atomics.store(this.ctl, pendingAt(d), readers);
    Atomics.store(this.ctl, tagAt(d), tag);
    Atomics.notify(this.ctl, tagAt(d));
  }

  read(p: number, tag: number): Local & { readonly posted: number } {
    this.waitFor(tagAt(p), (v) => v === tag);
    const at = p * this.stride;
    const rank = this.ints[at], len = this.ints[at + 1], nd = this.ints[at + 2];
    const shape = Array.from(this.ints.subarray(at + 3, at + 3 + rank));
    const dims = Array.from(this.ints.subarray(at + 3 + MAX_RANK, at + 3 + MAX_RANK + nd), (i) => DIM_NAMES[i] as DimName);
    const data = this.floats.slice(at + HEADER, at + HEADER + len);
    const posted = this.times[p];
    if (Atomics.sub(this.ctl, pendingAt(p), 1) === 1) Atomics.notify(this.ctl, pendingAt(p));
    return { dims, shape, data, posted };
  }
}
