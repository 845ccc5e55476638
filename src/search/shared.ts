/**
 * The state workers share while they search subtrees: the best objective value of any feasible
 * plan found so far (an incumbent every share prunes against), a stop flag (time limit) and a
 * count of layouts examined (progress). One SharedArrayBuffer, read and written with Atomics; the
 * inline runner uses the same object, so both paths run the same code.
 */
const scratchF = new Float64Array(1);
const scratchI = new BigInt64Array(scratchF.buffer);

const toBits = (x: number): bigint => { scratchF[0] = x; return scratchI[0]; };
const fromBits = (b: bigint): number => { scratchI[0] = b; return scratchF[0]; };

export class Shared {
  private readonly bits: BigInt64Array;
  constructor(readonly buffer: SharedArrayBuffer) {
    this.bits = new BigInt64Array(buffer);
  }
  static create(): Shared {
    const s = new Shared(new SharedArrayBuffer(4 * 8));
    Atomics.store(s.bits, 0, toBits(Infinity));
    return s;
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
