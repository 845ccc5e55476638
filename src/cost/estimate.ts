import type { PlanJson } from '../lower/plan.js';

/** What the cost model says of one plan (DESIGN.md's JSON), per device, in bytes, seconds and FLOPs. */
export interface Estimate {
  model: { name: string; params: number };
  mesh: { axes: { name: string; size: number }[] };
  plan: PlanJson;
  device: string;
  valid: boolean;
  feasible: boolean;
  reasons: string[];
  flops: { modelPerStep: number; matmulPerStep: number; perDevice: number };
  memory: { params: number; gradients: number; optimizer: number; activations: number; temporary: number; total: number; capacity: number };
  communication: {
    bytesPerDevice: number;
    byAxis: Record<string, number>;
    collectives: { kind: string; axes: string[]; bytes: number; count: number }[];
  };
  time: { compute: number; communication: number; exposedCommunication: number; bubble: number; step: number };
  mfu: number;
  tokensPerSecond: number;
}
