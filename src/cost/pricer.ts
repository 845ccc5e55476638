import { divisibilityProblem, axisConflict, compileLayout, type CompiledLayout } from '../layout/layout.js';
import { InputError } from '../errors.js';
import { innerSize, type Mesh } from '../mesh/mesh.js';
import { DIM_NAMES, OP_CLASS, type DimName, type Graph, type OpSpec } from '../model/graph.js';
import { latencySteps, sentBytes, type CollectiveKind } from '../lower/collectives.js';
import { stateBytes } from '../lower/lower.js';
import type { Plan } from '../lower/plan.js';
import type { HardwareProfile } from './profile.js';

/**
 * The search's inner loop: the numbers price(lower(graph, mesh, plan), profile) gives, computed
 * without building the program's records. It walks the same ops in the same order with the same
 * rules as src/lower/lower.ts, over integer-indexed tensors and bitmasks; a property test holds
 * the two equal on random plans. Layer blocks are walked once and scaled by the layer count.
 */
export interface PlanCost {
  readonly valid: boolean;
  /** Why the plan is invalid (empty when valid). */
  readonly problem: string;
  readonly feasible: boolean;
  readonly step: number;
  readonly compute: number;
  readonly communication: number;
  readonly exposed: number;
  readonly bubble: number;
  readonly memory: number;
  readonly bytesPerDevice: number;
  readonly mfu: number;
}

export type Pricer = (plan: Plan) => PlanCost;

const INVALID = (problem: string): PlanCost => ({
  valid: false, problem, feasible: false, step: Infinity, compute: Infinity, communication: Infinity, exposed: Infinity,
  bubble: Infinity, memory: Infinity, bytesPerDevice: Infinity, mfu: 0,
});

const D = DIM_NAMES.length;
const DIM: Record<DimName, number> = Object.fromEntries(DIM_NAMES.map((d, i) => [d, i])) as Record<DimName, number>;
const KLASS = { matmul: 0, elementwise: 1, softmax: 2, reduction: 3 } as const;
const K_ALLREDUCE = 0, K_ALLGATHER = 1, K_RS = 2, K_A2A = 3, K_SEND = 4;
const KIND_NAMES: CollectiveKind[] = ['allreduce', 'allgather', 'reduce-scatter', 'all-to-all', 'send'];

interface COp {
  kind: OpSpec['kind'];
  klass: number;
  inputs: number[];
  output: number;
  /** All dims the op touches (einsum FLOPs, duplication). */
  dims: number[];
  /** Einsum: dims in inputs but not in the output. */
  contracted: number[];
  dim: number;
  to: number;
  core: boolean;
  saves: number[];
  /** Per differentiable input: the input, the dims of the op it lacks, whether the grad is the identity. */
  grads: { wrt: number; lacking: number[]; identity: boolean; weight: boolean; activation: boolean }[];
}

interface CBlock {
  layered: boolean;
  repeat: number;
  ops: COp[];
  input: number;
  masksOf: number[]; // tensors that are dropout masks made here
  /** Inputs of attention-core ops made outside the core, weights excepted: what selective recompute keeps. */
  coreInputs: number[];
}

/** The ZeRO-independent sums of one walk. */
interface Walk {
  compute: number;
  backwardCompute: number;
  blocking: number;
  overlappable: number;
  bytesPerDevice: number;
  modelFlops: number;
  /** Saved activation bytes of one microbatch on the busiest stage. */
  act: number;
  temporary: number;
  /** Per weight: partial-sum mask of its gradient and its local elements. */
  wp: Int32Array;
  wE: Float64Array;
  sendBytes: number;
  M: number;
}

interface LayoutEntry {
  c: CompiledLayout | string;
  walks: Map<number, Walk>;
}

interface CGraph {
  tensorDims: number[][];
  tensorBytes: number[];
  tensorIsMask: boolean[];
  blocks: CBlock[];
  weights: { t: number; block: number }[];
  sizes: number[];
  layerInputOfFirstLayered: number;
}

const compiledGraphs = new WeakMap<Graph, CGraph>();

