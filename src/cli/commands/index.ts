import type { Argv } from 'yargs';
import { runCommand } from './run.js';
import { trainCommand } from './train.js';
import { calibrateCommand } from './calibrate.js';
import { devicesCommand } from './devices.js';
import { estimateCommand } from './estimate.js';
import { exportCommand } from './export.js';
import { modelsCommand } from './models.js';
import { reportCommand } from './report.js';
import { searchCommand } from './search.js';
import { tuneCommand } from './tune.js';
import { validateCommand } from './validate.js';

/** Every subcommand registers here, one line each. */
export function registerCommands(y: Argv): Argv {
  return y
    .command(searchCommand)
    .command(estimateCommand)
    .command(modelsCommand)
    .command(devicesCommand)
    .command(exportCommand)
    .command(reportCommand)
    .command(calibrateCommand)
    .command(tuneCommand)
    .command(validateCommand)
    .command(runCommand)
    .command(trainCommand);
}
