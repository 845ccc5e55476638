import type { CommandModule } from 'yargs';
import { devicePresets } from '../../cost/presets.js';
import { fmtBytes, table } from '../format.js';

export const devicesCommand: CommandModule<object, { json?: boolean }> = {
  command: 'devices',
  describe: 'List the hardware profiles (--device takes one of these or a profile JSON file)',
  builder: (y) => y.option('json', { type: 'boolean', describe: 'print JSON' }),
  handler: (args) => {
    const ps = devicePresets();
    if (args.json) {
      process.stdout.write(JSON.stringify(ps) + '\n');
      return;
    }
    process.stdout.write(table(
      ['name', 'bf16 peak', 'memory', 'HBM', 'links', 'description'],
      ps.map((p) => [
        p.name, `${(p.peakFlops.bfloat16 / 1e12).toFixed(1)} TFLOP/s`, fmtBytes(p.memoryBytes), `${(p.memoryBandwidth / 1e9).toFixed(0)} GB/s`,
        p.levels.map((l) => `${l.name} ${(l.link.bandwidth / 1e9).toFixed(1)} GB/s${l.torus ? ` (${l.torus.dims}D torus)` : ''}${l.devices < 1e9 ? ` ≤${l.devices}` : ''}`).join(', '),
        p.description,
      ]),
    ) + '\n');
  },
};