function compileGraph(graph: Graph): CGraph {
  const hit = compiledGraphs.get(graph);
  if (hit) return hit;
  const ids = [...graph.tensors.keys()];
  const idx = new Map(ids.map((id, i) => [id, i]));
  const tensorDims = ids.map((id) => graph.tensors.get(id)!.dims.map((d) => DIM[d]));
  const tensorBytes = ids.map((id) => graph.tensors.get(id)!.bytes);
  const tensorIsMask = ids.map((id) => graph.tensors.get(id)!.role === 'mask');
  const blocks: CBlock[] = graph.blocks.map((b) => ({
    layered: b.layered, repeat: b.repeat, input: b.input ? idx.get(b.input)! : -1,
    coreInputs: [],
    masksOf: b.ops.flatMap((o) => o.saves.filter((s) => graph.tensors.get(s)!.role === 'mask').map((s) => idx.get(s)!)),
    ops: b.ops.map((op) => {
      const dimSet = new Set<number>();
      for (const id of [...op.inputs, op.output]) for (const d of graph.tensors.get(id)!.dims) dimSet.add(DIM[d]);
      const dims = [...dimSet];
      const outDims = new Set(graph.tensors.get(op.output)!.dims.map((d) => DIM[d]));
      const outLen = graph.tensors.get(op.output)!.dims.length;
      return {
        kind: op.kind, klass: KLASS[OP_CLASS[op.kind]], inputs: op.inputs.map((i) => idx.get(i)!), output: idx.get(op.output)!,
        dims, contracted: dims.filter((d) => !outDims.has(d)), dim: op.dim ? DIM[op.dim] : -1, to: op.to ? DIM[op.to] : -1,
        core: !!op.attentionCore, saves: op.saves.map((s) => idx.get(s)!),
        grads: op.inputs
          .filter((i) => !['ids', 'mask', 'stat'].includes(graph.tensors.get(i)!.role))
          .map((i) => {
            const t = graph.tensors.get(i)!;
            const own = new Set(t.dims.map((d) => DIM[d]));
            return {
              wrt: idx.get(i)!, lacking: dims.filter((d) => !own.has(d)),
              identity: op.kind === 'add' && t.dims.length === outLen,
              weight: t.role === 'weight', activation: t.role === 'activation',
            };
          }),
      };
    }),
  }));
  const weights = graph.weights.map((w) => ({ t: idx.get(w)!, block: graph.blocks.findIndex((b) => b.ops.some((o) => o.inputs.includes(w))) }));
  const weightSet = new Set(weights.map((w) => w.t));
  for (const b of blocks) {
    const madeInCore = new Set(b.ops.filter((o) => o.core).map((o) => o.output));
    // In op order, as lower.ts visits them (duplicates are dropped when counted).
    b.coreInputs = b.ops.filter((o) => o.core).flatMap((o) => o.inputs.filter((i) => !madeInCore.has(i) && !weightSet.has(i)));
  }
  const firstLayered = graph.blocks.find((b) => b.layered)!;
  const cg: CGraph = {
    tensorDims, tensorBytes, tensorIsMask, blocks, weights, sizes: DIM_NAMES.map((d) => graph.dimSizes[d]),
    layerInputOfFirstLayered: idx.get(firstLayered.input!)!,
  };
  compiledGraphs.set(graph, cg);
  return cg;
}

