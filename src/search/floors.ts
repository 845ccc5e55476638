import { COLLECTIVE_KINDS } from '../lower/collectives.js';
import type { StageSums } from '../cost/price.js';
import type { StateFloor, VariantFloor } from './bounds.js';

/**
 * The state floors of one search (bounds.ts stateFloor: a stand-in lowering per state, the
 * search's costliest bound) in shared memory, so that each is worked out once by whichever
 * thread reaches its state first and read by the others. Kept per thread, two workers each
 * worked out nearly every floor of the seven-axis case (10,000 of its 11,171): 2.5 s of
 * lowerings apiece when this store was made (2026-12-07), a third of the whole search then.
 *
 * Slots are claimed with compare-and-exchange; a slot's status goes 0 (free) → 1 (claimed, key
 * being written) → 2 (key set, floor being worked out) → 3 (ready) or 4 (not published: the
 * store is full, or the work threw). A thread that finds another's slot at 2 waits for it, a
 * bounded time (the claimer may have crashed), then works the floor out itself; the floor is a
 * pure function of the state, so every thread gets the same one either way.
 */
export interface SharedFloors {
  /** Per slot: the state (a float, as states run past 2^32). */
  readonly keys: SharedArrayBuffer;
  /** Int32: [0] the data floats used; per slot i, status at 2 + 2i and data offset at 3 + 2i. */
  readonly meta: SharedArrayBuffer;
  /** Float64, growable: the encoded floors (see encode). */
  readonly data: SharedArrayBuffer;
}

/** Where a floor comes from; its caller (remaining.ts floorEntry) keeps each state's floor once asked. */
export interface FloorStore {
  /** The floor of state s, worked out with `work` unless another thread already did. */
  get(s: number, work: () => StateFloor): StateFloor;
}

/** No sharing (a search without workers): every floor is worked out where it is asked for. */
export function localFloors(): FloorStore {
  return { get: (_s, work) => work() };
}

/**
 * A state's home slot in an open-addressing table of 2^(32 - shift) slots, by Fibonacci hashing:
 * the product's top bits (its low bits depend only on the key's low bits, which states share).
 * States run past 2^32, so both halves go in.
 */
export function homeSlot(s: number, shift: number): number {
  // s's low 32 bits as ^ takes them (ToInt32 is modulo 2^32, as s % 2^32 was, without a float remainder) xor its high bits.
  return Math.imul(s ^ Math.floor(s / 4294967296), 0x9e3779b1) >>> shift;
}

const FREE = 0, CLAIMED = 1, WORKING = 2, READY = 3, LOCAL = 4;
const STAGES: readonly (keyof StageSums)[] = ['all', 'first', 'last'];
// A wait for another thread's floor; past it this thread works the floor out itself (one takes about 0.1 ms).
const WAIT_MS = 20;
// The data store starts at most this big and grows on demand up to the most (virtual until written).
const INITIAL_DATA_BYTES = 2 ** 22;
const MAX_DATA_BYTES = 2 ** 31;

/** A store with room for `states` floors (at most half its slots in use). */
export function makeSharedFloors(states: number): SharedFloors {
  let cap = 16;
  while (cap < 2 * states) cap *= 2;
  return {
    keys: new SharedArrayBuffer(cap * 8),
    meta: new SharedArrayBuffer((2 + 2 * cap) * 4),
    // A search reaches few of its complete states (the seven-axis case 11,171 of 200,271): start
    // small, grow as floors are published.
    data: new SharedArrayBuffer(Math.min(64 * cap * 8, INITIAL_DATA_BYTES), { maxByteLength: MAX_DATA_BYTES }),
  };
}

/** A floor as floats: its compute, then per variant a presence flag and (if present) its sums and collectives. */
export function encodeFloor(f: StateFloor): number[] {
  const out = [f.compute];
  for (const v of f.variants) {
    if (!v) { out.push(0); continue; }
    out.push(1, v.compute.all, v.compute.first, v.compute.last, v.collectives.length);
    for (const c of v.collectives) {
      let dims = 0;
      for (const d of c.dims) dims |= 1 << d;
      // The stage part and the phase in one float: part index, plus 3 for the backward's.
      out.push(COLLECTIVE_KINDS.indexOf(c.kind), dims, STAGES.indexOf(c.stage) + (c.backward ? 3 : 0), c.sent, c.calls);
    }
  }
  return out;
}

