import type { HardwareProfile } from './profile.js';
import { profileError } from './profile.js';
import type { Torus } from './torus.js';

const GiB = 2 ** 30;
const GB = 1e9;
const T = 1e12;

// Efficiencies below are per kernel, not end to end: a large bf16 GEMM reaches 0.8-0.95 of peak
// on A100/H100 (cuBLAS), and the GEMM shape curve (gemmHalfSize) takes small and skinny GEMMs
// below that; memory-bound kernels reach 0.7-0.8 of HBM bandwidth. Starting points that
// `mesh-search calibrate` replaces (the fitted presets and their rows: data/published/).
const DEFAULT_EFFICIENCY = { matmul: 0.85, elementwise: 0.7, softmax: 0.5, reduction: 0.5 };
const EFF_SOURCE = 'starting point: large bf16 GEMMs reach 0.8-0.95 of peak on A100/H100, HBM-bound kernels about 0.7 of bandwidth; calibrate to replace';
// The GEMM shape curve x/(x+h) per dimension, h = 64: 0.67 at a dimension of 128, 0.94 at 1024 (tensor-core tiles are 64-256 wide: NVIDIA's Matrix
// Multiplication Background guide, "Dimension quantization effects").
const GEMM_HALF = 64;
/** NVLink 4 (H100, H200): line rate each way and what an NCCL ring achieves of it. */
const NVLINK4 = { nvlink: 450 * GB, nvlinkEff: 0.82, nvlinkEffSource: 'NCCL ring on NVLink 4: about 370 GB/s of the 450 GB/s line rate, ~20% protocol overhead (NVIDIA/nccl-tests issue 212, maintainer)' };
const GEMM_SOURCE = 'shape curve x/(x+64) per GEMM dimension: tiles of 64-256 (NVIDIA Matrix Multiplication Background guide); calibrate';
// Overlap 1: gradient sync may hide behind the whole backward (Li et al. 2020, PyTorch DDP, Sec. 3.2.3).
const OVERLAP_SOURCE = 'Li et al. 2020 (PyTorch DDP) bucketed overlap of allreduce with backward';

// Cloud TPU system architecture docs: v4 and v5p chips link to six neighbours in a 3D torus, slices
// built of 4x4x4 cubes; v5e and v6e chips to four in a 2D torus. ICI below is a chip's over all links.
const TORUS3: Torus = { dims: 3, cube: 4 };
const TORUS2: Torus = { dims: 2 };
const TORUS_SOURCE = 'Cloud TPU system architecture docs: the slice is a torus (v4, v5p: 3D of 4x4x4 cubes; v5e, v6e: 2D); ICI is the chip\'s over all links, and an axis gets the share of the torus dimensions it spans (src/cost/torus.ts)';

// Every TPU program is compiled by XLA, which eliminates dead code: under JAX's remat
// (jax.checkpoint with MaxText's and t5x's remat_policy full = nothing_saveable) and TF's
// recompute_grad (Mesh-TF), the backward reruns only the forward ops whose results it reads.
const XLA_REMAT_SOURCE = 'XLA compiles every TPU program: full recompute (jax.checkpoint, nothing saveable; TF recompute_grad) reruns only what the backward reads, dead forward ops (the MLP output projection) are eliminated';

/** The same achieved fraction of a link for every collective kind. */
function ringEff(f: number): Record<'allreduce' | 'allgather' | 'reduce-scatter' | 'all-to-all' | 'send', number> {
  return { allreduce: f, allgather: f, 'reduce-scatter': f, 'all-to-all': f, send: f };
}

