import type { Activation, ModelSpec } from './spec.js';
import { DTYPE_BYTES, expertCapacity, moeOf } from './spec.js';

/**
 * Tensor dimension names, as Mesh-TF's Transformer names them. `q_group` (query heads per K/V
 * head) exists only in grouped-query models; the mixture-of-experts dimensions (Mesh-TF moe.py:
 * `experts`, `expert_hidden`, `expert_capacity`, `expert_unsplit`, and the expert side's `group`)
 * only in MoE models. They come last so that every other dimension keeps its bit in the search's masks.
 */
export const DIM_NAMES = [
  'batch', 'length', 'memory_length', 'd_model', 'heads', 'd_kv', 'd_ff', 'vocab', 'layers', 'q_group',
  'experts', 'expert_hidden', 'expert_capacity', 'expert_unsplit', 'group',
] as const;
export type DimName = (typeof DIM_NAMES)[number];
/** Each dimension's place in DIM_NAMES (the index typed arrays over dimensions use). */
export const DIM_INDEX = Object.freeze(Object.fromEntries(DIM_NAMES.map((d, i) => [d, i]))) as Readonly<Record<DimName, number>>;

/**
 * Dimensions no layout names. `expert_unsplit` is the router's view of `experts` and
 * `expert_capacity` a buffer's slots (both replicated, as in Mesh-TF moe.py); `group` is the
 * expert side's sequences, split over the batch axes that `experts` does not take (the lowering
 * derives it: see src/lower/lower.ts withGroup).
 */
export const NEVER_SPLIT: ReadonlySet<DimName> = new Set<DimName>(['expert_capacity', 'expert_unsplit', 'group']);

/** `routing`: a 0/1 dispatch tensor, stored in the activation dtype, through which no gradient flows. */
export type TensorRole = 'activation' | 'weight' | 'ids' | 'mask' | 'stat' | 'routing';

export interface TensorSpec {
  readonly id: string;
  readonly dims: readonly DimName[];
  readonly role: TensorRole;
  /** Bytes per element as stored (activations in the model dtype, masks 1, ids 4). */
  readonly bytes: number;
}

/**
 * Op kinds: one table that the lowering, the cost model and the runtime all register against.
 * Every op reads `inputs` and writes `output`; `dim` names the reduced or renamed dimension.
 */
export type OpKind =
  | 'einsum'      // output = Σ over dims missing from output of Π inputs
  | 'gather'      // output[b,l,d] = table[ids[b,l], d]            inputs: ids, table
  | 'add'         // output = a + b, b broadcast over dims it lacks inputs: a, b
  | 'layernorm'   // normalise over `dim`, times scale plus bias   inputs: x, scale, bias
  | 'softmax'     // softmax over `dim`                            inputs: x
  | 'causal'      // x + (-inf where memory position > position)   inputs: x
  | 'dropout'     // x × mask / keep                               inputs: x
  | 'act'         // relu or gelu                                  inputs: x
  | 'swiglu'      // silu(gate) × up                               inputs: gate, up
  | 'rotary'      // rotary position embedding over d_kv pairs     inputs: x
  | 'rename'      // same data, `dim` renamed to `to`              inputs: x
  | 'route'       // combine: top-k over `dim` with a capacity per expert  inputs: probs
                  //   dispatch: the 0/1 cast of combine                  inputs: combine
                  //   both [batch, length, expert_unsplit, expert_capacity]
  | 'regroup'     // token side [batch, expert_unsplit, ..] <-> expert side [experts, group, ..] (`dim` -> `to`)
  | 'xent';       // mean softmax cross-entropy over `dim`         inputs: logits, ids

/** What an op costs on hardware: priced with one efficiency per class. */
export type OpClass = 'matmul' | 'elementwise' | 'softmax' | 'reduction';

export const OP_CLASS: Record<OpKind, OpClass> = {
  einsum: 'matmul', gather: 'elementwise', add: 'elementwise', layernorm: 'reduction',
  softmax: 'softmax', causal: 'elementwise', dropout: 'elementwise', act: 'elementwise',
  swiglu: 'elementwise', rotary: 'elementwise', rename: 'elementwise', route: 'elementwise', regroup: 'elementwise',
  xent: 'reduction',
};

