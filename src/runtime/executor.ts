import { axesOf } from '../layout/layout.js';
import { zeroGroupMask } from '../lower/instantiate.js';
import type { Collective, LoweredOp, Program } from '../lower/program.js';
import { deviceCoords, type Mesh } from '../mesh/mesh.js';
import { minimalRecompute, type Block, type DimName, type OpSpec } from '../model/graph.js';
import { adamUpdate, type AdamConfig } from './adam.js';
import { initWeight } from './init.js';
import { backward, forward, renameKind, seqSlice, sumScatter } from './ops.js';
import type { OpCtx, OpGen, Reply, Request, SeqShare } from './protocol.js';
import { allgatherChunks, allgatherFlat, allreduce, chunkBounds, reduceScatter, type Wanted } from './ring.js';
import { axesOfMask, axesSize, concatDim, groupOf, shardIndex, sizeOf, sliceDim, swap01, type Local } from './shard.js';
import type { Exchange } from './exchange.js';
import type { TraceEvent } from './trace.js';

/** A device stopped in the middle of a step: names the device and the op. */
export class DeviceFault extends Error {
  constructor(readonly device: number, readonly op: string, readonly step: number, readonly detail: string) {
    super(`device ${device} failed in op ${op} at step ${step}: ${detail}`);
    this.name = 'DeviceFault';
  }
}

export interface Fault {
  readonly device: number;
  readonly op: string;
  readonly step: number;
}

interface Contribution {
  readonly mask: number;
  readonly data: Float32Array;
}

/** One simulated device: only its own shards, its own optimizer state, its own clock. */
export interface Device {
  readonly index: number;
  readonly coords: readonly number[];
  readonly stage: number;
  /** Weight key (`w` or `w@layer`) → local block (ZeRO-3: this device's flat chunk of it). */
  readonly params: Map<string, Float32Array>;
  readonly adamM: Map<string, Float32Array>;
  readonly adamV: Map<string, Float32Array>;
  /** Local weight gradients being accumulated over microbatches. */
  readonly grads: Map<string, Float32Array>;
  /** Reduced gradient chunks (ZeRO) or reduced local gradients, ready for Adam. */
  readonly reduced: Map<string, Float32Array>;
  /** ZeRO-3: weights gathered for the block now running. */
  readonly gathered: Map<string, Float32Array>;
  readonly store: Map<string, Local>;
  readonly pending: Map<string, Contribution[]>;
  readonly resolved: Map<string, Float32Array>;
  /** Its share of the scattered residual stream under sequence parallelism (null without it). */
  readonly seq: SeqShare | null;
  carry: Local | null;
  clock: number;
  /** Bytes sent, per `phase|record name#collective index`. */
  readonly sent: Map<string, number>;
}

export interface OpTiming {
  /** Device-seconds of compute and of collectives, and device-executions. */
  compute: number;
  collective: number;
  executions: number;
}

export interface ExecutorOptions {
  readonly seed: number;
  readonly adam: AdamConfig;
  readonly trace: boolean;
  /**
   * Run only this thread's devices and reach the others through shared memory, on real clocks.
   * Without it every device runs here in lockstep on simulated clocks (each device's clock
   * advances by its own kernels; a collective starts when its last member arrives).
   */
  readonly exchange?: Exchange;
  /** Which devices this executor holds (default: all, or the exchange's): a holder of states only owns none. */
  readonly owns?: (device: number) => boolean;
}

const keyOf = (w: string, layer: number | null) => (layer === null ? w : `${w}@${layer}`);
/** Prefix of a layer's stored tensors: the block's name too, as the encoder and decoder share layer numbers. */
const layerKey = (b: Block, layer: number | null) => `${b.name}.${layer}:`;

/**
 * Executes a lowered program on a simulated mesh, all devices in lockstep in this thread: every
 * record runs on each device in turn until each reaches the record's next collective, which then
 * runs as a ring over the real buffers of its group (see README: why lockstep).
 */
export class Executor {
  /** Every device of the mesh; only those this executor owns hold weights and run. */
  readonly devices: Device[];
  /** The devices this executor runs. */
  readonly mine: Device[];
  readonly timings = new Map<string, OpTiming>();
  readonly events: TraceEvent[] = [];
  fault: Fault | null = null;
  stepIndex = 0;
  private readonly mesh: Mesh;
  private readonly stages: number;
  private readonly specs = new Map<string, { spec: OpSpec; block: Block }>();
  private readonly fwd = new Map<string, LoweredOp[]>();
  private readonly bwd = new Map<string, LoweredOp[]>();
  private readonly syncRec = new Map<string, LoweredOp>();
  private readonly adamRec = new Map<string, LoweredOp>();
  private readonly gatherRec = new Map<string, LoweredOp>();
  private readonly sendRec = new Map<string, LoweredOp>();
  private readonly weightBlock = new Map<string, Block>();
  private readonly produced = new Map<string, Set<string>>();
  private readonly alias = new Map<string, string>();
  /** Per weight, the axes ZeRO shards it over: the batch axes that do not split it already (the lowering's zeroMask), within a hybrid plan's zeroAxes. */
  private readonly zeroAxes = new Map<string, string[]>();
  private tokens: Int32Array = new Int32Array(0);
  /** Calls of exec (and sends): the same sequence on every thread, so it tags their collectives. */
  private seq = 0;
  private readonly exchange: Exchange | null;