function tpu(name: string, description: string, perCore: { torus?: Torus; tpOverlap?: number; flops: number; mem: number; hbm: number; ici: number; pod: number; dcn?: number; dcnSource?: string }, src: string): HardwareProfile {
  return {
    name, description,
    peakFlops: { bfloat16: perCore.flops, float16: perCore.flops, float32: perCore.flops / 4 },
    memoryBytes: perCore.mem, memoryBandwidth: perCore.hbm,
    levels: [
      { name: 'ici', devices: perCore.pod, link: { bandwidth: perCore.ici, latency: 2e-6 }, ...(perCore.torus ? { torus: perCore.torus } : {}) },
      { name: 'dcn', devices: 1e9, link: { bandwidth: perCore.dcn ?? 12.5 * GB, latency: 20e-6 } },
    ],
    efficiency: DEFAULT_EFFICIENCY, overlap: 1, gemmHalfSize: GEMM_HALF, launchOverhead: 1e-6, collectiveLatency: 5e-6, tensorParallelOverlap: perCore.tpOverlap ?? 0,
    fullRecompute: 'needed',
    sources: {
      fullRecompute: XLA_REMAT_SOURCE,
      peak: src, memory: src, ici: src, gemmHalfSize: GEMM_SOURCE,
      launchOverhead: 'assumed 1 µs per XLA-fused op on TPU (ops are fused into few large programs); calibrate',
      collectiveLatency: 'assumed 5 µs per ICI collective call; calibrate',
      tensorParallelOverlap: perCore.tpOverlap ? 'MaxText\'s TPU scripts set --xla_tpu_enable_async_collective_fusion and --xla_tpu_overlap_compute_collective_tc (src/maxtext/configs/tpu/v5e/128b.sh): the backward\'s tensor-parallel collectives overlap the weight gradients\' compute (1); the forward\'s, which the next op reads, cannot' : 'Mesh-TF-era XLA overlaps no tensor-parallel collective (0)',
      float32: 'fp32 matmuls run as several bf16 MXU passes: taken as 1/4 of the bf16 peak',
      latency: 'assumed 2 µs per ICI ring step, 20 µs across the data-centre network; calibrate',
      dcn: perCore.dcnSource ?? 'assumed 100 Gbit/s per host across pods',
      ...(perCore.torus ? { torus: TORUS_SOURCE } : {}),
      efficiency: EFF_SOURCE, overlap: OVERLAP_SOURCE,
    },
  };
}

const GPUS = new Set<string>();

function gpu(name: string, description: string, g: { flops: number; mem: number; hbm: number; nvlink: number; net: number; fp32?: number; fp32Source?: string; nvlinkEff: number; nvlinkEffSource: string; netName?: string; netSource?: string; netEff?: number; netEffSource?: string; netOverlap?: number; netOverlapSource?: string; nvlinkOverlap?: number; nvlinkOverlapSource?: string; chip?: string }, src: string): HardwareProfile {
  const netName = g.netName ?? 'infiniband';
  GPUS.add(name);
  return {
    name, description, ...(g.chip ? { chip: g.chip } : {}),
    peakFlops: { bfloat16: g.flops, float16: g.flops, float32: g.fp32 ?? g.flops / 16 },
    memoryBytes: g.mem, memoryBandwidth: g.hbm,
    levels: [
      { name: 'nvlink', devices: 8, link: { bandwidth: g.nvlink, latency: 1e-6, efficiency: ringEff(g.nvlinkEff), ...(g.nvlinkOverlap !== undefined ? { overlap: g.nvlinkOverlap } : {}) } },
      { name: netName, devices: 1e9, link: { bandwidth: g.net, latency: 5e-6, efficiency: ringEff(g.netEff ?? 0.9), ...(g.netOverlap !== undefined ? { overlap: g.netOverlap } : {}) } },
    ],
    efficiency: DEFAULT_EFFICIENCY, overlap: 1, gemmHalfSize: GEMM_HALF, launchOverhead: 4e-6, collectiveLatency: 10e-6, tensorParallelOverlap: 0,
    sources: {
      peak: src, memory: src, nvlink: src, gemmHalfSize: GEMM_SOURCE,
      nvlinkEfficiency: g.nvlinkEffSource,
      [`${netName}Efficiency`]: g.netEffSource ?? 'assumed 0.9 of the NIC line rate for ring collectives across nodes; calibrate',
      ...(g.netSource ? { [netName]: g.netSource } : {}),
      ...(g.netOverlapSource ? { [`${netName}Overlap`]: g.netOverlapSource } : {}),
      ...(g.nvlinkOverlapSource ? { nvlinkOverlap: g.nvlinkOverlapSource } : {}),
      launchOverhead: 'CUDA kernel launch, about 4 µs each (NVIDIA CUDA best-practices guide: launches cost a few µs); calibrate',
      collectiveLatency: 'about 10 µs per NCCL call at small sizes (nccl-tests all_reduce_perf latency on 8 GPUs); calibrate',
      tensorParallelOverlap: 'Megatron-LM overlaps no tensor-parallel collective unless --tp-comm-overlap (0)',
      float32: g.fp32Source ?? 'plain fp32 (no TF32) is 1/16 of the dense bf16 tensor-core peak on these parts',
      node: '8 GPUs per node (DGX/HGX); one 200 Gbit/s (A100) or 400 Gbit/s (H100/H200) NIC per GPU',
      latency: 'assumed 1 µs per NVLink ring step and 5 µs per InfiniBand step (NCCL ring); calibrate',
      efficiency: EFF_SOURCE, overlap: OVERLAP_SOURCE,
    },
  };
}