export interface OpSpec {
  readonly name: string;
  readonly kind: OpKind;
  readonly inputs: readonly string[];
  readonly output: string;
  /** layernorm/softmax/xent: the reduced dimension; rename: the old name. */
  readonly dim?: DimName;
  /** rename: the new name. */
  readonly to?: DimName;
  readonly activation?: Activation;
  /** Tensors the backward reads: kept between forward and backward unless recomputed. */
  readonly saves: readonly string[];
  /** Part of the attention core (QKᵀ → softmax → dropout → ×V): selective recompute redoes it. */
  readonly attentionCore?: boolean;
  /**
   * Set on the attention-core ops when the model runs them as one fused kernel (flash attention):
   * the lowering prices the group as one kernel; the runtime executes the ops as they are.
   */
  readonly fused?: 'attention';
  /**
   * A fused core op of causal attention: the kernel skips the key blocks wholly above the diagonal
   * (src/lower/lower.ts causalShare prices the share of blocks it runs); the runtime masks as it is.
   */
  readonly causalBlocks?: boolean;
  /** route: which of Mesh-TF's two routing tensors the op writes. */
  readonly route?: 'combine' | 'dispatch';
}

export type BlockName = 'embed' | 'encoder' | 'encoder_final' | 'decoder' | 'head';

export interface Block {
  readonly name: BlockName;
  /** How many times the block runs per (micro)batch: the layer count for layer blocks. */
  readonly repeat: number;
  /** A layer block: its weights carry the `layers` dimension and pipeline stages split it. */
  readonly layered: boolean;
  readonly ops: readonly OpSpec[];
  /** The block's input activation: all that full recompute keeps. */
  readonly input?: string;
}

