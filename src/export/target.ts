import { InputError } from '../errors.js';
import { ENGINES } from '../engine/index.js';
import type { HardwareProfile } from '../cost/profile.js';
import type { Mesh } from '../mesh/mesh.js';
import type { Plan } from '../lower/plan.js';
import type { ModelSpec } from '../model/spec.js';

/** The export formats, as `--format` spells them. */
export const FORMATS = ENGINES;
export type Format = (typeof FORMATS)[number];

/** What an export reads: a plan with the mesh, model and hardware it was made for. */
export interface ExportInput {
  readonly plan: Plan;
  readonly mesh: Mesh;
  readonly spec: ModelSpec;
  /** Decides which axes cross slices (MaxText's dcn_* keys); absent means one slice. */
  readonly profile?: HardwareProfile;
}

/** One engine's configuration, as text in that engine's own syntax. */
export interface ExportOutput {
  readonly format: Format;
  /** `gin`, `yaml`, `json` or `args` (command-line arguments, one per line). */
  readonly syntax: 'gin' | 'yaml' | 'json' | 'args';
  readonly text: string;
}

/**
 * A plan the target cannot express: every missing feature, named. An InputError, so the
 * CLI prints it on one line and exits 2 instead of writing a config that trains something else.
 */
export class UnsupportedPlanError extends InputError {
  constructor(readonly format: Format, readonly missing: readonly string[]) {
    super(`${format} cannot express this plan: ${missing.join('; ')}`);
    this.name = 'UnsupportedPlanError';
  }
}