// Devices are TPU cores for v2/v3 (two per chip, as the Mesh-TF paper counts its 512-core pod),
// chips for v4. ICI per core: one link each way along a ring axis, shared by the chip's cores.
const PRESETS: HardwareProfile[] = [
  tpu('tpu-v2', 'TPU v2 core; the Mesh-TensorFlow paper\'s 512-core pod (16x16 chips, 2 cores each)',
    { flops: 23 * T, mem: 8 * GiB, hbm: 350 * GB, ici: 62 * GB, pod: 512 },
    'Jouppi et al. 2020 (CACM 63:7), Table 3: 46 TFLOPS bf16, 16 GiB, 700 GB/s per chip; ICI 496 Gbit/s per link'),
  tpu('tpu-v3', 'TPU v3 core; 2048-core pod (32x32 chips, 2 cores each)',
    { flops: 61.5 * T, mem: 16 * GiB, hbm: 450 * GB, ici: 82 * GB, pod: 2048 },
    'Jouppi et al. 2020 (CACM 63:7), Table 3: 123 TFLOPS bf16, 32 GiB, 900 GB/s per chip; ICI 656 Gbit/s per link'),
  tpu('tpu-v4', 'TPU v4 chip (megacore); 4096-chip pod',
    { torus: TORUS3, tpOverlap: 1, flops: 275 * T, mem: 32 * GiB, hbm: 1200 * GB, ici: 268 * GB, pod: 4096 },
    'Cloud TPU v4 docs: 275 TFLOPS bf16, 32 GiB at 1200 GB/s per chip; all-reduce 1.1 PB/s per 4096-chip pod = 268 GB/s per chip'),
  // v5e/v5p/v6e: ICI each way per chip = half the docs' bidirectional ICI bandwidth per chip
  // (which is also the docs' all-reduce bandwidth per pod / chips, as for v4 above).
  tpu('tpu-v5e', 'TPU v5e chip; 256-chip pod (16x16, 2D torus)',
    { torus: TORUS2, tpOverlap: 1, flops: 197 * T, mem: 16 * GB, hbm: 819 * GB, ici: 200 * GB, pod: 256, dcn: 3.125 * GB,
      dcnSource: 'Cloud TPU v5e docs: 2 x 100 Gbps NIC per 8-chip host = 25 Gbit/s per chip (6.4 Tbps per 256-chip pod)' },
    'Cloud TPU v5e docs (system architecture): 197 TFLOPs bf16, 16 GB HBM2 at 819 GBps, ICI 400 GBps bidirectional per chip, 256 chips per pod'),
  tpu('tpu-v5p', 'TPU v5p chip (2 TensorCores as one device); slices up to 6144 chips (16x16x24, 3D torus)',
    { torus: TORUS3, tpOverlap: 1, flops: 459 * T, mem: 95 * GiB, hbm: 2765 * GB, ici: 600 * GB, pod: 6144, dcn: 6.25 * GB,
      dcnSource: 'Cloud TPU v5p docs: data center network (DCN) bandwidth 50 Gbps per chip' },
    'Cloud TPU v5p docs (system architecture): 459 TFLOPs bf16, 95 GiB HBM2e at 2765 GBps, ICI 1200 GBps bidirectional per chip, largest slice 6144 of the 8960-chip pod'),
  tpu('tpu-v6e', 'TPU v6e (Trillium) chip; 256-chip pod (16x16, 2D torus)',
    { torus: TORUS2, tpOverlap: 1, flops: 918 * T, mem: 32 * GB, hbm: 1638 * GB, ici: 400 * GB, pod: 256,
      dcnSource: 'not in the stored copy of the v6e docs page: assumed 100 Gbit/s per chip; calibrate' },
    'Cloud TPU v6e docs (system architecture): 918 TFLOPs bf16, 32 GB HBM at 1638 GBps, ICI 800 GBps bidirectional per chip, 256 chips per pod'),
  gpu('a100-40g', 'NVIDIA A100 SXM 40 GB, 8 per node on NVLink 3, InfiniBand HDR between nodes',
    { flops: 312 * T, mem: 40 * GB, hbm: 1555 * GB, nvlink: 300 * GB, net: 25 * GB, nvlinkEff: 0.7, nvlinkEffSource: 'nccl-tests all_reduce_perf on 8 A100 SXM: busbw about 200-208 GB/s of 300 (NVIDIA/nccl-tests issues 149 and 178)' },
    'NVIDIA A100 datasheet: 312 TFLOPS bf16 dense, 40 GB HBM2 at 1555 GB/s, NVLink 600 GB/s (300 each way)'),
  gpu('a100-80g', 'NVIDIA A100 SXM 80 GB, 8 per node on NVLink 3, InfiniBand HDR between nodes',
    { flops: 312 * T, mem: 80 * GB, hbm: 2039 * GB, nvlink: 300 * GB, net: 25 * GB, nvlinkEff: 0.7, nvlinkEffSource: 'nccl-tests all_reduce_perf on 8 A100 SXM: busbw about 200-208 GB/s of 300 (NVIDIA/nccl-tests issues 149 and 178)' },
    'NVIDIA A100 datasheet: 312 TFLOPS bf16 dense, 80 GB HBM2e at 2039 GB/s, NVLink 600 GB/s (300 each way)'),
  gpu('h100-sxm', 'NVIDIA H100 SXM 80 GB, 8 per node on NVLink 4, InfiniBand NDR between nodes',
    { flops: 989 * T, mem: 80 * GB, hbm: 3350 * GB, net: 50 * GB, ...NVLINK4, chip: 'h100' },
    'NVIDIA H100 datasheet: 989 TFLOPS bf16 dense, 80 GB HBM3 at 3.35 TB/s, NVLink 900 GB/s (450 each way)'),
  gpu('h100-a3-high', 'NVIDIA H100 SXM 80 GB in Google Cloud A3 High VMs (a3-highgpu-8g): 8 per VM on NVLink 4, GPUDirect-TCPX between VMs',
    { flops: 989 * T, mem: 80 * GB, hbm: 3350 * GB, net: 12.5 * GB, ...NVLINK4,
      chip: 'h100', netName: 'tcpx', netEff: 0.5,
      // The tpu-v5e fit's dcn overlap (FITTED below; test/accuracy.test.ts holds them equal).
      netOverlap: 0,
      // The tpu-v5e fit's ici overlap (FITTED below; test/accuracy.test.ts holds them equal).
      nvlinkOverlap: 0.212,
      nvlinkOverlapSource: 'as much of the FSDP traffic within a VM hides as the tpu-v5e fit found of the FSDP traffic within a slice (linkOverlap ici 0.212): both are MaxText runs whose collectives XLA schedules over the fast links inside the group; a starting point the A3 rows refit',
      netOverlapSource: 'none of the traffic between VMs hides, as the tpu-v5e fit found for the traffic between slices (linkOverlap dcn 0): both are MaxText runs whose collectives XLA schedules, between hosts over Google\'s data-centre network; a starting point the A3 rows refit',
      netEffSource: 'nccl-tests all_gather_perf on 2 A3 High VMs (16 GPUs) over GPUDirect-TCPX: busbw 50.2 GB/s at 8 GiB, 0.50 of the VMs\' 100 GB/s of data NICs (dstack, examples/distributed-training/a3high-clusters/README.md @3cfa83a8)',
      netSource: 'GKE docs, "Maximize GPU network bandwidth with GPUDirect-TCPX": four secondary NICs of 200 Gbps each for GPU data per 8-GPU A3 VM = 12.5 GB/s per GPU (Compute Engine GPU network docs: A3 High 1,000 Gbps in all, 200 of them on the primary NIC)' },
    'NVIDIA H100 datasheet: 989 TFLOPS bf16 dense, 80 GB HBM3 at 3.35 TB/s, NVLink 900 GB/s (450 each way)'),
  gpu('h200', 'NVIDIA H200 SXM 141 GB, 8 per node on NVLink 4, InfiniBand NDR between nodes',
    { flops: 989 * T, mem: 141 * GB, hbm: 4800 * GB, net: 50 * GB, ...NVLINK4 },
    'NVIDIA H200 datasheet: 989 TFLOPS bf16 dense, 141 GB HBM3e at 4.8 TB/s, NVLink 900 GB/s (450 each way)'),
  gpu('b200', 'NVIDIA B200 SXM 180 GB (HGX/DGX B200), 8 per node on NVLink 5, InfiniBand NDR between nodes',
    { flops: 2250 * T, mem: 180 * GB, hbm: 8000 * GB, nvlink: 900 * GB, net: 50 * GB, fp32: 80 * T,
      fp32Source: 'NVIDIA Blackwell architecture brief, HGX B200 at 1000 W: 80 TFLOPS fp32 (non-tensor)',
      nvlinkEff: 0.82, nvlinkEffSource: 'taken as NVLink 4 (NVIDIA/nccl-tests issue 212: ~20% protocol overhead); no NVLink 5 figure found; calibrate' },
    'NVIDIA DGX B200 datasheet: 8 GPUs, 1440 GB HBM3e at 64 TB/s, NVLink 5 14.4 TB/s (1.8 TB/s per GPU, 900 each way), 8x ConnectX-7 400 Gb/s; HGX B200 2.25 PFLOPS bf16 dense per GPU (Blackwell brief)'),
];

