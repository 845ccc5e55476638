import { maskSize } from '../layout/layout.js';
import type { Mesh } from '../mesh/mesh.js';
import { innerSize } from '../mesh/mesh.js';
import { paramCount } from '../model/graph.js';
import { latencySteps } from '../lower/collectives.js';
import { planToJson } from '../lower/plan.js';
import type { Collective, LoweredOp, Program } from '../lower/program.js';
import type { Estimate } from './estimate.js';
import type { HardwareProfile, Link } from './profile.js';

/** The link of one mesh axis: an override, else the first level that holds the axis's devices. */
export function axisLink(profile: HardwareProfile, mesh: Mesh, axis: number): Link {
  const name = mesh.axes[axis].name;
  const o = profile.axisLinks?.[name];
  if (o) return o;
  const span = innerSize(mesh, axis) * mesh.axes[axis].size;
  for (const level of profile.levels) if (span <= level.devices) return level.link;
  return profile.levels[profile.levels.length - 1].link;
}

/** Several axes at once use the slowest link (DESIGN.md, Pricing). */
export function maskLink(profile: HardwareProfile, mesh: Mesh, mask: number): Link {
  let bw = Infinity;
  let lat = 0;
  for (let i = 0; i < mesh.axes.length; i++) {
    if (!(mask & (1 << i))) continue;
    const l = axisLink(profile, mesh, i);
    bw = Math.min(bw, l.bandwidth);
    lat = Math.max(lat, l.latency);
  }
  return { bandwidth: bw, latency: lat };
}

/** Alpha-beta time of one collective on a ring (DESIGN.md, Pricing). */
export function collectiveTime(profile: HardwareProfile, mesh: Mesh, c: Collective): number {
  const n = c.kind === 'send' ? 2 : maskSize(mesh, c.mask);
  if (n <= 1) return 0;
  const link = maskLink(profile, mesh, c.mask);
  return c.sent / link.bandwidth + latencySteps(c.kind, n) * link.latency;
}

/**
 * Compute time of one execution of an op: matmuls by FLOPs, the rest by bytes moved; an op with
 * no work launches no kernel. `efficiencyHalfWork` (calibration fits it) adds a per-kernel cost.
 */
export function opTime(profile: HardwareProfile, op: LoweredOp, peak: number): number {
  const matmul = op.klass === 'matmul';
  const work = matmul ? op.flops : op.bytes;
  if (work <= 0) return 0;
  const half = profile.efficiencyHalfWork?.[op.klass] ?? 0;
  return (work + half) / ((matmul ? peak : profile.memoryBandwidth) * profile.efficiency[op.klass]);
}

/** Price a lowered program on a hardware profile. */
export function price(program: Program, profile: HardwareProfile): Estimate {
  const { graph, mesh, plan } = program;
  const peak = profile.peakFlops[graph.spec.dtype];
  let compute = 0;
  let backwardCompute = 0;
  let blocking = 0;
  let overlappable = 0;
  let bytesPerDevice = 0;
  const byAxis: Record<string, number> = {};
  const collectives = new Map<string, { kind: string; axes: string[]; bytes: number; count: number }>();
  for (const op of program.ops) {
    const t = opTime(profile, op, peak) * op.count;
    compute += t;
    if (op.phase === 'backward' || op.phase === 'recompute') backwardCompute += t;
    for (const c of op.collectives) {
      const ct = collectiveTime(profile, mesh, c) * op.count;
      if (c.overlappable) overlappable += ct;
      else blocking += ct;
      const sent = c.sent * op.count;
      bytesPerDevice += sent;
      const key = c.axes.join('+');
      byAxis[key] = (byAxis[key] ?? 0) + sent;
      const ck = `${c.kind}|${key}|${c.bytes}`;
      const agg = collectives.get(ck);
      if (agg) agg.count += op.count;
      else collectives.set(ck, { kind: c.kind, axes: [...c.axes], bytes: c.bytes, count: op.count });
    }
  }
  const communication = blocking + overlappable;
  const exposed = blocking + Math.max(0, overlappable - profile.overlap * backwardCompute);
  const M = plan.microbatches;
  const bubble = program.stages > 1 ? ((program.stages - 1) / M) * (compute + exposed) : 0;
  const step = compute + exposed + bubble;
  const capacity = profile.memoryBytes;
  const feasible = program.memory.total <= capacity;
  const reasons: string[] = [];
  if (!feasible) {
    reasons.push(`memory ${fmtBytes(program.memory.total)} per device exceeds the ${profile.name} capacity of ${fmtBytes(capacity)} by ${fmtBytes(program.memory.total - capacity)}`);
  }
  return {
    model: { name: graph.spec.name, params: paramCount(graph) },
    mesh: { axes: mesh.axes.map((a) => ({ name: a.name, size: a.size })) },
    plan: planToJson(plan),
    device: profile.name,
    valid: true,
    feasible,
    reasons,
    flops: { ...program.flops },
    memory: { ...program.memory, capacity },
    communication: { bytesPerDevice, byAxis, collectives: [...collectives.values()] },
    time: { compute, communication, exposedCommunication: exposed, bubble, step },
    mfu: program.flops.modelPerStep / (step * mesh.size * peak),
    tokensPerSecond: (graph.spec.batch * graph.spec.seqLen) / step,
  };
}

export function fmtBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(u === 0 ? 0 : 2)} ${units[u]}`;
}