export function decodeFloor(x: ArrayLike<number>, at: number): StateFloor {
  let i = at;
  const compute = x[i++];
  const variants: (VariantFloor | null)[] = [];
  for (let v = 0; v < 2; v++) {
    if (x[i++] === 0) { variants.push(null); continue; }
    const sums: StageSums = { all: x[i], first: x[i + 1], last: x[i + 2] };
    const n = x[i + 3];
    i += 4;
    const collectives: VariantFloor['collectives'][number][] = [];
    for (let k = 0; k < n; k++, i += 5) {
      const dims: number[] = [];
      for (let d = 0; d < 31; d++) if (x[i + 1] & (1 << d)) dims.push(d);
      collectives.push({ kind: COLLECTIVE_KINDS[x[i]], dims, stage: STAGES[x[i + 2] % 3], backward: x[i + 2] >= 3, sent: x[i + 3], calls: x[i + 4] });
    }
    variants.push({ compute: sums, collectives });
  }
  return { variants: [variants[0], variants[1]], compute };
}

/** This thread's view of a shared store. */
export function sharedFloors(shared: SharedFloors): FloorStore {
  const keys = new Float64Array(shared.keys);
  const meta = new Int32Array(shared.meta);
  const data = new Float64Array(shared.data); // length-tracking: sees the store grow
  const mask = keys.length - 1;
  const shift = 32 - Math.log2(keys.length);
  const status = (i: number) => 2 + 2 * i;

  const publish = (i: number, f: StateFloor) => {
    const enc = encodeFloor(f);
    const at = Atomics.add(meta, 0, enc.length);
    const need = (at + enc.length) * 8;
    if (need > shared.data.byteLength) {
      try {
        shared.data.grow(Math.min(shared.data.maxByteLength, Math.max(need, 2 * shared.data.byteLength)));
      } catch {
        // Another thread grew it meanwhile (a smaller length is refused), or it is at its limit: checked below.
      }
    }
    if (need > shared.data.byteLength) {
      Atomics.store(meta, status(i), LOCAL);
    } else {
      data.set(enc, at);
      Atomics.store(meta, status(i) + 1, at);
      Atomics.store(meta, status(i), READY);
    }
    Atomics.notify(meta, status(i));
  };
  // Work a floor out in a slot this thread claimed: published, or marked unpublished if the work throws.
  const claimed = (i: number, work: () => StateFloor) => {
    let f: StateFloor;
    try {
      f = work();
    } catch (e) {
      Atomics.store(meta, status(i), LOCAL);
      Atomics.notify(meta, status(i));
      throw e;
    }
    publish(i, f);
    return f;
  };

  const find = (s: number, work: () => StateFloor): StateFloor => {
    for (let i = homeSlot(s, shift) & mask, probes = 0; probes <= mask; i = (i + 1) & mask, probes++) {
      let st = Atomics.load(meta, status(i));
      if (st === FREE) {
        if (Atomics.compareExchange(meta, status(i), FREE, CLAIMED) === FREE) {
          keys[i] = s;
          Atomics.store(meta, status(i), WORKING);
          Atomics.notify(meta, status(i));
          return claimed(i, work);
        }
        st = Atomics.load(meta, status(i));
      }
      // Another thread is writing this slot's key: a few instructions, unless it is gone (then pass the slot by).
      if (st === CLAIMED) {
        Atomics.wait(meta, status(i), CLAIMED, WAIT_MS);
        st = Atomics.load(meta, status(i));
        if (st === CLAIMED) continue;
      }
      if (keys[i] !== s) continue;
      if (st === WORKING) {
        Atomics.wait(meta, status(i), WORKING, WAIT_MS);
        st = Atomics.load(meta, status(i));
      }
      if (st === READY) return decodeFloor(data, Atomics.load(meta, status(i) + 1));
      return work(); // not published, or its thread is slow or gone: work it out here
    }
    return work(); // the store is full: more states than the table said (never expected)
  };

  return { get: find };
}