/**
 * Constants fitted by `mesh-search calibrate --fit physics --bench data/published/steps.csv
 * --device NAME` (src/calibrate/physics.ts) on the published rows of that device; what is not
 * listed stays the datasheet's (or a stated assumption). bench/accuracy starts its fits from the
 * datasheet profiles (datasheetDevice), so no row predicts itself through a preset.
 */
interface Fitted {
  readonly matmul: number;
  readonly gemmHalfSize: number;
  readonly elementwise: number;
  /** The share of tensor-parallel collectives hidden behind compute, where the fit moved it off the datasheet's. */
  readonly tensorParallelOverlap?: number;
  readonly links: Readonly<Record<string, number>>;
  /** Per network level, the share of its overlappable collectives that can hide (Link.overlap); absent: 1. */
  readonly linkOverlap?: Readonly<Record<string, number>>;
  /** Per network level, the latency per ring step where the fit moved it off the assumed one (seconds). */
  readonly linkLatency?: Readonly<Record<string, number>>;
  readonly rows: string;
}
const KORTHIKANTI = 'data/published/steps.csv rows 3-10 (Korthikanti et al. 2022 Table 5: 22B, 175B, 530B, 1T; 8 rows)';
const H100_ROWS = 'data/published/steps.csv rows 41-57 (MaxText A3 Llama2-7B table, 1 to 16 VMs on GPUDirect-TCPX; Megatron-LM Mixtral 8x7B on 64 DGX H100 GPUs; NVIDIA dgxc-benchmarking v24.11.1 NeMo runs on DGX H100 of Llama 3.1 8B and 70B, Nemotron-4 15B and 340B, GPT-3 175B; 17 rows)';
const FITTED: Readonly<Record<string, Fitted>> = {
  'a100-80g': { matmul: 0.858, gemmHalfSize: 65, elementwise: 0.776, links: { nvlink: 0.64, infiniband: 1 }, rows: KORTHIKANTI },
  'a100-40g': { matmul: 0.858, gemmHalfSize: 65, elementwise: 0.776, links: { nvlink: 0.64, infiniband: 1 }, rows: `${KORTHIKANTI}, measured on A100 80 GB: the same chip and NVLink` },
  'tpu-v4': { matmul: 0.792, gemmHalfSize: 64, elementwise: 0.756, links: { ici: 0.991 }, linkOverlap: { ici: 0.761, dcn: 0.969 }, rows: 'data/published/steps.csv rows 11-16 (MaxText TPU v4 table: 22B and 52B, 1 to 8 slices; 6 rows)' },
  'tpu-v5e': { matmul: 0.932, gemmHalfSize: 65, elementwise: 0.576, tensorParallelOverlap: 1, links: { ici: 1, dcn: 0.989 }, linkOverlap: { ici: 0.212, dcn: 0 }, linkLatency: { dcn: 25.7e-6 }, rows: 'data/published/steps.csv rows 17-40 (MaxText TPU v5e table: 16B to 128B, 1 to 32 slices; 24 rows); tensorParallelOverlap seen by the 128B rows alone (it stays at the datasheet\'s 1)' },
  // One fit over both H100 networks (bench/accuracy fits profiles of one chip together): chip constants shared.
  'h100-sxm': { matmul: 0.709, gemmHalfSize: 66, elementwise: 0.656, tensorParallelOverlap: 0.071, links: { nvlink: 1, infiniband: 0.918 }, linkOverlap: { nvlink: 0 }, rows: H100_ROWS },
  'h100-a3-high': { matmul: 0.709, gemmHalfSize: 66, elementwise: 0.656, tensorParallelOverlap: 0.071, links: { nvlink: 1, tcpx: 0.504 }, linkOverlap: { nvlink: 0, tcpx: 0.071 }, rows: `${H100_ROWS}; GPUDirect-TCPX seen by the A3 rows alone, from its nccl-tests efficiency and the v5e fit's overlap between slices; NVLink's overlap (MaxText's FSDP inside a VM) from the v5e fit's inside a slice` },
};