  constructor(readonly program: Program, readonly opts: ExecutorOptions) {
    const { graph, mesh, plan } = program;
    this.mesh = mesh;
    this.stages = program.stages;
    for (const b of graph.blocks) {
      this.fwd.set(b.name, []);
      this.bwd.set(b.name, []);
      this.produced.set(b.name, new Set(b.ops.map((o) => o.output)));
      for (const op of b.ops) {
        this.specs.set(op.name, { spec: op, block: b });
        for (const id of op.inputs) if (graph.tensors.get(id)!.role === 'weight' && !this.weightBlock.has(id)) this.weightBlock.set(id, b);
        if (op.kind === 'rename' && renameKind(axesOf(plan.layout, op.dim!), axesOf(plan.layout, op.to!)) === 'none') this.alias.set(op.output, op.inputs[0]);
      }
    }
    for (const rec of program.ops) {
      if (rec.kind === 'sync' && rec.name.startsWith('sync:')) this.syncRec.set(rec.name.slice(5), rec);
      else if (rec.kind === 'sync' && rec.name.startsWith('gather:')) this.gatherRec.set(rec.name.slice(7), rec);
      else if (rec.kind === 'adam') this.adamRec.set(rec.name.slice(5), rec);
      else if (rec.kind === 'send') this.sendRec.set(rec.phase, rec);
      else if (rec.phase === 'forward') this.fwd.get(rec.block)!.push(rec);
      else this.bwd.get(rec.block)!.push(rec);
    }
    const T = program.lowering.seqMask;
    const seqAxes = axesOfMask(mesh, T);
    const scattered = program.lowering.seqSplit;
    const zm = zeroGroupMask(program.lowering, plan);
    for (const w of program.lowering.weights) this.zeroAxes.set(w.id, plan.zero > 0 ? axesOfMask(mesh, w.zeroMask & zm) : []);
    this.devices = [];
    for (let i = 0; i < mesh.size; i++) {
      const coords = deviceCoords(mesh, i);
      this.devices.push({
        index: i, coords, stage: shardIndex(mesh, axesOf(plan.layout, 'layers'), coords),
        params: new Map(), adamM: new Map(), adamV: new Map(), grads: new Map(), reduced: new Map(), gathered: new Map(),
        store: new Map(), pending: new Map(), resolved: new Map(), carry: null, clock: 0, sent: new Map(),
        seq: T ? { has: (id) => scattered.has(id), mask: T, axes: seqAxes, size: axesSize(mesh, seqAxes), index: shardIndex(mesh, seqAxes, coords) } : null,
      });
    }
    this.exchange = opts.exchange ?? null;
    const owns = opts.owns ?? (this.exchange ? (d: number) => this.exchange!.owns(d) : () => true);
    this.mine = this.devices.filter((d) => owns(d.index));
    for (const d of this.mine) this.initDevice(d);
  }

  // ---- shapes and offsets -------------------------------------------------------------------

  private localSize(d: DimName): number {
    if (d === 'batch') return this.program.microBatch;
    return this.program.graph.dimSizes[d] / this.program.layout.split[d];
  }

  /**
   * A gradient of a scattered tensor as the device keeps it: its share along length. A contribution
   * over the whole block of length (one no reduce-scatter summed: a projection whose contraction
   * T does not split) is sliced; a share is kept as it is.
   */
  private own(dev: Device, id: string, data: Float32Array): Float32Array {
    const seq = dev.seq;
    if (!seq || !seq.has(id)) return data;
    const dims = this.program.graph.tensors.get(id)!.dims;
    const shape = dims.map((d) => this.localSize(d));
    if (data.length !== sizeOf(shape)) return data;
    return seqSlice({ dims, shape, data }, 1, seq).data;
  }

  /** The sum of a tensor's gradient contributions, each as the device keeps it (own). */
  private sumOwn(dev: Device, id: string, list: readonly Contribution[]): Float32Array {
    const sum = Float32Array.from(this.own(dev, id, list[0].data));
    for (let k = 1; k < list.length; k++) {
      const x = this.own(dev, id, list[k].data);
      for (let i = 0; i < sum.length; i++) sum[i] += x[i];
    }
    return sum;
  }

  offset(dev: Device, d: DimName, micro: number): number {
    const idx = shardIndex(this.mesh, axesOf(this.program.plan.layout, d), dev.coords);
    if (d === 'batch') return idx * (this.program.graph.spec.batch / this.program.layout.split.batch) + micro * this.program.microBatch;
    return idx * this.localSize(d);
  }

  private weightShape(w: string): { dims: readonly DimName[]; shape: number[] } {
    const dims = this.program.graph.tensors.get(w)!.dims;
    return { dims, shape: dims.map((d) => this.localSize(d)) };
  }

  /**
   * The layers a stage holds of a layered block (global layer indices), or [null] for other blocks.
   * Interleaved (V virtual stages), the block splits into stages × V chunks of consecutive layers,
   * chunk c on stage c mod stages (Narayanan et al. 2021, Sec. 2.2): a stage holds V chunks.
   */
  layersOf(b: Block, stage: number): (number | null)[] {
    if (!b.layered) return [null];
    const V = this.program.plan.virtualStages;
    return Array.from({ length: V }, (_, v) => this.chunkLayers(b, v * this.stages + stage)).flat();
  }

  /** A layered block's chunks of consecutive layers: stages × virtual stages. */
  private get chunks(): number {
    return this.stages * this.program.plan.virtualStages;
  }

  /** The layers of chunk c of a layered block (in layer order). */
  private chunkLayers(b: Block, c: number): number[] {
    const per = b.repeat / this.chunks;
    return Array.from({ length: per }, (_, i) => c * per + i);
  }

  /** Which stage runs a non-layered block: the embedding on the first, the rest on the last. */
  private ownerStage(b: Block): number {
    return b.name === 'embed' ? 0 : this.stages - 1;
  }

  /** This executor's devices of stage s. */
  private stageDevices(s: number): Device[] {
    return this.mine.filter((d) => d.stage === s);
  }

  weightKeys(dev: Device): { w: string; layer: number | null; key: string }[] {
    const out: { w: string; layer: number | null; key: string }[] = [];
    for (const w of this.program.graph.weights) {
      for (const layer of this.layersOf(this.weightBlock.get(w)!, dev.stage)) out.push({ w, layer, key: keyOf(w, layer) });
    }
    return out;
  }

  private zeroRank(dev: Device, w: string): { rank: number; n: number } {
    const axes = this.zeroAxes.get(w)!;
    if (axes.length === 0) return { rank: 0, n: 1 };
    const g = groupOf(this.mesh, axes, dev.index);
    return { rank: g.indexOf(dev.index), n: g.length };
  }

  /** ZeRO's flat chunk of a local weight on this device: [start, end). */
  chunkOf(dev: Device, length: number, w: string): [number, number] {
    const { rank, n } = this.zeroRank(dev, w);
    const b = chunkBounds(length, n);
    return [b[rank], b[rank + 1]];
  }

