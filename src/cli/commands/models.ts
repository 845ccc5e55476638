import type { CommandModule } from 'yargs';
import { activeParamCount, buildGraph, paramCount } from '../../model/graph.js';
import { listPresets } from '../../model/presets.js';
import { fmtParams, table } from '../format.js';

export const modelsCommand: CommandModule<object, { json?: boolean }> = {
  command: 'models',
  describe: 'List the model presets (--model takes one of these or a JSON spec file)',
  builder: (y) => y.option('json', { type: 'boolean', describe: 'print JSON' }),
  handler: (args) => {
    const rows = listPresets().map((p): { name: string; aliasOf?: string; params: number; activeParams?: number; spec: typeof p.spec; source: string } => {
      const g = buildGraph(p.spec);
      // MoE presets also say how many parameters one token runs through (the routed experts' top-k share).
      const active = p.spec.experts ? { activeParams: activeParamCount(g) } : {};
      return { name: p.name, aliasOf: p.aliasOf, params: paramCount(g), ...active, spec: p.spec, source: p.source };
    });
    if (args.json) {
      process.stdout.write(JSON.stringify(rows) + '\n');
      return;
    }
    process.stdout.write(table(
      ['name', 'params', 'kind', 'layers', 'd_model', 'heads', 'd_kv', 'd_ff', 'vocab', 'seq', 'batch', 'source'],
      rows.map((r) => [
        r.aliasOf ? `${r.name} (= ${r.aliasOf})` : r.name, r.activeParams !== undefined ? `${fmtParams(r.params)} (${fmtParams(r.activeParams)} active)` : fmtParams(r.params), r.spec.kind,
        r.spec.kind === 'decoder' ? String(r.spec.decoderLayers) : `${r.spec.encoderLayers}+${r.spec.decoderLayers}`,
        String(r.spec.dModel), String(r.spec.heads), String(r.spec.dKv), String(r.spec.dFf), String(r.spec.vocab),
        String(r.spec.seqLen), String(r.spec.batch), r.source,
      ]),
    ) + '\n');
  },
};