/**
 * What a TPU preset with no published rows of its own takes from fitted ones.
 * - Overlaps, from v5e: v5p's and v6e's slices meet over the same data-centre network, and their
 *   collectives are scheduled by the same XLA with the same MaxText flags, as v5e's. The v5e fit
 *   hides none of the gradient all-reduce across slices (linkOverlap dcn 0) and all of the
 *   backward's tensor-parallel collectives (its 128B rows), as the datasheet profile assumes (1).
 * - The chip's kernel efficiencies (matmul, its GEMM curve, elementwise), from the fitted chip of
 *   its line, where the datasheet profile has a starting point read off GPUs: v5p from v4 (two
 *   TensorCores as one megacore device, 3D torus), v6e from v5e (one TensorCore, 2D torus).
 */
interface Transfer {
  readonly linkOverlap: Readonly<Record<string, number>>;
  readonly tensorParallelOverlap: number;
  readonly from: string;
  readonly chipFrom: string;
}
const TRANSFERRED: Readonly<Record<string, Transfer>> = {
  'tpu-v5p': { linkOverlap: { dcn: FITTED['tpu-v5e'].linkOverlap!.dcn }, tensorParallelOverlap: FITTED['tpu-v5e'].tensorParallelOverlap!, from: 'tpu-v5e', chipFrom: 'tpu-v4' },
  'tpu-v6e': { linkOverlap: { dcn: FITTED['tpu-v5e'].linkOverlap!.dcn }, tensorParallelOverlap: FITTED['tpu-v5e'].tensorParallelOverlap!, from: 'tpu-v5e', chipFrom: 'tpu-v5e' },
};