  /** Whether ZeRO shards weight w's states (it has batch axes to shard over). */
  sharded(w: string): boolean {
    return this.program.plan.zero >= 1 && this.zeroAxes.get(w)!.length > 0;
  }

  /**
   * The length of every shard a device holds (weights; Adam moments), from the plan alone: what a
   * checkpoint is checked against, also by an executor that holds no device's state itself.
   */
  shardSizes(dev: Device): { params: Map<string, number>; moments: Map<string, number> } {
    const params = new Map<string, number>(), moments = new Map<string, number>();
    for (const { w, key } of this.weightKeys(dev)) {
      const n = this.weightShape(w).shape.reduce((a, x) => a * x, 1);
      if (this.sharded(w)) {
        const [s, e] = this.chunkOf(dev, n, w);
        params.set(key, this.program.plan.zero >= 3 ? e - s : n);
        moments.set(key, e - s);
      } else {
        params.set(key, n);
        moments.set(key, n);
      }
    }
    return { params, moments };
  }

  private initDevice(dev: Device): void {
    for (const { w, layer, key } of this.weightKeys(dev)) {
      const { dims, shape } = this.weightShape(w);
      const full = initWeight(this.program.graph, w, layer, this.opts.seed, shape, dims.map((d) => this.offset(dev, d, 0)));
      const n = full.length;
      if (this.sharded(w)) {
        const [s, e] = this.chunkOf(dev, n, w);
        dev.params.set(key, this.program.plan.zero >= 3 ? full.slice(s, e) : full);
        dev.adamM.set(key, new Float32Array(e - s));
        dev.adamV.set(key, new Float32Array(e - s));
      } else {
        dev.params.set(key, full);
        dev.adamM.set(key, new Float32Array(n));
        dev.adamV.set(key, new Float32Array(n));
      }
    }
  }

  // ---- lockstep execution of one record ------------------------------------------------------

  private timing(rec: LoweredOp): OpTiming {
    const name = `${rec.phase}|${rec.name}`;
    let t = this.timings.get(name);
    if (!t) this.timings.set(name, (t = { compute: 0, collective: 0, executions: 0 }));
    return t;
  }

  private event(dev: Device, rec: LoweredOp, cat: 'compute' | 'collective' | 'wait', ts: number, dur: number, c: Collective | null): void {
    if (!this.opts.trace || dur <= 0) return;
    this.events.push({
      name: rec.name, cat, ph: 'X', ts, dur, pid: 0, tid: dev.index,
      args: {
        op: rec.name, phase: rec.phase, kind: rec.kind, klass: rec.klass, flops: c ? 0 : rec.flops, bytes: c ? c.bytes : rec.bytes,
        axes: c ? [...c.axes] : [], collective: c ? c.kind : null, step: this.stepIndex,
      },
    });
  }

  private now(): number {
    return this.exchange ? this.exchange.now() : performance.now() * 1e3;
  }

  private exec(rec: LoweredOp, all: readonly Device[], make: (d: Device) => OpGen): void {
    const seq = ++this.seq;
    const devs = all.filter((d) => this.mine.includes(d));
    const t = this.timing(rec);
    const f = this.fault;
    const gens = devs.map((d) => {
      if (f && f.device === d.index && f.op === rec.name && f.step === this.stepIndex) {
        throw new DeviceFault(d.index, rec.name, this.stepIndex, 'injected fault');
      }
      return make(d);
    });
    t.executions += devs.length;
    const replies: (Reply | undefined)[] = devs.map(() => undefined);
    let live = devs.map((_, i) => i);
    for (let round = 0; live.length; round++) {
      const reqs = new Map<number, Request>();
      for (const i of live) {
        const d = devs[i];
        const t0 = this.now();
        let r: IteratorResult<Request, void>;
        try {
          r = gens[i].next(replies[i] as Reply);
        } catch (e) {
          if (e instanceof DeviceFault) throw e;
          throw new DeviceFault(d.index, rec.name, this.stepIndex, (e as Error).message);
        }
        const t1 = this.now();
        const dt = t1 - t0;
        this.event(d, rec, 'compute', this.exchange ? t0 : d.clock, dt, null);
        d.clock = this.exchange ? t1 : d.clock + dt;
        t.compute += dt / 1e6;
        if (!r.done) reqs.set(i, r.value);
      }
      live = [...reqs.keys()];
      if (live.length) this.collective(rec, devs, reqs, replies, t, (seq * 64 + round) & 0x7fffffff);
    }
  }

