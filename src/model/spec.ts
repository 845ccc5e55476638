import { InputError, check } from '../errors.js';

export type ModelKind = 'decoder' | 'encoder-decoder';
export type Activation = 'relu' | 'gelu' | 'swiglu';
export type Dtype = 'bfloat16' | 'float16' | 'float32';
export type Positions = 'learned' | 'rotary';

/** A Transformer, as DESIGN.md's JSON model spec (camelCase). */
export interface ModelSpec {
  readonly name: string;
  readonly kind: ModelKind;
  /** Decoder-only: the layer count. Encoder-decoder: encoderLayers and decoderLayers. */
  readonly encoderLayers: number;
  readonly decoderLayers: number;
  readonly dModel: number;
  readonly heads: number;
  readonly dKv: number;
  readonly dFf: number;
  readonly vocab: number;
  readonly seqLen: number;
  /** Global batch, in sequences. */
  readonly batch: number;
  readonly dtype: Dtype;
  readonly dropout: boolean;
  readonly tiedEmbeddings: boolean;
  readonly activation: Activation;
  /** Learned position embeddings add a [length, d_model] weight; rotary adds none. */
  readonly positions: Positions;
  /**
   * Key/value heads (grouped-query attention, Ainslie et al. 2023): heads / kvHeads query heads
   * share each K/V head. Equal to heads for multi-head attention (the default).
   */
  readonly kvHeads: number;
  /** The attention core runs as one fused kernel (FlashAttention, Dao et al. 2022): same maths. */
  readonly flashAttention: boolean;
  /**
   * Mixture of experts (Mesh-TF moe.py; Shazeer et al. 2017, Lepikhin et al. 2020): set only on
   * MoE models, so that a dense spec reads and writes as before. `experts` routed experts of hidden
   * size `dFfExpert` replace the FFN of every `moeEvery`-th layer; each token goes to `topK` of
   * them, each expert takes at most expertCapacity() tokens of a sequence; `sharedExperts` FFNs of
   * the same size run on every token (Dai et al. 2024, DeepSeekMoE).
   */
  readonly experts?: number;
  readonly topK?: number;
  readonly capacityFactor?: number;
  readonly moeEvery?: number;
  readonly sharedExperts?: number;
  readonly dFfExpert?: number;
}

/** The MoE fields of a spec, all present, or null for a dense model. */
export interface MoeFields {
  readonly experts: number;
  readonly topK: number;
  readonly capacityFactor: number;
  readonly moeEvery: number;
  readonly sharedExperts: number;
  readonly dFfExpert: number;
}

export function moeOf(spec: ModelSpec): MoeFields | null {
  if (!spec.experts) return null;
  return {
    experts: spec.experts, topK: spec.topK!, capacityFactor: spec.capacityFactor!, moeEvery: spec.moeEvery!,
    sharedExperts: spec.sharedExperts!, dFfExpert: spec.dFfExpert!,
  };
}

/**
 * Slots per expert per sequence: topK × capacityFactor × tokens / experts, rounded up, at most the
 * sequence (Fedus et al. 2022, Switch, eq. 3 for top-1; GShard's 2N/E for top-2, Lepikhin et al. 2020).
 */
export function expertCapacity(m: MoeFields, seqLen: number): number {
  return Math.min(seqLen, Math.ceil((m.topK * m.capacityFactor * seqLen) / m.experts - 1e-9));
}

export const DTYPE_BYTES: Record<Dtype, number> = { bfloat16: 2, float16: 2, float32: 4 };

export const DTYPES: readonly Dtype[] = ['bfloat16', 'float16', 'float32'];

/** The short spellings users write (PyTorch, DeepSpeed, Megatron flags), read as the long names. */
export const DTYPE_ALIASES: Readonly<Record<string, Dtype>> = { bf16: 'bfloat16', fp16: 'float16', fp32: 'float32' };

/** A dtype as written by a user (`bf16` or `bfloat16`, ...), or null when it names none. */
export function normalizeDtype(v: unknown): Dtype | null {
  if (typeof v !== 'string') return null;
  if ((DTYPES as readonly string[]).includes(v)) return v as Dtype;
  return DTYPE_ALIASES[v] ?? null;
}

/** Read a dtype from a flag or a file; one line naming every accepted spelling when it is none. */
export function parseDtype(v: unknown, where = 'dtype'): Dtype {
  const d = normalizeDtype(v);
  check(d !== null, `${where}: must be one of ${[...DTYPES, ...Object.keys(DTYPE_ALIASES)].join(', ')}, got ${JSON.stringify(v)}`);
  return d as Dtype;
}

const KNOWN = new Set([
  'name', 'kind', 'layers', 'encoderLayers', 'decoderLayers', 'dModel', 'heads', 'dKv', 'dFf',
  'vocab', 'seqLen', 'batch', 'dtype', 'dropout', 'tiedEmbeddings', 'activation', 'positions', 'source',
  'kvHeads', 'flashAttention', 'experts', 'topK', 'capacityFactor', 'moeEvery', 'sharedExperts', 'dFfExpert',
]);

const MOE_FIELDS = ['topK', 'capacityFactor', 'moeEvery', 'sharedExperts', 'dFfExpert'] as const;