/** A pricer for one graph, mesh and profile. */
export function makePricer(graph: Graph, mesh: Mesh, profile: HardwareProfile): Pricer {
  const cg = compileGraph(graph);
  const nT = cg.tensorDims.length;
  const A = mesh.axes.length;
  const nMasks = 1 << A;
  // Per axis mask: group size, ring bandwidth and latency (slowest link of its axes).
  const mSize = new Float64Array(nMasks), mBw = new Float64Array(nMasks), mLat = new Float64Array(nMasks);
  for (let m = 0; m < nMasks; m++) {
    let n = 1, bw = Infinity, lat = 0;
    for (let i = 0; i < A; i++) {
      if (!(m & (1 << i))) continue;
      n *= mesh.axes[i].size;
      const name = mesh.axes[i].name;
      let link = profile.axisLinks?.[name];
      if (!link) {
        const span = innerSize(mesh, i) * mesh.axes[i].size;
        link = profile.levels.find((l) => span <= l.devices)?.link ?? profile.levels[profile.levels.length - 1].link;
      }
      bw = Math.min(bw, link.bandwidth);
      lat = Math.max(lat, link.latency);
    }
    mSize[m] = n; mBw[m] = bw; mLat[m] = lat;
  }
  const peak = profile.peakFlops[graph.spec.dtype];
  const mmRate = peak * profile.efficiency.matmul;
  // As price.ts opTime: (work + halfWork) / (rate · efficiency) per class; no work, no kernel.
  const rate = [mmRate, profile.memoryBandwidth * profile.efficiency.elementwise, profile.memoryBandwidth * profile.efficiency.softmax, profile.memoryBandwidth * profile.efficiency.reduction];
  const half = (['matmul', 'elementwise', 'softmax', 'reduction'] as const).map((k) => (profile as { efficiencyHalfWork?: Partial<Record<string, number>> }).efficiencyHalfWork?.[k] ?? 0);
  const ktime = (k: number, work: number) => (work <= 0 ? 0 : (work + half[k]) / rate[k]);
  const sb = stateBytes(graph.spec.dtype);
  // Per layout: its compiled form (or why it is invalid) and the zero-independent walks by (recompute, M).
  const layoutCache = new Map<string, LayoutEntry>();
  const layoutByObject = new WeakMap<object, LayoutEntry>();
  const savedBlock = new Float64Array(cg.blocks.length);
  const layerParamsByBlock = new Float64Array(cg.blocks.length);

  // Scratch, reused across calls.
  const E = new Float64Array(nT); // local elements per tensor
  const Bt = new Float64Array(nT); // local bytes per tensor
  const alias = new Int32Array(nT);
  const pendMasks: number[][] = Array.from({ length: nT }, () => []);
  const pendList: number[] = [];
  const weightPartial = new Int32Array(nT);
  const savedMark = new Int32Array(nT);
  const sharedMark = new Int32Array(nT);
  const prodMark = new Int32Array(nT);
  let epoch = 0;
  const L = new Float64Array(D);
  const mask = new Int32Array(D);

  // Accumulators of the current call (the helpers below add to them).
  let compute = 0, backwardCompute = 0, blocking = 0, overlappable = 0, bytesPerDevice = 0, modelFlops = 0;
  let layersMask = 0;
  /** Set by renameKind for an allgather or all-to-all. */
  let renameMask = 0;

  const renameKind = (op: COp): number => {
    // -1 none, -2 slice, else collective kind; mask in renameMask
    const from = mask[op.dim], to = mask[op.to];
    if (from === to) return -1;
    if ((to & from) === from) return -2;
    if ((from & to) === to) { renameMask = from & ~to; return K_ALLGATHER; }
    renameMask = from | to;
    return K_A2A;
  };
  const canon = (t: number) => { while (alias[t] !== t) t = alias[t]; return t; };
  const coll = (kind: number, m: number, bytes: number, count: number, over: boolean) => {
    const n = mSize[m];
    const sent = sentBytes(KIND_NAMES[kind], bytes, n);
    const t = n <= 1 ? 0 : sent / mBw[m] + latencySteps(KIND_NAMES[kind], n) * mLat[m];
    if (over) overlappable += t * count; else blocking += t * count;
    bytesPerDevice += sent * count;
  };
  const sendColl = (bytes: number, count: number) => {
    const m = layersMask;
    const t = bytes / mBw[m] + mLat[m];
    blocking += t * count;
    bytesPerDevice += bytes * count;
  };
  /** Forward (or recompute) of one op: returns its compute time per execution; adds collectives. */
  const forward = (op: COp, layered: boolean, count: number, isModel: boolean): number => {
    let t: number;
    if (op.kind === 'einsum') {
      let f = 2, m = 0;
      for (const d of op.dims) { f *= L[d]; m |= mask[d]; }
      let part = 0;
      for (const d of op.contracted) part |= mask[d];
      if (part) coll(K_ALLREDUCE, part, Bt[op.output], count, false);
      t = ktime(0, f);
      if (layered) m |= layersMask;
      if (isModel) modelFlops += f * count * mSize[m];
    } else {
      let bytes = Bt[op.output];
      for (const i of op.inputs) bytes += Bt[i];
      if (op.kind === 'gather') {
        if (mask[DIM.vocab]) coll(K_ALLREDUCE, mask[DIM.vocab], Bt[op.output], count, false);
      } else if (op.kind === 'layernorm' || op.kind === 'softmax') {
        const m = mask[op.dim];
        if (m) coll(K_ALLREDUCE, m, 8 * (E[op.inputs[0]] / L[op.dim]), count, false);
      } else if (op.kind === 'xent') {
        const m = mask[DIM.vocab];
        if (m) coll(K_ALLREDUCE, m, 12 * (E[op.inputs[0]] / L[DIM.vocab]), count, false);
        const lm = mask[DIM.batch] | mask[DIM.length];
        if (lm) coll(K_ALLREDUCE, lm, 4, count, false);
      } else if (op.kind === 'rename') {
        const k = renameKind(op);
        if (k === -1) bytes = 0;
        else if (k >= 0) coll(k, renameMask, Bt[op.output], count, false);
      }
      t = ktime(op.klass, bytes);
    }
    return t;
  };
  function gradSum(t: number, count: number): void {
    const list = pendMasks[t];
    if (list.length === 0) return;
    const at = pendList.indexOf(t);
    if (at >= 0) pendList.splice(at, 1);
    let nonzero = 0;
    for (const m of list) if (m !== 0) { nonzero++; coll(K_ALLREDUCE, m, Bt[t], count, false); }
    if (!(nonzero === 0 && list.length <= 1)) {
      const bytes = list.length > 1 ? (list.length + 1) * Bt[t] : 0;
      const time = ktime(KLASS.elementwise, bytes) * count;
      compute += time;
      backwardCompute += time;
    }
    list.length = 0;
  }

  const entryOf = (layout: Plan['layout']): LayoutEntry => {
    let entry = layoutByObject.get(layout);
    if (entry) return entry;
    const key = [...layout].map(([d, a]) => `${d}:${a.join('+')}`).join(';');
    entry = layoutCache.get(key);
    if (!entry) {
      let c: CompiledLayout | string;
      try {
        const cl = compileLayout(layout, mesh);
        c = divisibilityProblem(graph, cl) ?? axisConflict(graph, mesh, cl) ?? cl;
      } catch (err) {
        if (!(err instanceof InputError)) throw err;
        c = err.message;
      }
      if (layoutCache.size > 4096) layoutCache.clear();
      entry = { c, walks: new Map() };
      layoutCache.set(key, entry);
    }
    layoutByObject.set(layout, entry);
    return entry;
  };

  return (plan) => {
    const entry = entryOf(plan.layout);
    const c = entry.c;
    if (typeof c === 'string') return INVALID(c);
    const split = c.split;
    const dataParallel = split.batch;
    const perReplica = graph.spec.batch / dataParallel;
    const M = plan.microbatches;
    if (perReplica % M !== 0) return INVALID(`${M} microbatches do not divide the per-replica batch of ${perReplica} sequences`);
    const stages = split.layers;
    const walkKey = M * 3 + (plan.recompute === 'none' ? 0 : plan.recompute === 'selective' ? 1 : 2);
    let w = entry.walks.get(walkKey);
    if (!w) {
      w = walk(c, plan.recompute, M);
      entry.walks.set(walkKey, w);
    }
    return finish(w, c, plan, stages, dataParallel);
  };

  /** Forward, recompute and backward of one layout at one (recompute, microbatches): ZeRO-free. */
  function walk(c: CompiledLayout, recompute: Plan['recompute'], M: number): Walk {
    const split = c.split, cm = c.mask;
    const perReplica = graph.spec.batch / split.batch;
    const mb = perReplica / M;
    const stages = split.layers;
    for (let d = 0; d < D; d++) {
      const name = DIM_NAMES[d];
      mask[d] = cm[name];
      L[d] = d === 0 ? mb : cg.sizes[d] / split[name];
    }
    for (let t = 0; t < nT; t++) {
      let n = 1;
      const dims = cg.tensorDims[t];
      for (let k = 0; k < dims.length; k++) n *= L[dims[k]];
      E[t] = n;
      Bt[t] = n * cg.tensorBytes[t];
      alias[t] = t;
    }
    for (const b of cg.blocks) for (const op of b.ops) if (op.kind === 'rename' && renameKind(op) === -1) alias[op.output] = op.inputs[0];

    compute = 0; backwardCompute = 0; blocking = 0; overlappable = 0; bytesPerDevice = 0; modelFlops = 0;
    layersMask = mask[DIM.layers];


    // Forward.
    let temporary = 0, recomputeBuffer = 0, shared = 0;
    epoch++;
    const sharedEpoch = epoch;
    for (let bi = 0; bi < cg.blocks.length; bi++) {
      const b = cg.blocks[bi];
      const count = (b.layered ? b.repeat / stages : 1) * M;
      for (const op of b.ops) {
        compute += forward(op, b.layered, count, true) * count;
        if (Bt[op.output] > temporary) temporary = Bt[op.output];
      }
      // Saved tensors (as lower.ts savedSet): canonical ids, those made here counted per block.
      epoch++;
      const pe = epoch;
      for (const op of b.ops) prodMark[canon(op.output)] = pe;
      for (const t of b.masksOf) prodMark[t] = pe;
      if (b.input >= 0) prodMark[canon(b.input)] = pe;
      const mode = b.layered ? recompute : 'none';
      epoch++;
      const se = epoch;
      let own = 0;
      const take = (t: number) => {
        const ct = canon(t);
        if (savedMark[ct] === se) return;
        savedMark[ct] = se;
        if (prodMark[ct] === pe) own += Bt[ct];
        else if (sharedMark[ct] !== sharedEpoch) { sharedMark[ct] = sharedEpoch; shared += Bt[ct]; }
      };
      if (b.layered && mode === 'full') take(b.input);
      else if (b.layered && mode === 'selective') {
        // As lower.ts visits them: a core op keeps its inputs made outside the core, others their saves.
        for (const op of b.ops) {
          if (op.core) {
            for (const i of op.inputs) if (b.coreInputs.includes(i)) take(i);
          } else {
            for (const s of op.saves) take(s);
          }
        }
      } else {
        for (const op of b.ops) for (const s of op.saves) take(s);
      }
      savedBlock[bi] = own;
      if (b.layered && recompute === 'full') {
        epoch++;
        const fe = epoch;
        let all = 0;
        for (const op of b.ops) for (const s of op.saves) { const ct = canon(s); if (savedMark[ct] !== fe) { savedMark[ct] = fe; all += Bt[ct]; } }
        if (all > recomputeBuffer) recomputeBuffer = all;
      }
    }

    // Backward, blocks in reverse, recompute first.
    weightPartial.fill(0);
    for (let bi = cg.blocks.length - 1; bi >= 0; bi--) {
      const b = cg.blocks[bi];
      const count = (b.layered ? b.repeat / stages : 1) * M;
      if (b.layered && recompute !== 'none') {
        for (const op of b.ops) {
          if (recompute === 'selective' && !op.core) continue;
          const t = forward(op, true, count, false) * count;
          compute += t;
          backwardCompute += t;
        }
      }
      for (let oi = b.ops.length - 1; oi >= 0; oi--) {
        const op = b.ops[oi];
        gradSum(canon(op.output), count);
        // The forward's own numbers (flops, bytes) without its collectives.
        let fwdFlops = 0, fwdBytes = 0, opMask = 0;
        if (op.kind === 'einsum') {
          fwdFlops = 2;
          for (const d of op.dims) { fwdFlops *= L[d]; opMask |= mask[d]; }
        } else {
          fwdBytes = Bt[op.output];
          for (const i of op.inputs) fwdBytes += Bt[i];
          if (op.kind === 'rename' && renameKind(op) === -1) fwdBytes = 0;
        }
        if (b.layered) opMask |= layersMask;
        for (const g of op.grads) {
          let partial = 0;
          let bytes = fwdBytes + Bt[op.output];
          let flops = fwdFlops;
          if (op.kind === 'rename') {
            const k = renameKind(op);
            if (k === -2) coll(K_ALLGATHER, mask[op.to] & ~mask[op.dim], Bt[g.wrt], count, false);
            else if (k === K_A2A) coll(K_A2A, renameMask, Bt[g.wrt], count, false);
            else if (k === -1) bytes = 0;
          } else if (g.identity) {
            bytes = 0;
            flops = 0;
          } else {
            for (const d of g.lacking) partial |= mask[d];
            if (op.kind === 'layernorm' && g.activation && mask[DIM.d_model]) coll(K_ALLREDUCE, mask[DIM.d_model], 8 * (E[g.wrt] / L[DIM.d_model]), count, false);
            if (op.kind === 'softmax' && mask[op.dim]) coll(K_ALLREDUCE, mask[op.dim], 4 * (E[g.wrt] / L[op.dim]), count, false);
          }
          if (g.weight) weightPartial[g.wrt] |= partial;
          else {
            const ct = canon(g.wrt);
            const list = pendMasks[ct];
            if (list.length === 0) pendList.push(ct);
            if (!list.includes(partial)) list.push(partial);
          }
          const t = (op.kind === 'einsum' ? ktime(0, flops) : ktime(op.klass, bytes)) * count;
          compute += t;
          backwardCompute += t;
          if (op.kind === 'einsum') modelFlops += flops * count * mSize[opMask];
        }
      }
      while (pendList.length) gradSum(pendList[0], count);
    }


    let act = 0;
    for (let bi = 0; bi < cg.blocks.length; bi++) act += savedBlock[bi] * (cg.blocks[bi].layered ? cg.blocks[bi].repeat / stages : 1);
    act += shared;
    const wp = new Int32Array(cg.weights.length);
    for (let i = 0; i < cg.weights.length; i++) wp[i] = weightPartial[cg.weights[i].t];
    const wE = new Float64Array(cg.weights.length);
    for (let i = 0; i < cg.weights.length; i++) wE[i] = E[cg.weights[i].t];
    const sendBytes = stages > 1 ? Bt[cg.layerInputOfFirstLayered] : 0;
    return { compute, backwardCompute, blocking, overlappable, bytesPerDevice, modelFlops, act, temporary: temporary + recomputeBuffer, wp, wE, sendBytes, M };
  }

  /** Add what ZeRO decides (gradient sync, optimizer, gathers, model-state memory) and the pipeline, and price. */
  function finish(w: Walk, c: CompiledLayout, plan: Plan, stages: number, N: number): PlanCost {
    compute = w.compute; backwardCompute = w.backwardCompute; blocking = w.blocking; overlappable = w.overlappable;
    bytesPerDevice = w.bytesPerDevice;
    const M = w.M;
    const Z = c.mask.batch;
    layersMask = c.mask.layers;
    let localParams = 0;
    layerParamsByBlock.fill(0);
    for (let i = 0; i < cg.weights.length; i++) {
      const wt = cg.weights[i];
      const b = cg.blocks[wt.block];
      const perStage = b.layered ? b.repeat / stages : 1;
      const n = w.wE[i];
      localParams += n * perStage;
      if (b.layered) layerParamsByBlock[wt.block] += n;
      const P = w.wp[i];
      const zeroMask = plan.zero > 0 ? Z & P : 0;
      const rest = P & ~zeroMask;
      const gradBytes = n * sb.grad;
      const syncCount = perStage * (plan.zero >= 2 && zeroMask ? M : 1);
      if (zeroMask) {
        coll(K_RS, zeroMask, gradBytes, syncCount, true);
        if (rest) coll(K_ALLREDUCE, rest, gradBytes / mSize[zeroMask], syncCount, true);
      } else if (P) {
        coll(K_ALLREDUCE, P, gradBytes, syncCount, true);
      }
      const shard = plan.zero >= 1 && Z ? n / N : n;
      compute += ktime(KLASS.elementwise, 2 * shard * (sb.param + sb.grad + sb.optimizer)) * perStage;
      if (plan.zero >= 1 && Z) {
        const paramBytes = n * sb.param;
        if (plan.zero <= 2) coll(K_ALLGATHER, Z, paramBytes, perStage, true);
        else coll(K_ALLGATHER, Z, paramBytes, 2 * perStage * M, true);
      }
    }
    let layerParamBytes = 0;
    for (let bi = 0; bi < cg.blocks.length; bi++) layerParamBytes = Math.max(layerParamBytes, layerParamsByBlock[bi] * sb.param);
    if (stages > 1) {
      sendColl(w.sendBytes, M);
      sendColl(w.sendBytes, M);
    }

    const inflight = stages > 1 ? Math.min(stages, M) : 1;
    const act = w.act * inflight;
    const zeroN = Z ? N : 1;
    const params = plan.zero >= 3 ? (localParams * sb.param) / zeroN : localParams * sb.param;
    const gradients = plan.zero >= 2 ? (localParams * sb.grad) / zeroN : localParams * sb.grad;
    const optimizer = plan.zero >= 1 ? (localParams * sb.optimizer) / zeroN : localParams * sb.optimizer;
    const temporary = w.temporary + (plan.zero >= 3 ? layerParamBytes : 0);
    const memory = params + gradients + optimizer + act + temporary;

    const exposed = blocking + Math.max(0, overlappable - profile.overlap * backwardCompute);
    const bubble = stages > 1 ? ((stages - 1) / M) * (compute + exposed) : 0;
    const step = compute + exposed + bubble;
    return {
      valid: true, problem: '', feasible: memory <= profile.memoryBytes, step, compute, communication: blocking + overlappable,
      exposed, bubble, memory, bytesPerDevice, mfu: w.modelFlops / (step * mesh.size * peak),
    };
  }
}