  private collective(rec: LoweredOp, devs: readonly Device[], reqs: Map<number, Request>, replies: (Reply | undefined)[], t: OpTiming, tag: number): void {
    const first = reqs.values().next().value!;
    const c = rec.collectives[first.index];
    if (!c) throw new Error(`${rec.name}: asks for collective ${first.index}, but its lowered record has ${rec.collectives.length}`);
    const axes = first.kind === 'allgather' ? first.axes : first.kind === 'all-to-all' || first.kind === 'regroup' ? axesOfMask(this.mesh, c.mask) : c.axes;
    if ([...axes].sort().join() !== [...c.axes].sort().join()) {
      throw new Error(`${rec.name}: the runtime's ${first.kind} over ${axes.join('+')} is not the lowering's ${c.kind} over ${c.axes.join('+')}`);
    }
    const slot = new Map<number, number>();
    devs.forEach((d, i) => slot.set(d.index, i));
    const groups = new Map<string, number[]>();
    for (const i of reqs.keys()) {
      const g = groupOf(this.mesh, axes, devs[i].index);
      groups.set(g.join(), g);
    }
    // Offer every local buffer first, then read the peers': no thread waits on one that waits on it.
    const ex = this.exchange;
    if (ex) for (const [i, r] of reqs) ex.post(devs[i].index, tag, groups.get(groupOf(this.mesh, axes, devs[i].index).join())!, payloadOf(r));
    for (const members of groups.values()) {
      // When the last member arrived: local members when they yielded, remote ones when they posted.
      let posted = -Infinity;
      const mreqs = members.map((dev) => {
        const s = slot.get(dev);
        if (s !== undefined && reqs.has(s)) {
          posted = Math.max(posted, devs[s].clock);
          return reqs.get(s)!;
        }
        if (!ex || ex.owns(dev)) throw new Error(`${rec.name}: device ${members.find((m) => slot.has(m))} waits for device ${dev} in ${c.kind} over ${c.axes.join('+')}`);
        const x = ex.read(dev, tag);
        posted = Math.max(posted, x.posted);
        return withPayload(first, x);
      });
      for (const r of mreqs) if (r.kind !== first.kind || r.index !== first.index) throw new Error(`${rec.name}: devices disagree on the next collective`);
      const local = members.filter((dev) => slot.has(dev) && reqs.has(slot.get(dev)!));
      // Only this thread's devices' results are worked out.
      const mine = new Set(local.map((dev) => members.indexOf(dev)));
      const t0 = this.now();
      const { out, sent } = this.ring(mreqs, members, c, (m) => mine.has(m));
      const t1 = this.now();
      // Simulated clocks: the collective starts when its last member arrives. Real ones: each member's own wait counts.
      const start = Math.max(...local.map((dev) => devs[slot.get(dev)!].clock));
      for (const dev of local) {
        const s = slot.get(dev)!;
        const d = devs[s];
        replies[s] = out[members.indexOf(dev)];
        const key = `${rec.phase}|${rec.name}#${first.index}`;
        d.sent.set(key, (d.sent.get(key) ?? 0) + sent[members.indexOf(dev)]);
        // Threads: the device waits from its own arrival to the last member's, then the collective runs.
        const from = ex ? Math.max(d.clock, posted) : start;
        const to = ex ? t1 : start + (t1 - t0);
        if (ex) this.event(d, rec, 'wait', d.clock, from - d.clock, c);
        this.event(d, rec, 'collective', from, to - from, c);
        d.clock = to;
        t.collective += (to - from) / 1e6;
      }
    }
  }

  private ring(reqs: Request[], members: number[], c: Collective, wanted: Wanted): { out: Reply[]; sent: number[] } {
    const r0 = reqs[0];
    switch (r0.kind) {
      case 'allreduce':
        return allreduce(reqs.map((r) => (r as typeof r0).data), r0.combine, wanted);
      case 'reduce-scatter':
        return reduceScatter(reqs.map((r) => (r as typeof r0).data), 'sum', wanted);
      case 'allgather-flat':
        return allgatherFlat(reqs.map((r) => (r as typeof r0).chunk), wanted);
      case 'allgather': {
        const wrap = reqs.map((r) => ({ local: (r as typeof r0).local, byteLength: (r as typeof r0).local.data.byteLength }));
        const ag = allgatherChunks(wrap, (x) => ({ local: { ...x.local, data: x.local.data.slice() }, byteLength: x.byteLength }), wanted);
        // Another thread's member gets nothing worked out here (its own thread assembles it).
        return { out: ag.out.map((parts, j) => (wanted(j) ? concatDim(parts.map((p) => p.local), r0.k, r0.dims) : parts[j].local)), sent: ag.sent };
      }
      case 'all-to-all':
        return this.allToAll(reqs as (typeof r0)[], members);
      case 'regroup':
        return this.regroup(reqs as (typeof r0)[], members, c);
    }
  }

  /** First expert of a device's block of `experts`. */
  private expertOffset(dev: number): number {
    const E = this.program.graph.dimSizes.experts / this.program.layout.split.experts;
    return shardIndex(this.mesh, axesOf(this.program.plan.layout, 'experts'), deviceCoords(this.mesh, dev)) * E;
  }

  /**
   * A regroup step over its group (see Request 'regroup'). Expert-side sequences are ordered by
   * the member they came from, in the group's rank order, which both directions share.
   */
  private regroup(reqs: Extract<Request, { kind: 'regroup' }>[], members: number[], c: Collective): { out: Reply[]; sent: number[] } {
    const n = members.length;
    const El = this.program.graph.dimSizes.experts / this.program.layout.split.experts;
    const sent = new Array<number>(n).fill(0);
    const take = (src: number, dst: number, piece: Local): Local => {
      if (src !== dst) sent[src] += piece.data.byteLength;
      return piece;
    };
    const EXP: readonly DimName[] = ['experts', 'group', 'expert_capacity', 'd_model'];
    if (reqs[0].move === 'to-experts') {
      // Device j keeps its experts of every member's sequences.
      const out = members.map((dj, j) => concatDim(members.map((_, i) => take(i, j, swap01(sliceDim(reqs[i].local, 1, this.expertOffset(dj), El), EXP))), 1, EXP));
      return { out, sent };
    }
    if (c.kind === 'all-to-all') {
      // Device j gets its own sequences back from every member, ordered by the member's experts.
      const mb = reqs[0].local.shape[1] / n;
      const order = members.map((_, i) => i).sort((a, b) => this.expertOffset(members[a]) - this.expertOffset(members[b]));
      const out = members.map((_, j) => concatDim(order.map((i) => take(i, j, sliceDim(reqs[i].local, 1, j * mb, mb))), 0, EXP));
      return { out, sent };
    }
    // The allgather over the expert axes batch lacks: each member holds the experts of its all-to-all group.
    const a2a = axesOfMask(this.mesh, this.program.layout.mask.experts & this.program.layout.mask.batch);
    const held = members.map((d) => groupOf(this.mesh, a2a, d).map((x) => this.expertOffset(x)).sort((a, b) => a - b));
    const out = members.map((_, j) => {
      const pieces: { at: number; x: Local }[] = [];
      members.forEach((_, i) => held[i].forEach((at, h) => pieces.push({ at, x: take(i, j, sliceDim(reqs[i].local, 0, h * El, El)) })));
      pieces.sort((a, b) => a.at - b.at);
      return concatDim(pieces.map((p) => p.x), 0, EXP);
    });
    return { out, sent };
  }