/** The MoE fields of a raw spec, validated; {} for a dense model (which must name none of them). */
function parseMoe(o: Record<string, unknown>, where: string, layers: readonly number[], dFf: number): Partial<MoeFields> {
  if (o.experts === undefined || o.experts === 0) {
    for (const k of MOE_FIELDS) check(o[k] === undefined, `${where}: "${k}" is a mixture-of-experts field; set "experts" too`);
    return {};
  }
  const experts = int(o, 'experts', where, 2);
  const topK = o.topK === undefined ? 2 : int(o, 'topK', where);
  check(topK <= experts, `${where}: "topK" (${topK}) must be at most "experts" (${experts})`);
  const cf = o.capacityFactor ?? 1.25; // Mesh-TF's moe_capacity_factor_train default (moe.py)
  check(typeof cf === 'number' && Number.isFinite(cf) && cf > 0 && cf <= 64,
    `${where}: "capacityFactor" must be a number in (0, 64], got ${JSON.stringify(o.capacityFactor)}`);
  const moeEvery = o.moeEvery === undefined ? 1 : int(o, 'moeEvery', where);
  for (const n of layers) {
    check(n % moeEvery === 0, `${where}: "moeEvery" (${moeEvery}) must divide the layer count (${n})`);
  }
  const sharedExperts = o.sharedExperts === undefined ? 0 : int(o, 'sharedExperts', where, 0);
  check(sharedExperts <= 64, `${where}: "sharedExperts" must be at most 64, got ${sharedExperts}`);
  const dFfExpert = o.dFfExpert === undefined ? dFf : int(o, 'dFfExpert', where);
  check(experts <= 1 << 16 && dFfExpert <= 1 << 30, `${where}: "experts" or "dFfExpert" is too large for mesh-search to price`);
  return { experts, topK, capacityFactor: cf as number, moeEvery, sharedExperts, dFfExpert };
}

function int(o: Record<string, unknown>, key: string, where: string, min = 1): number {
  const v = o[key];
  check(typeof v === 'number' && Number.isSafeInteger(v) && v >= min,
    `${where}: "${key}" must be an integer >= ${min}, got ${JSON.stringify(v)}`);
  return v as number;
}

function oneOf<T extends string>(o: Record<string, unknown>, key: string, options: readonly T[], dflt: T, where: string): T {
  const v = o[key] ?? dflt;
  check(typeof v === 'string' && (options as readonly string[]).includes(v),
    `${where}: "${key}" must be one of ${options.join(', ')}, got ${JSON.stringify(v)}`);
  return v as T;
}

function bool(o: Record<string, unknown>, key: string, dflt: boolean, where: string): boolean {
  const v = o[key] ?? dflt;
  check(typeof v === 'boolean', `${where}: "${key}" must be true or false, got ${JSON.stringify(v)}`);
  return v as boolean;
}

/** Validate an untrusted JSON value as a model spec; every failure names the field. */
export function parseModelSpec(value: unknown, where = 'model spec'): ModelSpec {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InputError(`${where}: expected a JSON object with dModel, heads, ...`);
  }
  const o = value as Record<string, unknown>;
  for (const k of Object.keys(o)) check(KNOWN.has(k), `${where}: unknown field "${k}"`);
  const name = o.name ?? 'custom';
  check(typeof name === 'string' && name.length > 0 && name.length <= 100, `${where}: "name" must be a non-empty string`);
  const kind = oneOf(o, 'kind', ['decoder', 'encoder-decoder'] as const, 'decoder', where);
  let encoderLayers = 0;
  let decoderLayers: number;
  if (kind === 'decoder') {
    // 0 is what a parsed spec says of itself, so that a written spec reads back.
    check(o.encoderLayers === undefined || o.encoderLayers === 0, `${where}: a decoder has no "encoderLayers"; use "layers"`);
    decoderLayers = o.layers !== undefined ? int(o, 'layers', where) : int(o, 'decoderLayers', where);
  } else {
    if (o.layers !== undefined) {
      encoderLayers = decoderLayers = int(o, 'layers', where);
    } else {
      encoderLayers = int(o, 'encoderLayers', where);
      decoderLayers = int(o, 'decoderLayers', where);
    }
  }
  const dModel = int(o, 'dModel', where);
  const heads = int(o, 'heads', where);
  const kvHeads = o.kvHeads === undefined ? heads : int(o, 'kvHeads', where);
  check(heads % kvHeads === 0, `${where}: "kvHeads" (${kvHeads}) must divide "heads" (${heads})`);
  const spec: ModelSpec = {
    name: name as string,
    kind,
    encoderLayers,
    decoderLayers,
    dModel,
    heads,
    dKv: int(o, 'dKv', where),
    dFf: int(o, 'dFf', where),
    vocab: int(o, 'vocab', where, 2),
    seqLen: int(o, 'seqLen', where),
    batch: int(o, 'batch', where),
    dtype: parseDtype(o.dtype ?? 'bfloat16', `${where}: "dtype"`),
    dropout: bool(o, 'dropout', true, where),
    tiedEmbeddings: bool(o, 'tiedEmbeddings', false, where),
    activation: oneOf(o, 'activation', ['relu', 'gelu', 'swiglu'] as const, 'relu', where),
    positions: oneOf(o, 'positions', ['learned', 'rotary'] as const, 'learned', where),
    kvHeads,
    flashAttention: bool(o, 'flashAttention', false, where),
    ...parseMoe(o, where, kind === 'decoder' ? [decoderLayers] : [encoderLayers, decoderLayers], o.dFf as number),
  };
  const big = [spec.dModel, spec.heads, spec.dKv, spec.dFf, spec.vocab, spec.seqLen, spec.batch];
  check(big.every((n) => n <= 1 << 30), `${where}: a size above 2^30 is not a model mesh-search can price`);
  check(spec.encoderLayers + spec.decoderLayers <= 100_000, `${where}: too many layers`);
  check(!(spec.positions === 'rotary' && spec.dKv % 2 !== 0), `${where}: rotary positions need an even dKv, got ${spec.dKv}`);
  return Object.freeze(spec);
}

export function totalLayers(spec: ModelSpec): number {
  return spec.encoderLayers + spec.decoderLayers;
}