/** A profile's kernel efficiencies as a fit gave them (softmax and reduction move with elementwise). */
function withChip(p: HardwareProfile, f: Fitted): Pick<HardwareProfile, 'efficiency' | 'gemmHalfSize'> {
  return {
    efficiency: {
      matmul: f.matmul, elementwise: f.elementwise,
      softmax: Math.min(1, (p.efficiency.softmax * f.elementwise) / p.efficiency.elementwise),
      reduction: Math.min(1, (p.efficiency.reduction * f.elementwise) / p.efficiency.elementwise),
    },
    gemmHalfSize: f.gemmHalfSize,
  };
}

function withLinkOverlap(levels: HardwareProfile['levels'], o: Readonly<Record<string, number>> | undefined): HardwareProfile['levels'] {
  return levels.map((l) => (o?.[l.name] === undefined ? l : { ...l, link: { ...l.link, overlap: o[l.name] } }));
}

/**
 * Eager PyTorch's kernels against the fused ones the GPU presets were fitted on (engine asRunBy):
 * fitted by `mesh-search calibrate --fit physics --bench data/published/llm-foundry-a100.csv
 * --device a100-80g --hold efficiency,gemmHalfSize,launchOverhead,overlap,tensorParallelOverlap,levels`
 * (the a100 preset's constants held, this one fitted). A property of the engine's kernels, not of
 * the chip: every GPU preset takes it; llm-foundry's H100 rows and torchtitan's A100 row are held
 * out to check that it carries.
 */