  /**
   * Re-split one dimension from ordered axes `from` to `to` within their group: every device
   * receives the pieces of its new block it does not hold, each from one holder (spread over replicas).
   */
  private allToAll(reqs: Extract<Request, { kind: 'all-to-all' }>[], members: number[]): { out: Reply[]; sent: number[] } {
    const r0 = reqs[0];
    const n = reqs.length;
    const G = r0.local.shape[r0.k] * axesSize(this.mesh, r0.from);
    const oldLen = G / axesSize(this.mesh, r0.from), newLen = G / axesSize(this.mesh, r0.to);
    const coords = members.map((d) => deviceCoords(this.mesh, d));
    const oldIdx = coords.map((c) => shardIndex(this.mesh, r0.from, c));
    const newIdx = coords.map((c) => shardIndex(this.mesh, r0.to, c));
    const sent = new Array<number>(n).fill(0);
    const out: Local[] = [];
    for (let j = 0; j < n; j++) {
      const start = newIdx[j] * newLen;
      const parts: Local[] = [];
      for (let at = start; at < start + newLen;) {
        const seg = Math.floor(at / oldLen);
        const end = Math.min(start + newLen, (seg + 1) * oldLen);
        const holders = oldIdx.map((o, i) => (o === seg ? i : -1)).filter((i) => i >= 0);
        const src = holders.includes(j) ? j : holders[j % holders.length];
        const piece = sliceDim(reqs[src].local, r0.k, at - seg * oldLen, end - at, r0.dims);
        if (src !== j) sent[src] += piece.data.byteLength;
        parts.push(piece);
        at = end;
      }
      out.push(parts.length === 1 ? parts[0] : concatDim(parts, r0.k, r0.dims));
    }
    return { out, sent };
  }

  private maskOf(axes: readonly string[]): number {
    let m = 0;
    for (const a of axes) m |= 1 << this.mesh.axes.findIndex((x) => x.name === a);
    return m;
  }

  // ---- per-device op context ------------------------------------------------------------------

  private canonical(id: string): string {
    let c = id;
    while (this.alias.has(c)) c = this.alias.get(c)!;
    return c;
  }

  private storeKey(b: Block, layer: number | null, id: string, write: boolean): string {
    const graph = this.program.graph;
    if (b.layered) {
      if (id === b.input) return `${layerKey(b, layer)}${id}@${write ? 'out' : 'in'}`;
      const base = id.split('#')[0];
      if (this.produced.get(b.name)!.has(base) || graph.tensors.get(base)?.role === 'mask') return `${layerKey(b, layer)}${id}`;
    }
    if (!write) {
      const bi = graph.blocks.indexOf(b);
      const before = graph.blocks.slice(0, bi).find((x) => x.layered && x.input === id);
      if (before) return `post:${id}`;
    }
    return `-:${id}`;
  }

  private ids(dev: Device, id: string, micro: number): Local {
    const { graph } = this.program;
    const L = graph.spec.seqLen;
    const mb = this.program.microBatch;
    const ll = this.localSize('length');
    const b0 = this.offset(dev, 'batch', micro), l0 = this.offset(dev, 'length', micro);
    const shift = id === 'targets' ? 1 : 0;
    const data = new Float32Array(mb * ll);
    for (let b = 0; b < mb; b++) for (let l = 0; l < ll; l++) data[b * ll + l] = this.tokens[(b0 + b) * (L + 1) + l0 + l + shift];
    return { dims: ['batch', 'length'], shape: [mb, ll], data };
  }

  private ctx(dev: Device, rec: LoweredOp, micro: number, layer: number | null): OpCtx {
    const found = this.specs.get(rec.name.split('/')[0]);
    if (!found) throw new Error(`lowered record ${rec.name} names no op of the graph`);
    const { spec, block } = found;
    const graph = this.program.graph;
    const layout = this.program.plan.layout;
    return {
      rec, spec, tokens: graph.spec.batch * graph.spec.seqLen, topK: graph.spec.topK ?? 1, seq: dev.seq,
      get: (id) => {
        const t = graph.tensors.get(id);
        if (t?.role === 'weight') {
          const key = keyOf(id, block.layered ? layer : null);
          const data = this.program.plan.zero >= 3 && this.sharded(id) ? dev.gathered.get(key) : dev.params.get(key);
          if (!data) throw new Error(`weight ${key} is not on device ${dev.index}`);
          return { ...this.weightShape(id), data };
        }
        if (t?.role === 'ids') return this.ids(dev, id, micro);
        const x = dev.store.get(this.storeKey(block, layer, id, false));
        if (!x) throw new Error(`tensor ${id} is not on device ${dev.index} (layer ${layer}, microbatch ${micro})`);
        return x;
      },
      set: (id, x) => void dev.store.set(this.storeKey(block, layer, id, true), x),
      offset: (d) => this.offset(dev, d, micro),
      globalSize: (d) => graph.dimSizes[d],
      axes: (d) => axesOf(layout, d),
      axesSize: (axes) => axesSize(this.mesh, axes),
      partialMask: (axes) => this.maskOf(axes),
      seed: () => (this.opts.seed * 7919 + this.stepIndex * 104729 + (layer ?? 0) * 31 + hash(rec.name.split('/')[0])) >>> 0,
      gradOut: (id) => {
        const c = this.canonical(id);
        const r = dev.resolved.get(c);
        if (r) return r;
        const list = dev.pending.get(c);
        if (!list || list.length === 0) throw new Error(`no gradient reached ${c} on device ${dev.index}`);
        for (const x of list) if (x.mask) throw new Error(`the gradient of ${c} is still partial over ${axesOfMask(this.mesh, x.mask).join('+')}: no gradsum reduced it`);
        const sum = this.sumOwn(dev, c, list);
        dev.pending.delete(c);
        dev.resolved.set(c, sum);
        return sum;
      },
      contribute: (wrt, data, mask) => {
        if (graph.tensors.get(wrt)!.role === 'weight') {
          const key = keyOf(wrt, block.layered ? layer : null);
          const g = dev.grads.get(key);
          if (!g) dev.grads.set(key, Float32Array.from(data));
          else for (let i = 0; i < g.length; i++) g[i] += data[i];
          return;
        }
        const c = this.canonical(wrt);
        if (!dev.pending.has(c)) dev.pending.set(c, []);
        dev.pending.get(c)!.push({ mask, data });
      },
    };
  }

