/**
 * What workers share while they search subtrees, in one SharedArrayBuffer: the best objective
 * value of any feasible plan so far (the incumbent), the K best values (so every share prunes at
 * the global K-th), up to FRONT Pareto points in scope, a stop flag (time limit) and a count of
 * layouts examined (progress). The inline runner uses the same object, so both paths run the
 * same code. Everything here names real plans found, so pruning against it is sound whenever it is read.
 */
const scratchF = new Float64Array(1);
const scratchI = new BigInt64Array(scratchF.buffer);

const toBits = (x: number): bigint => { scratchF[0] = x; return scratchI[0]; };
const fromBits = (b: bigint): number => { scratchI[0] = b; return scratchF[0]; };

/** Pareto points kept (more would cost more to read than they prune). */
export const FRONT = 64;
// Layout: int64 [best bits, stop, examined, lock]; float64 [K best values] [front count] [FRONT × (step, memory)].
const HEAD = 4;

export class Shared {
  private readonly bits: BigInt64Array;
  private readonly lock: Int32Array;
  private readonly values: Float64Array;
  readonly k: number;
  constructor(readonly buffer: SharedArrayBuffer) {
    this.bits = new BigInt64Array(buffer, 0, HEAD);
    this.lock = new Int32Array(buffer, 3 * 8, 2);
    this.values = new Float64Array(buffer, HEAD * 8);
    this.k = this.values.length - 1 - 2 * FRONT;
  }
  static create(k: number): Shared {
    const s = new Shared(new SharedArrayBuffer((HEAD + k + 1 + 2 * FRONT) * 8));
    Atomics.store(s.bits, 0, toBits(Infinity));
    s.values.fill(Infinity, 0, k);
    s.values[k] = 0;
    return s;
  }
  private locked<T>(fn: () => T): T {
    while (Atomics.compareExchange(this.lock, 0, 0, 1) !== 0) Atomics.wait(this.lock, 0, 1, 1);
    try {
      return fn();
    } finally {
      Atomics.store(this.lock, 0, 0);
      Atomics.notify(this.lock, 0, 1);
    }
  }
  /** The least objective value of a feasible plan found by anyone so far (Infinity: none yet). */
  best(): number {
    return fromBits(Atomics.load(this.bits, 0));
  }
  /** Lower the incumbent to x if x is lower (non-negative doubles order as their bit patterns). */
  offer(x: number): void {
    const want = toBits(x);
    let cur = Atomics.load(this.bits, 0);
    while (want < cur) {
      const seen = Atomics.compareExchange(this.bits, 0, cur, want);
      if (seen === cur) return;
      cur = seen;
    }
  }
  /** The K-th least objective value of the feasible plans offered (Infinity until K are). */
  kth(): number {
    return this.locked(() => this.values[this.k - 1]);
  }
  /** Add a feasible plan's objective value to the K best (each plan is offered once). */
  offerValue(x: number): void {
    this.locked(() => {
      const v = this.values;
      if (!(x < v[this.k - 1])) return;
      let i = this.k - 1;
      while (i > 0 && v[i - 1] > x) { v[i] = v[i - 1]; i--; }
      v[i] = x;
    });
  }
  /** Add a Pareto point in scope; dominated ones give way, and a full list keeps what it has. */
  offerPoint(step: number, memory: number): void {
    this.locked(() => {
      const v = this.values;
      const base = this.k + 1;
      let n = v[this.k];
      for (let i = 0; i < n; i++) if (v[base + 2 * i] <= step && v[base + 2 * i + 1] <= memory) return;
      for (let i = n - 1; i >= 0; i--) {
        if (step <= v[base + 2 * i] && memory <= v[base + 2 * i + 1]) {
          v[base + 2 * i] = v[base + 2 * (n - 1)];
          v[base + 2 * i + 1] = v[base + 2 * (n - 1) + 1];
          n--;
        }
      }
      if (n < FRONT) { v[base + 2 * n] = step; v[base + 2 * n + 1] = memory; n++; }
      v[this.k] = n;
    });
  }
  /** The shared Pareto points, as [step, memory] pairs. */
  points(): [number, number][] {
    return this.locked(() => {
      const out: [number, number][] = [];
      const base = this.k + 1;
      for (let i = 0; i < this.values[this.k]; i++) out.push([this.values[base + 2 * i], this.values[base + 2 * i + 1]]);
      return out;
    });
  }
  stopped(): boolean {
    return Atomics.load(this.bits, 1) !== 0n;
  }
  stop(): void {
    Atomics.store(this.bits, 1, 1n);
  }
  addExamined(n: number): void {
    Atomics.add(this.bits, 2, BigInt(n));
  }
  examined(): number {
    return Number(Atomics.load(this.bits, 2));
  }
}
