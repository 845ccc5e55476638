import type { CommandModule } from 'yargs';
import { DEFAULT_DEVICE } from '../../cost/presets.js';
import { InputError } from '../../errors.js';
import { parseSearchResult } from '../../export/report/result.js';
import { search } from '../../search/index.js';
import { ENGINES, modelProblems } from '../../engine/index.js';
import { cannotRun, engineArg } from './search.js';
import { availableParallelism } from 'node:os';
import { checkWritable, intFlag, loadDevice, loadMesh, loadModel, readJsonFile, workersFlag } from '../../inputs/index.js';

interface Args {
  from?: string;
  mesh?: string;
  model?: string;
  device: string;
  top: string;
  workers?: string;
  out: string;
  engine?: string;
}

export const reportCommand: CommandModule<object, Args> = {
  command: 'report',
  describe: 'Write one self-contained HTML page of a search: Pareto front, the mesh and the best plan, step time, top plans',
  builder: (y) =>
    y
      .option('from', { type: 'string', describe: 'a saved `mesh-search --json` output (instead of searching)' })
      .option('mesh', { type: 'string', describe: 'search this mesh (with --model)' })
      .option('model', { type: 'string', describe: 'model preset or JSON spec file' })
      .option('device', { type: 'string', default: DEFAULT_DEVICE, describe: 'hardware preset or profile JSON' })
      .option('top', { type: 'string', default: '10', describe: 'plans in the table and the bar chart' })
      .option('workers', { type: 'string', describe: 'search worker threads' })
      .option('out', { type: 'string', demandOption: true, describe: 'the HTML file to write' })
      .option('engine', { type: 'string', choices: ENGINES as unknown as string[], describe: 'search only the plans this training engine can express, priced as it runs them' }),
  handler: async (args) => {
    if ((args.from === undefined) === (args.mesh === undefined)) {
      throw new InputError('report needs either --from result.json or --mesh with --model');
    }
    const top = intFlag('top', args.top, 1, 10_000);
    const workers = workersFlag(args.workers, availableParallelism(), (line) => process.stderr.write(`mesh-search: ${line}\n`));
    checkWritable(args.out, 'the report');
    // vega is heavy: load the renderer only when a report is asked for.
    const { writeReport } = await import('../../export/report/report.js');
    if (args.from !== undefined) {
      const result = parseSearchResult(readJsonFile(args.from, 'search result'), `search result ${args.from}`);
      await writeReport(result, args.out, { top });
    } else {
      const spec = loadModel(args.model);
      const engine = engineArg(args.engine);
      const mesh = loadMesh(args.mesh);
      const profile = loadDevice(args.device);
      if (engine && modelProblems(engine, spec).length > 0) throw new InputError(cannotRun(engine, spec, mesh, profile));
      const result = await search({
        spec, mesh, profile, top, workers,
        onProgress: () => undefined, ...(engine ? { filter: { engine } } : {}),
      });
      if (engine && !result.best && !result.closest) throw new InputError(cannotRun(engine, spec, mesh, profile));
      await writeReport(result, args.out, { spec, top });
    }
    process.stderr.write(`mesh-search: wrote the report to ${args.out}\n`);
  },
};