  /**
   * Fold a tensor's gradient contributions: each group sharing a partial mask is reduced once, by
   * the record's allreduce over it, or under sequence parallelism by its reduce-scatter over T
   * (then the allreduce over the rest of the mask, if the mask has more).
   */
  private *gradsum(dev: Device, rec: LoweredOp): OpGen {
    const id = rec.output.id;
    const list = dev.pending.get(id) ?? [];
    let total: Float32Array | null = null;
    const add = (x: Float32Array) => {
      const y = this.own(dev, id, x);
      if (!total) total = Float32Array.from(y);
      else for (let i = 0; i < total.length; i++) total[i] += y[i];
    };
    for (const x of list) if (!x.mask) add(x.data);
    const masks = new Set(list.filter((x) => x.mask).map((x) => x.mask));
    const colls = rec.collectives;
    for (let i = 0; i < colls.length; ) {
      let mask = colls[i].mask, span = 1;
      if (colls[i].kind === 'reduce-scatter' && colls[i + 1]?.kind === 'allreduce' && masks.has(mask | colls[i + 1].mask)) {
        mask |= colls[i + 1].mask;
        span = 2;
      }
      const group = list.filter((x) => x.mask === mask);
      if (!group.length) throw new Error(`${rec.name}: no contribution for its reduction over ${axesOfMask(this.mesh, mask).join('+')}`);
      const s = Float32Array.from(group[0].data);
      for (let k = 1; k < group.length; k++) for (let j = 0; j < s.length; j++) s[j] += group[k].data[j];
      let x: Float32Array = s;
      for (let j = i; j < i + span; j++) {
        if (colls[j].kind === 'reduce-scatter') {
          const dims = this.program.graph.tensors.get(id)!.dims;
          x = (yield* sumScatter({ dims, shape: dims.map((d) => this.localSize(d)), data: x }, j)).data;
        } else {
          // A sum over none of T: its group shares this device's share, so the share alone is summed.
          if (!(colls[j].mask & this.program.lowering.seqMask)) x = this.own(dev, id, x);
          x = (yield { kind: 'allreduce', index: j, data: x, combine: 'sum' }) as Float32Array;
        }
      }
      add(x);
      masks.delete(mask);
      i += span;
    }
    if (masks.size) throw new Error(`${rec.name}: a contribution partial over ${axesOfMask(this.mesh, [...masks][0]).join('+')} has no reduction`);
    dev.pending.set(id, total ? [{ mask: 0, data: total }] : []);
  }

  // ---- ZeRO, gradient sync and Adam --------------------------------------------------------------

  private gatherWeights(b: Block, layer: number | null, devs: readonly Device[]): void {
    if (this.program.plan.zero < 3) return;
    for (const w of this.program.graph.weights) {
      if (!this.sharded(w)) continue;
      const own = this.weightBlock.get(w) === b;
      // A tied embedding read by the head on a last stage that never ran the embed block.
      if (!own && !b.ops.some((o) => o.inputs.includes(w))) continue;
      const rec = this.gatherRec.get(w)!;
      const key = keyOf(w, layer);
      // Every thread calls exec in the same order (it numbers the collectives), even with no device that needs it.
      const need = own ? devs : devs.filter((d) => !d.gathered.has(key));
      this.exec(rec, need, (d) => (function* (): OpGen {
        d.gathered.set(key, (yield { kind: 'allgather-flat', index: 0, chunk: d.params.get(key)! }) as Float32Array);
      })());
    }
  }

  /** Non-layered weights read on more than one pipeline stage: a tied embedding (embed on the first, logits on the last). */
  private crossStage(w: string): boolean {
    if (this.stages < 2) return false;
    const b = this.weightBlock.get(w)!;
    if (b.layered) return false;
    return this.program.graph.blocks.some((x) => !x.layered && this.ownerStage(x) !== this.ownerStage(b) && x.ops.some((o) => o.inputs.includes(w)));
  }

  /**
   * The first and last stages each hold a copy of a tied embedding and each compute part of its
   * gradient: they are summed over the pipeline axes before the gradient sync, as Megatron-LM's
   * embedding group does. The lowering has no record of this yet, so it runs under a record of its
   * own (`tie:<weight>`), which the trace shows as communication over the pipeline axes.
   */
  private tie(w: string): void {
    const sync = this.syncRec.get(w) ?? this.adamRec.get(w)!;
    const axes = axesOf(this.program.plan.layout, 'layers');
    const n = sizeOf(this.weightShape(w).shape);
    const c: Collective = {
      kind: 'allreduce', axes, mask: this.maskOf(axes), groupSize: this.stages, tensor: w, bytes: 4 * n, sent: (2 * (this.stages - 1) / this.stages) * 4 * n, overlappable: true, role: sync.collectives[0]?.role ?? 'gradient',
    };
    const rec: LoweredOp = { ...sync, name: `tie:${w}`, phase: 'sync', collectives: [c] };
    this.exec(rec, this.mine, (d) => (function* (): OpGen {
      const g = d.grads.get(w) ?? new Float32Array(n);
      d.grads.set(w, (yield { kind: 'allreduce', index: 0, data: g, combine: 'sum' }) as Float32Array);
    })());
  }

  private sync(perMicrobatch: boolean): void {
    for (const w of this.program.graph.weights) {
      if (this.crossStage(w)) {
        const r = this.syncRec.get(w);
        const everyMicrobatch = !!r && r.collectives[0].kind === 'reduce-scatter' && this.program.plan.zero >= 2;
        if (everyMicrobatch === perMicrobatch) this.tie(w);
      }
      const rec = this.syncRec.get(w);
      if (!rec) continue;
      const rs = rec.collectives[0].kind === 'reduce-scatter';
      if (perMicrobatch !== (rs && this.program.plan.zero >= 2)) continue;
      for (const layer of this.layerList(w)) {
        const key = keyOf(w, layer);
        const devs = this.mine.filter((d) => this.layersOf(this.weightBlock.get(w)!, d.stage).includes(layer));
        this.exec(rec, devs, (d) => (function* (self: Executor): OpGen {
          const n = sizeOf(self.weightShape(w).shape);
          let g: Float32Array = d.grads.get(key) ?? new Float32Array(n);
          d.grads.delete(key);
          for (let i = 0; i < rec.collectives.length; i++) {
            const c = rec.collectives[i];
            g = (yield c.kind === 'reduce-scatter' ? { kind: 'reduce-scatter', index: i, data: g } : { kind: 'allreduce', index: i, data: g, combine: 'sum' }) as Float32Array;
          }
          const acc = d.reduced.get(key);
          if (acc && perMicrobatch) for (let i = 0; i < g.length; i++) acc[i] += g[i];
          else d.reduced.set(key, g);
        })(this));
      }
    }
  }

