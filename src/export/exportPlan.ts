import { InputError } from '../errors.js';
import { deepspeed } from './formats/deepspeed.js';
import { maxtext } from './formats/maxtext.js';
import { megatron } from './formats/megatron.js';
import { meshTf } from './formats/meshTf.js';
import { t5x } from './formats/t5x.js';
import { torchtitan } from './formats/torchtitan.js';
import { FORMATS, type ExportInput, type ExportOutput, type Format } from './target.js';

const EXPORTERS: Record<Format, (input: ExportInput) => ExportOutput> = {
  'mesh-tf': meshTf, t5x, maxtext, megatron, deepspeed, torchtitan,
};

export function isFormat(s: string): s is Format {
  return (FORMATS as readonly string[]).includes(s);
}

/** The plan in one engine's configuration; an UnsupportedPlanError (exit 2) when it cannot say it. */
export function exportPlan(input: ExportInput, format: string): ExportOutput {
  if (!isFormat(format)) throw new InputError(`unknown export format "${format}"; formats are ${FORMATS.join(', ')}`);
  return EXPORTERS[format](input);
}