const EAGER = { value: 0.81, rows: 'data/published/llm-foundry-a100.csv (MosaicML llm-foundry on A100: MPT 1B to 70B, Composer with PyTorch FSDP; 12 rows)' };

/** A GPU preset with the eager kernels' speed (TPUs run no eager PyTorch engine). */
function withEager(p: HardwareProfile): HardwareProfile {
  if (!GPUS.has(p.name)) return p;
  return { ...p, eagerCompute: EAGER.value, sources: { ...p.sources, eagerCompute: `fitted by the physics fit on ${EAGER.rows}, the a100-80g preset's other constants held` } };
}

function applyFitted(p: HardwareProfile): HardwareProfile {
  const t = TRANSFERRED[p.name];
  if (t) {
    const from = `taken from the ${t.from} fit (${FITTED[t.from].rows})`;
    const chip = `taken from the ${t.chipFrom} fit, the fitted chip of its line (${FITTED[t.chipFrom].rows})`;
    return {
      ...p, ...withChip(p, FITTED[t.chipFrom]), tensorParallelOverlap: t.tensorParallelOverlap, levels: withLinkOverlap(p.levels, t.linkOverlap),
      sources: { ...p.sources, efficiency: chip, gemmHalfSize: chip, linkOverlap: from, tensorParallelOverlap: from },
    };
  }
  const f = FITTED[p.name];
  if (!f) return p;
  const note = `fitted by the physics fit (src/calibrate/physics.ts; mesh-search calibrate --fit physics --bench data/published/steps.csv --device ${p.name} runs it, from the datasheet profile in bench/accuracy) on ${f.rows}`;
  return {
    ...p,
    ...withChip(p, f),
    ...(f.tensorParallelOverlap !== undefined ? { tensorParallelOverlap: f.tensorParallelOverlap } : {}),
    levels: withLinkOverlap(p.levels.map((l) => (f.links[l.name] === undefined ? l : {
      ...l, link: { ...l.link, efficiency: ringEff(f.links[l.name]), ...(f.linkLatency?.[l.name] !== undefined ? { latency: f.linkLatency[l.name] } : {}) },
    })), f.linkOverlap),
    sources: { ...p.sources, efficiency: note, gemmHalfSize: note, linkEfficiency: note, ...(f.tensorParallelOverlap !== undefined ? { tensorParallelOverlap: note } : {}),
      ...(f.linkLatency ? { latency: `${Object.keys(f.linkLatency).join(', ')} latency ${note}; the rest: ${p.sources.latency}` } : {}), fittedOn: f.rows },
  };
}

const FITTED_PRESETS: HardwareProfile[] = PRESETS.map((p) => withEager(applyFitted(p)));

export function devicePresets(): readonly HardwareProfile[] {
  return FITTED_PRESETS;
}

export function findDevice(name: string): HardwareProfile | undefined {
  return FITTED_PRESETS.find((p) => p.name === name);
}

/** A preset as its datasheet and stated assumptions give it, before any fit to published rows. */
export function datasheetDevice(name: string): HardwareProfile {
  const p = PRESETS.find((x) => x.name === name);
  if (!p) throw profileError(name, PRESETS.map((x) => x.name));
  return p;
}

export function getDevice(name: string): HardwareProfile {
  const p = findDevice(name);
  if (!p) throw profileError(name, PRESETS.map((x) => x.name));
  return p;
}

export const DEFAULT_DEVICE = 'tpu-v2';