  /** Global layer indices a weight has (null for a shared weight). */
  private layerList(w: string): (number | null)[] {
    const b = this.weightBlock.get(w)!;
    return b.layered ? Array.from({ length: b.repeat }, (_, i) => i) : [null];
  }

  private optimize(): void {
    const zero = this.program.plan.zero;
    for (const w of this.program.graph.weights) {
      for (const layer of this.layerList(w)) {
        const key = keyOf(w, layer);
        const devs = this.mine.filter((d) => d.params.has(key));
        const t = this.stepIndex + 1;
        this.exec(this.adamRec.get(w)!, devs, (d) => (function* (self: Executor): OpGen {
          const p = d.params.get(key)!;
          const n = sizeOf(self.weightShape(w).shape);
          let g = d.reduced.get(key) ?? d.grads.get(key);
          d.reduced.delete(key);
          d.grads.delete(key);
          if (self.sharded(w)) {
            const [s, e] = self.chunkOf(d, n, w);
            if (g && g.length === n) g = g.subarray(s, e); // no reduce-scatter ran: take this chunk
            const chunk = zero >= 3 ? p : p.subarray(s, e);
            adamUpdate(chunk, g ?? new Float32Array(e - s), d.adamM.get(key)!, d.adamV.get(key)!, t, self.opts.adam);
          } else {
            adamUpdate(p, g ?? new Float32Array(n), d.adamM.get(key)!, d.adamV.get(key)!, t, self.opts.adam);
          }
        })(this));
        const gather = this.gatherRec.get(w);
        if (gather && gather.phase === 'optimizer') {
          this.exec(gather, devs, (d) => (function* (self: Executor): OpGen {
            const p = d.params.get(key)!;
            const [s, e] = self.chunkOf(d, p.length, w);
            d.params.set(key, (yield { kind: 'allgather-flat', index: 0, chunk: p.slice(s, e) }) as Float32Array);
          })(this));
        }
      }
    }
  }

  // ---- one training step -------------------------------------------------------------------------

  private send(phase: 'forward' | 'backward', from: number, to: number, take: (d: Device) => Local, put: (d: Device, x: Local) => void): void {
    const rec = this.sendRec.get(phase)!;
    const layersAxes = axesOf(this.program.plan.layout, 'layers');
    const tag = (++this.seq * 64) & 0x7fffffff;
    const t = this.timing(rec);
    const key = `${rec.phase}|${rec.name}#0`;
    const ex = this.exchange;
    const mine = (d: Device) => this.mine.includes(d);
    for (const d of this.devices.filter((x) => x.stage === from)) {
      // The peer: same coordinates, the neighbouring stage along the layers axes.
      const peer = this.devices.find((p) => p.stage === to && p.coords.every((c, i) => layersAxes.includes(this.mesh.axes[i].name) || c === d.coords[i]))!;
      if (!mine(d) && !mine(peer)) continue;
      const f = this.fault;
      if (mine(d) && f && f.device === d.index && f.op === rec.name && f.step === this.stepIndex) throw new DeviceFault(d.index, rec.name, this.stepIndex, 'injected fault');
      if (mine(d) && mine(peer)) {
        const t0 = this.now();
        const x = take(d);
        const copy = { ...x, data: x.data.slice() };
        const dur = this.now() - t0;
        const start = ex ? t0 : Math.max(d.clock, peer.clock);
        put(peer, copy);
        d.sent.set(key, (d.sent.get(key) ?? 0) + copy.data.byteLength);
        this.event(d, rec, 'collective', start, dur, rec.collectives[0]);
        d.clock = peer.clock = start + dur;
        t.collective += dur / 1e6;
      } else if (mine(d)) {
        const x = take(d);
        ex!.post(d.index, tag, [d.index, peer.index], x);
        const t1 = this.now();
        d.sent.set(key, (d.sent.get(key) ?? 0) + x.data.byteLength);
        this.event(d, rec, 'collective', d.clock, t1 - d.clock, rec.collectives[0]);
        t.collective += (t1 - d.clock) / 1e6;
        d.clock = t1;
      } else {
        // The receiver's wait for its previous stage is its share of the pipeline bubble.
        const x = ex!.read(d.index, tag);
        put(peer, x);
        const t1 = this.now();
        const from = Math.max(peer.clock, x.posted);
        this.event(peer, rec, 'wait', peer.clock, from - peer.clock, rec.collectives[0]);
        this.event(peer, rec, 'collective', from, t1 - from, rec.collectives[0]);
        peer.clock = t1;
        continue;
      }
      t.executions += 1;
    }
  }

  private forwardPass(micro: number): void {
    const { graph } = this.program;
    for (const b of graph.blocks) {
      const recs = this.fwd.get(b.name)!;
      if (!b.layered) {
        const devs = this.stageDevices(this.ownerStage(b));
        this.gatherWeights(b, null, devs);
        for (const rec of recs) this.exec(rec, devs, (d) => forward(this.ctx(d, rec, micro, null)));
        continue;
      }
      // Chunk by chunk in layer order; interleaved, the last stage hands its chunk's output on to the first.
      const chunks = this.chunks;
      for (let c = 0; c < chunks; c++) {
        const s = c % this.stages;
        const devs = this.stageDevices(s);
        if (c === 0) for (const d of devs) d.carry = d.store.get(`-:${b.input}`)!;
        else this.send('forward', (c - 1) % this.stages, s, (d) => d.carry!, (d, x) => void (d.carry = x));
        for (const layer of this.chunkLayers(b, c)) {
          this.gatherWeights(b, layer, devs);
          for (const d of devs) d.store.set(`${layerKey(b, layer)}${b.input}@in`, d.carry!);
          for (const rec of recs) this.exec(rec, devs, (d) => forward(this.ctx(d, rec, micro, layer)));
          for (const d of devs) {
            d.carry = d.store.get(`${layerKey(b, layer)}${b.input}@out`)!;
            this.dropForRecompute(d, b, layer!);
          }
        }
        if (c === chunks - 1) for (const d of devs) d.store.set(`post:${b.input}`, d.carry!);
      }
    }
  }