export interface Graph {
  readonly spec: ModelSpec;
  /** Every dimension's size; a dimension no tensor carries (q_group in a multi-head model) is 1. */
  readonly dimSizes: Readonly<Record<DimName, number>>;
  readonly tensors: ReadonlyMap<string, TensorSpec>;
  readonly blocks: readonly Block[];
  /** Weight tensor ids, each once (a tied embedding is one weight). */
  readonly weights: readonly string[];
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/** Build the training graph of a Transformer as named-dimension ops (one layer per layer block). */
export function buildGraph(spec: ModelSpec): Graph {
  const act = DTYPE_BYTES[spec.dtype];
  const tensors = new Map<string, TensorSpec>();
  const t = (id: string, dims: DimName[], role: TensorRole = 'activation'): string => {
    const bytes = role === 'mask' ? 1 : role === 'ids' ? 4 : role === 'stat' ? 4 : act; // routing: the activation dtype
    const prev = tensors.get(id);
    if (prev && prev.dims.join() !== dims.join()) throw new Error(`tensor ${id} declared twice with other dims`);
    tensors.set(id, { id, dims, role, bytes });
    return id;
  };
  const w = (id: string, dims: DimName[]) => t(id, dims, 'weight');
  const B: DimName[] = ['batch', 'length', 'd_model'];

  const dropoutOps = (prefix: string, x: string, dims: DimName[]): { ops: OpSpec[]; out: string } => {
    if (!spec.dropout) return { ops: [], out: x };
    const out = t(`${prefix}.drop`, dims);
    t(`${prefix}.mask`, dims, 'mask');
    return { ops: [{ name: `${prefix}.dropout`, kind: 'dropout', inputs: [x], output: out, saves: [`${prefix}.mask`] }], out };
  };

  const layerNorm = (prefix: string, x: string): { ops: OpSpec[]; out: string } => {
    const scale = w(`${prefix}.scale`, ['d_model']);
    const bias = w(`${prefix}.bias`, ['d_model']);
    const out = t(`${prefix}.out`, B);
    return { ops: [{ name: prefix, kind: 'layernorm', inputs: [x, scale, bias], output: out, dim: 'd_model', saves: [x] }], out };
  };

  // Grouped-query attention the Mesh-TF way: `heads` is the K/V head dimension and `q_group`
  // (query heads per K/V head) appears only on the query side; multi-head models have no q_group.
  const G: DimName[] = spec.kvHeads < spec.heads ? ['q_group'] : [];
  const fusedCore = spec.flashAttention ? { fused: 'attention' as const } : {};

  /** Multi-head (or grouped-query) attention from x (queries) and mem (keys/values, before rename). */
  const attention = (p: string, x: string, mem: string, causal: boolean): { ops: OpSpec[]; out: string } => {
    const ops: OpSpec[] = [];
    const HD: DimName[] = ['d_model', 'heads', 'd_kv'];
    const QH: DimName[] = ['heads', ...G];
    const wq = w(`${p}.wq`, ['d_model', ...QH, 'd_kv']), wk = w(`${p}.wk`, HD), wv = w(`${p}.wv`, HD);
    const wo = w(`${p}.wo`, [...QH, 'd_kv', 'd_model']);
    // K and V are projected where their positions are, then renamed to memory_length: with length
    // split (context parallelism) the rename gathers K and V, as Megatron-LM, Llama 3 (Sec. 3.3.2) and
    // MaxText do, not the wider input, and each device projects only its own positions.
    const Q: DimName[] = ['batch', 'length', ...QH, 'd_kv'];
    const KL: DimName[] = ['batch', 'length', 'heads', 'd_kv'];
    let q = t(`${p}.q`, Q);
    let kl = t(`${p}.k_local`, KL);
    const vl = t(`${p}.v_local`, KL);
    ops.push({ name: `${p}.q`, kind: 'einsum', inputs: [x, wq], output: q, saves: [x] });
    ops.push({ name: `${p}.k`, kind: 'einsum', inputs: [mem, wk], output: kl, saves: [mem] });
    ops.push({ name: `${p}.v`, kind: 'einsum', inputs: [mem, wv], output: vl, saves: [mem] });
    if (spec.positions === 'rotary' && causal) {
      const qr = t(`${p}.q_rot`, Q);
      const kr = t(`${p}.k_rot`, KL);
      ops.push({ name: `${p}.q_rot`, kind: 'rotary', inputs: [q], output: qr, saves: [] });
      ops.push({ name: `${p}.k_rot`, kind: 'rotary', inputs: [kl], output: kr, saves: [] });
      q = qr;
      kl = kr;
    }
    const k = t(`${p}.k`, ['batch', 'memory_length', 'heads', 'd_kv']);
    const v = t(`${p}.v`, ['batch', 'memory_length', 'heads', 'd_kv']);
    ops.push({ name: `${p}.k_rename`, kind: 'rename', inputs: [kl], output: k, dim: 'length', to: 'memory_length', saves: [] });
    ops.push({ name: `${p}.v_rename`, kind: 'rename', inputs: [vl], output: v, dim: 'length', to: 'memory_length', saves: [] });
    const S: DimName[] = ['batch', ...QH, 'length', 'memory_length'];
    const core = { attentionCore: true, ...fusedCore, ...(spec.flashAttention && causal ? { causalBlocks: true } : {}) } as const;
    const logits = t(`${p}.logits`, S);
    ops.push({ name: `${p}.qk`, kind: 'einsum', inputs: [q, k], output: logits, saves: [q, k], ...core });
    let sm = logits;
    if (causal) {
      const masked = t(`${p}.masked`, S);
      ops.push({ name: `${p}.causal`, kind: 'causal', inputs: [logits], output: masked, saves: [], ...core });
      sm = masked;
    }
    const probs = t(`${p}.probs`, S);
    ops.push({ name: `${p}.softmax`, kind: 'softmax', inputs: [sm], output: probs, dim: 'memory_length', saves: [probs], ...core });
    const d = dropoutOps(`${p}.probs`, probs, S);
    for (const op of d.ops) ops.push({ ...op, ...core });
    const o = t(`${p}.o`, Q);
    ops.push({ name: `${p}.av`, kind: 'einsum', inputs: [d.out, v], output: o, saves: [d.out, v], ...core });
    const y = t(`${p}.y`, B);
    ops.push({ name: `${p}.o`, kind: 'einsum', inputs: [o, wo], output: y, saves: [o] });
    const yd = dropoutOps(`${p}.y`, y, B);
    ops.push(...yd.ops);
    return { ops, out: yd.out };
  };

  /**
   * An FFN's first half, shared by the dense and the expert FFN: x·w1, and for SwiGLU x·w3 gating
   * it, else the activation of x·w1; `shape` is the hidden tensors' dims. Returns the activated tensor.
   */
  const activated = (ops: OpSpec[], p: string, x: string, w1: string, w3Dims: DimName[], shape: DimName[]): string => {
    const h = t(`${p}.h`, shape);
    ops.push({ name: `${p}.w1`, kind: 'einsum', inputs: [x, w1], output: h, saves: [x] });
    const a = t(`${p}.a`, shape);
    if (spec.activation === 'swiglu') {
      const w3 = w(`${p}.w3`, w3Dims);
      const g = t(`${p}.g`, shape);
      ops.push({ name: `${p}.w3`, kind: 'einsum', inputs: [x, w3], output: g, saves: [x] });
      ops.push({ name: `${p}.swiglu`, kind: 'swiglu', inputs: [g, h], output: a, saves: [g, h] });
    } else {
      ops.push({ name: `${p}.act`, kind: 'act', inputs: [h], output: a, activation: spec.activation, saves: [h] });
    }
    return a;
  };

  const ffn = (p: string, x: string, hidden: DimName = 'd_ff'): { ops: OpSpec[]; out: string } => {
    const ops: OpSpec[] = [];
    const F: DimName[] = ['batch', 'length', hidden];
    const w1 = w(`${p}.w1`, ['d_model', hidden]), w2 = w(`${p}.w2`, [hidden, 'd_model']);
    const a = activated(ops, p, x, w1, ['d_model', hidden], F);
    const y = t(`${p}.y`, B);
    ops.push({ name: `${p}.w2`, kind: 'einsum', inputs: [a, w2], output: y, saves: [a] });
    const yd = dropoutOps(`${p}.y`, y, B);
    ops.push(...yd.ops);
    return { ops, out: yd.out };
  };

  const moe = moeOf(spec);

  /**
   * A mixture-of-experts FFN as Mesh-TF moe.py (transformer_moe_layer_v1) writes it: a router
   * einsum over the experts, top-k routing with a capacity into combine and dispatch tensors, the
   * dispatch einsum, a regroup from the token side to the expert side (the all-to-all when
   * `experts` shares the batch axes), the experts' FFN, the regroup back and the combine einsum;
   * shared experts run as dense FFNs beside it (Dai et al. 2024).
   */
  const moeFfn = (p: string, x: string): { ops: OpSpec[]; out: string } => {
    const ops: OpSpec[] = [];
    const R: DimName[] = ['batch', 'length', 'expert_unsplit'];
    const C: DimName[] = ['batch', 'length', 'expert_unsplit', 'expert_capacity'];
    const TOK: DimName[] = ['batch', 'expert_unsplit', 'expert_capacity', 'd_model'];
    const EXP: DimName[] = ['experts', 'group', 'expert_capacity', 'd_model'];
    const H: DimName[] = ['experts', 'group', 'expert_capacity', 'expert_hidden'];
    const wg = w(`${p}.router`, ['d_model', 'expert_unsplit']);
    const logits = t(`${p}.logits`, R);
    ops.push({ name: `${p}.router`, kind: 'einsum', inputs: [x, wg], output: logits, saves: [x] });
    const probs = t(`${p}.probs`, R);
    ops.push({ name: `${p}.softmax`, kind: 'softmax', inputs: [logits], output: probs, dim: 'expert_unsplit', saves: [probs] });
    // Mesh-TF moe.py order: the combine tensor (each kept choice's gate at its slot) first, the
    // dispatch tensor cast from it (nonzero -> 1), so that only the combine op numbers the slots.
    const combine = t(`${p}.combine`, C);
    ops.push({ name: `${p}.combine_weights`, kind: 'route', inputs: [probs], output: combine, dim: 'expert_unsplit', route: 'combine', saves: [probs] });
    const dispatch = t(`${p}.dispatch`, C, 'routing');
    ops.push({ name: `${p}.dispatch_mask`, kind: 'route', inputs: [combine], output: dispatch, dim: 'expert_unsplit', route: 'dispatch', saves: [] });
    const inTok = t(`${p}.in_tokens`, TOK);
    ops.push({ name: `${p}.dispatch`, kind: 'einsum', inputs: [x, dispatch], output: inTok, saves: [dispatch] });
    const inExp = t(`${p}.in_experts`, EXP);
    ops.push({ name: `${p}.to_experts`, kind: 'regroup', inputs: [inTok], output: inExp, dim: 'expert_unsplit', to: 'experts', saves: [] });
    const w1 = w(`${p}.w1`, ['experts', 'd_model', 'expert_hidden']), w2 = w(`${p}.w2`, ['experts', 'expert_hidden', 'd_model']);
    const a = activated(ops, p, inExp, w1, ['experts', 'd_model', 'expert_hidden'], H);
    const outExp = t(`${p}.out_experts`, EXP);
    ops.push({ name: `${p}.w2`, kind: 'einsum', inputs: [a, w2], output: outExp, saves: [a] });
    const outTok = t(`${p}.out_tokens`, TOK);
    ops.push({ name: `${p}.to_tokens`, kind: 'regroup', inputs: [outExp], output: outTok, dim: 'experts', to: 'expert_unsplit', saves: [] });
    let y = t(`${p}.routed`, B);
    ops.push({ name: `${p}.combine`, kind: 'einsum', inputs: [outTok, combine], output: y, saves: [outTok, combine] });
    for (let i = 0; i < moe!.sharedExperts; i++) {
      const f = ffn(`${p}.shared${i}`, x, 'expert_hidden');
      const sum = t(`${p}.with_shared${i}`, B);
      ops.push(...f.ops, { name: `${p}.add_shared${i}`, kind: 'add', inputs: [y, f.out], output: sum, saves: [] });
      y = sum;
    }
    const yd = dropoutOps(`${p}.y`, y, B);
    ops.push(...yd.ops);
    return { ops, out: yd.out };
  };

  const residual = (name: string, a: string, b: string, out: string): OpSpec =>
    ({ name, kind: 'add', inputs: [a, b], output: t(out, B), saves: [] });

  /**
   * A pre-norm layer: x + attn(ln(x)) [+ cross(ln(.), enc)] + ffn(ln(.)). With MoE every n-th
   * layer, one block holds n layers (n − 1 dense, then the MoE one) and loops layers/n times.
   */
  const layer = (p: 'encoder' | 'decoder', cross: boolean): Block => {
    const ops: OpSpec[] = [];
    const x = t(`${p}.x`, B);
    const n = moe ? moe.moeEvery : 1;
    let input = x;
    for (let i = 0; i < n; i++) {
      // Sub-layers of a block of several are named p.0, p.1, ...; the last writes the loop's p.x.
      const q = n === 1 ? p : `${p}.${i}`;
      const ln1 = layerNorm(`${q}.ln1`, input);
      const att = attention(`${q}.self`, ln1.out, ln1.out, p === 'decoder');
      ops.push(...ln1.ops, ...att.ops, residual(`${q}.res1`, input, att.out, `${q}.x1`));
      let cur = `${q}.x1`;
      if (cross) {
        const lnc = layerNorm(`${q}.lnc`, cur);
        const ca = attention(`${q}.cross`, lnc.out, 'encoder.out', false);
        ops.push(...lnc.ops, ...ca.ops, residual(`${q}.resc`, cur, ca.out, `${q}.xc`));
        cur = `${q}.xc`;
      }
      const ln2 = layerNorm(`${q}.ln2`, cur);
      const f = moe && i === n - 1 ? moeFfn(`${q}.moe`, ln2.out) : ffn(`${q}.ffn`, ln2.out);
      const next = i === n - 1 ? `${p}.x` : `${q}.out`;
      ops.push(...ln2.ops, ...f.ops, residual(`${q}.res2`, cur, f.out, next));
      input = next;
    }
    // The block's output is the next block's input `${p}.x`: the block is one step of a loop.
    const repeat = (p === 'encoder' ? spec.encoderLayers : spec.decoderLayers) / n;
    return { name: p, repeat, layered: true, ops, input: x };
  };

  /** Token (and position) embedding, writing the layer loop's input `${p}.x`. */
  const embed = (p: 'encoder' | 'decoder'): OpSpec[] => {
    const ops: OpSpec[] = [];
    const ids = t(`${p}.ids`, ['batch', 'length'], 'ids');
    const table = w('embedding', ['vocab', 'd_model']);
    const learned = spec.positions === 'learned';
    const last = (id: string, isLast: boolean) => (isLast ? t(`${p}.x`, B) : t(id, B));
    const e = last(`${p}.emb`, !learned && !spec.dropout);
    ops.push({ name: `${p}.embed`, kind: 'gather', inputs: [ids, table], output: e, saves: [ids] });
    let cur = e;
    if (learned) {
      const pos = w('positions', ['length', 'd_model']);
      const ep = last(`${p}.emb_pos`, !spec.dropout);
      ops.push({ name: `${p}.positions`, kind: 'add', inputs: [e, pos], output: ep, saves: [] });
      cur = ep;
    }
    if (spec.dropout) {
      t(`${p}.emb.mask`, B, 'mask');
      ops.push({ name: `${p}.emb.dropout`, kind: 'dropout', inputs: [cur], output: t(`${p}.x`, B), saves: [`${p}.emb.mask`] });
    }
    return ops;
  };

  const blocks: Block[] = [];
  const embedOps: OpSpec[] = [];
  if (spec.kind === 'encoder-decoder') embedOps.push(...embed('encoder'));
  embedOps.push(...embed('decoder'));
  blocks.push({ name: 'embed', repeat: 1, layered: false, ops: embedOps });
  if (spec.kind === 'encoder-decoder') {
    blocks.push(layer('encoder', false));
    const scale = w('encoder.lnf.scale', ['d_model']);
    const bias = w('encoder.lnf.bias', ['d_model']);
    const out = t('encoder.out', B);
    blocks.push({
      name: 'encoder_final', repeat: 1, layered: false,
      ops: [{ name: 'encoder.lnf', kind: 'layernorm', inputs: ['encoder.x', scale, bias], output: out, dim: 'd_model', saves: ['encoder.x'] }],
    });
  }
  blocks.push(layer('decoder', spec.kind === 'encoder-decoder'));

  const headOps: OpSpec[] = [];
  const lnf = layerNorm('decoder.lnf', 'decoder.x');
  headOps.push(...lnf.ops);
  const softmaxW = spec.tiedEmbeddings ? 'embedding' : w('softmax', ['vocab', 'd_model']);
  const logits = t('logits', ['batch', 'length', 'vocab']);
  headOps.push({ name: 'logits', kind: 'einsum', inputs: [lnf.out, softmaxW], output: logits, saves: [lnf.out] });
  const targets = t('targets', ['batch', 'length'], 'ids');
  const loss = t('loss', [], 'stat');
  headOps.push({ name: 'xent', kind: 'xent', inputs: [logits, targets], output: loss, dim: 'vocab', saves: [logits, targets] });
  blocks.push({ name: 'head', repeat: 1, layered: false, ops: headOps });

  const weights = [...tensors.values()].filter((x) => x.role === 'weight').map((x) => x.id);
  // A pipeline stage holds whole blocks: with MoE every n-th layer, n layers at a time.
  const perBlock = moe ? moe.moeEvery : 1;
  const layersDim = spec.kind === 'decoder' ? spec.decoderLayers / perBlock : gcd(spec.encoderLayers, spec.decoderLayers) / perBlock;
  const dimSizes: Record<DimName, number> = {
    batch: spec.batch, length: spec.seqLen, memory_length: spec.seqLen, d_model: spec.dModel,
    heads: spec.kvHeads, d_kv: spec.dKv, d_ff: spec.dFf, vocab: spec.vocab, layers: layersDim,
    q_group: spec.heads / spec.kvHeads,
    experts: moe ? moe.experts : 1, expert_hidden: moe ? moe.dFfExpert : 1,
    expert_capacity: moe ? expertCapacity(moe, spec.seqLen) : 1, expert_unsplit: moe ? moe.experts : 1,
    group: moe ? spec.batch : 1,
  };
  return { spec, dimSizes, tensors, blocks, weights };
}

/** Which block owns a weight (layer weights are repeated per layer). */
export function weightBlock(graph: Graph, weight: string): Block {
  for (const b of graph.blocks) for (const op of b.ops) if (op.inputs.includes(weight)) return b;
  throw new Error(`weight ${weight} is read by no op`);
}

const paramCounts = new WeakMap<Graph, number>();

/** Exact parameter count: layer weights × their layer count, shared weights once (once per graph: every estimate reports it). */
export function paramCount(graph: Graph): number {
  let n = paramCounts.get(graph);
  if (n === undefined) paramCounts.set(graph, (n = countParams(graph, 1)));
  return n;
}

/**
 * Parameters one token runs through: the routed experts' weights count topK/experts of their size
 * (every other weight, shared experts included, in full). Equal to paramCount for a dense model.
 */
export function activeParamCount(graph: Graph): number {
  const m = moeOf(graph.spec);
  return countParams(graph, m ? m.topK / m.experts : 1);
}

function countParams(graph: Graph, expertShare: number): number {
  let n = 0;
  for (const id of graph.weights) {
    const spec = graph.tensors.get(id)!;
    let size = 1;
    for (const d of spec.dims) size *= graph.dimSizes[d];
    n += size * weightBlock(graph, id).repeat * (spec.dims.includes('experts') ? expertShare : 1);
  }
  return n;
}

/** A projection: an einsum with a weight operand (not the attention core's, which has none). Recompute minimal keeps its output. */
export function isProjection(graph: Graph, op: OpSpec): boolean {
  return op.kind === 'einsum' && op.inputs.some((id) => graph.tensors.get(id)!.role === 'weight');
}

const minimalCache = new WeakMap<Block, { keep: ReadonlySet<string>; rerun: ReadonlySet<OpSpec> }>();
const neededCache = new WeakMap<Block, ReadonlySet<OpSpec>>();

/**
 * The forward ops a layer's backward needs run again to rebuild what it reads (the ops' `saves`),
 * from the layer input: walking back from each saved tensor to its producer, and on through that
 * op's inputs, unless `stop` keeps the tensor instead. `keep`: the tensors `stop` kept.
 */
function rerunClosure(graph: Graph, block: Block, stop: (op: OpSpec) => boolean): { keep: Set<string>; rerun: Set<OpSpec> } {
  const producer = new Map(block.ops.map((o) => [o.output, o]));
  // A dropout mask is made again by running its op again, which reads the op's input.
  for (const o of block.ops) for (const id of o.saves) if (graph.tensors.get(id)!.role === 'mask' && !producer.has(id)) producer.set(id, o);
  const keep = new Set<string>();
  const rerun = new Set<OpSpec>();
  const work = block.ops.flatMap((o) => o.saves);
  while (work.length > 0) {
    const id = work.pop()!;
    const op = producer.get(id);
    // The layer input, weights, masks and what other blocks made are kept as in every mode.
    if (!op || id === block.input) continue;
    if (stop(op)) keep.add(id);
    else if (!rerun.has(op)) {
      rerun.add(op);
      for (const x of op.inputs) if (graph.tensors.get(x)!.role !== 'weight') work.push(x);
    }
  }
  return { keep, rerun };
}

/**
 * Recompute minimal on a layer (JAX's checkpoint_dots_with_no_batch_dims, as MaxText and t5x run
 * it): of what the backward reads (the ops' `saves`), keep the projections' outputs and rebuild the
 * rest from them and the layer input, as JAX's remat saves only the residuals the backward needs
 * and reruns only the forward ops that rebuild them. `keep`: the projection outputs kept (the MLP's
 * output projection, which feeds only the residual sum, is not); `rerun`: the ops run again.
 */
export function minimalRecompute(graph: Graph, block: Block): { keep: ReadonlySet<string>; rerun: ReadonlySet<OpSpec> } {
  const hit = minimalCache.get(block);
  if (hit) return hit;
  const out = rerunClosure(graph, block, (op) => isProjection(graph, op));
  minimalCache.set(block, out);
  return out;
}

/**
 * Full recompute as a compiler that drops dead code runs it (XLA, under JAX's remat and TF's
 * recompute_grad): only the layer's forward ops whose outputs the backward reads, or that rebuild
 * those, run again, from the layer input alone. The MLP's output projection (with its partial-sum
 * reduction) feeds only the residual sum, which the backward never reads, so it is not rerun;
 * PyTorch's checkpoint and Megatron-LM's full granularity run the whole layer again.
 */
export function neededRecompute(graph: Graph, block: Block): ReadonlySet<OpSpec> {
  let hit = neededCache.get(block);
  if (!hit) neededCache.set(block, (hit = rerunClosure(graph, block, () => false).rerun));
  return hit;
}
