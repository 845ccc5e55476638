import type { RowEngine } from '../engine/index.js';
import type { HardwareProfile, OpClassName } from '../cost/profile.js';
import type { Graph } from '../model/graph.js';
import type { Mesh } from '../mesh/mesh.js';
import type { Plan } from '../lower/plan.js';
import type { Program } from '../lower/program.js';

export const OP_CLASSES: readonly OpClassName[] = ['matmul', 'elementwise', 'softmax', 'reduction'];

/** Measured seconds per step on one device, split by what a trace or a benchmark can attribute. */
export interface ComponentTimes {
  /** Compute seconds per step in each op class. */
  readonly compute: Readonly<Partial<Record<OpClassName, number>>>;
  /** Collective seconds per step by axis group (`rows`, `rows+cols`: as estimate's byAxis keys). */
  readonly comm: Readonly<Record<string, number>>;
}

/** Where a row came from: file and 1-based line (a trace is one row, line 1). */
export interface RowSource {
  readonly file: string;
  readonly line: number;
}

/** One accepted measurement: a plan on a mesh and what it measured, with the program that prices it. */
export interface Measurement {
  readonly source: RowSource;
  readonly modelName: string;
  /**
   * Only for a row measured on another network of the fitted profile's chip (an A3 row when
   * fitting h100-sxm): that device's profile. The physics fit prices it there, chip constants shared.
   */
  readonly sibling?: HardwareProfile;
  /** The engine that ran it, when the row says: priced as it runs (engine asRunBy: full recompute, kernels). */
  readonly engine?: RowEngine;
  readonly graph: Graph;
  readonly mesh: Mesh;
  readonly plan: Plan;
  readonly program: Program;
  /** Measured seconds per training step. */
  readonly stepTime: number;
  readonly components: ComponentTimes;
  /** Plans that share this key are one plan for leave-one-plan-out. */
  readonly planKey: string;
  /** Plans that share this key compete in one search (same model and mesh): Kendall tau ranks within it. */
  readonly problemKey: string;
}

/** A row that was not used, and why. Nothing is dropped without one of these. */
export interface Rejection {
  readonly source: RowSource;
  readonly reason: string;
}

export interface LoadedRows {
  readonly rows: Measurement[];
  readonly rejected: Rejection[];
  /** The device each accepted row names, if any (the base profile when --device is not given). */
  readonly devices: string[];
}

/** Step-time error and rank agreement of a set of predictions. */
export interface Accuracy {
  /** Mean absolute percentage error of step time, as a fraction (0.1 = 10%). */
  readonly mape: number;
  /** Kendall tau-b over pairs of different plans of the same model and mesh; null with no such pair. */
  readonly kendallTau: number | null;
}

/** What `calibrate --json` prints (DESIGN.md), plus the detail behind it. */
export interface CalibrationReport {
  readonly profile: HardwareProfile;
  readonly rows: { readonly used: number; readonly rejected: number };
  readonly before: Accuracy;
  readonly after: Accuracy;
  readonly rejections: readonly { file: string; line: number; reason: string }[];
  readonly fit: FitSummary;
}

export interface FitParameter {
  readonly name: string;
  readonly base: number;
  readonly fitted: number;
  /** Kept at the base value: the rows do not determine it. */
  readonly fixed: boolean;
}

export interface FitSummary {
  readonly parameters: readonly FitParameter[];
  /** Rows the robust fit gave (almost) no weight: listed, not dropped. */
  readonly outliers: readonly { file: string; line: number; relativeError: number }[];
  /** Step-time MAPE of the fit on the rows it saw (in-sample), for comparison with the CV figure. */
  readonly inSampleMape: number;
  readonly observations: number;
  readonly iterations: number;
}