  /**
   * Keep only what the backward reads without recomputing: the layer input (full), it and the
   * projections' outputs the backward needs (minimal: model/graph.ts minimalRecompute), or all but
   * the attention core (selective).
   */
  private dropForRecompute(d: Device, b: Block, layer: number): void {
    const mode = this.program.plan.recompute;
    if (mode === 'none') return;
    const tensors = this.program.graph.tensors;
    const core = new Set(b.ops.filter((o) => o.attentionCore).flatMap((o) => [o.output, ...o.saves.filter((s) => tensors.get(s)!.role === 'mask')]));
    const minimal = mode === 'minimal' ? minimalRecompute(this.program.graph, b) : null;
    for (const k of [...d.store.keys()]) {
      const pre = layerKey(b, layer);
      if (!k.startsWith(pre)) continue;
      const id = k.slice(pre.length).split('#')[0].split('@')[0];
      const keep = mode === 'full' ? k === `${pre}${b.input}@in` : minimal ? k === `${pre}${b.input}@in` || minimal.keep.has(id) : !core.has(id);
      if (keep) continue;
      const op = minimal ? b.ops.find((o) => o.output === id) : undefined;
      if (minimal && op && !minimal.rerun.has(op)) {
        // Not rebuilt, since no backward reads its values (the MLP's output, the layer's sum): its
        // backward still asks its shape, so its shape stays, without its data.
        const x = d.store.get(k)!;
        d.store.set(k, { dims: x.dims, shape: x.shape, data: new Float32Array(0) });
      } else d.store.delete(k);
    }
  }

  private backwardPass(micro: number): void {
    const { graph } = this.program;
    for (const d of this.stageDevices(this.stages - 1)) d.pending.set('loss', [{ mask: 0, data: Float32Array.of(1) }]);
    for (let bi = graph.blocks.length - 1; bi >= 0; bi--) {
      const b = graph.blocks[bi];
      const recs = this.bwd.get(b.name)!;
      const runRecs = (devs: readonly Device[], layer: number | null) => {
        for (const d of devs) d.resolved.clear();
        for (const rec of recs) {
          if (rec.phase === 'recompute') this.exec(rec, devs, (d) => forward(this.ctx(d, rec, micro, layer)));
          else if (rec.kind === 'gradsum') this.exec(rec, devs, (d) => this.gradsum(d, rec));
          else this.exec(rec, devs, (d) => backward(this.ctx(d, rec, micro, layer)));
        }
      };
      if (!b.layered) {
        const devs = this.stageDevices(this.ownerStage(b));
        this.gatherWeights(b, null, devs);
        runRecs(devs, null);
        continue;
      }
      const input = b.input!;
      const chunks = this.chunks;
      for (let c = chunks - 1; c >= 0; c--) {
        const s = c % this.stages;
        const devs = this.stageDevices(s);
        if (c < chunks - 1) {
          this.send('backward', (c + 1) % this.stages, s, (d) => this.sumPending(d, input), (d, x) => void d.pending.set(input, [{ mask: 0, data: x.data }]));
        }
        for (const layer of this.chunkLayers(b, c).reverse()) {
          this.gatherWeights(b, layer, devs);
          runRecs(devs, layer);
          for (const d of devs) for (const k of [...d.store.keys()]) if (k.startsWith(layerKey(b, layer))) d.store.delete(k);
        }
      }
    }
  }

  private sumPending(d: Device, id: string): Local {
    const list = d.pending.get(id) ?? [];
    d.pending.delete(id);
    const sum = this.sumOwn(d, id, list);
    return { dims: [], shape: [sum.length], data: sum };
  }

  /** One training step on a global batch of token rows [batch, seqLen + 1]: returns the loss. */
  step(tokens: Int32Array): number {
    this.tokens = tokens;
    const M = this.program.plan.microbatches;
    let loss = 0;
    // The loss is read where it is: on this executor's first device of the last stage, if it has one.
    const last = this.stageDevices(this.stages - 1)[0];
    for (let m = 0; m < M; m++) {
      for (const d of this.devices) {
        d.store.clear();
        d.pending.clear();
        d.resolved.clear();
      }
      this.forwardPass(m);
      loss += last ? last.store.get('-:loss')!.data[0] : NaN;
      this.backwardPass(m);
      this.sync(true);
    }
    this.sync(false);
    this.optimize();
    for (const d of this.devices) {
      d.store.clear();
      d.gathered.clear();
    }
    this.stepIndex++;
    return loss;
  }
}

/** A request's buffer, as it crosses threads. */
function payloadOf(r: Request): Local {
  switch (r.kind) {
    case 'allreduce':
    case 'reduce-scatter':
      return { dims: [], shape: [r.data.length], data: r.data };
    case 'allgather-flat':
      return { dims: [], shape: [r.chunk.length], data: r.chunk };
    case 'allgather':
    case 'all-to-all':
    case 'regroup':
      return r.local;
  }
}

/** A peer's request: this device's, with the peer's buffer (members of a group agree on the rest). */
function withPayload(r: Request, x: Local): Request {
  switch (r.kind) {
    case 'allreduce':
    case 'reduce-scatter':
      return { ...r, data: x.data };
    case 'allgather-flat':
      return { ...r, chunk: x.data };
    case 'allgather':
    case 'all-to-all':
    case 'regroup':
      return { ...r, local: x };
  }
}

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619) >>> 0;
  return h;
}
