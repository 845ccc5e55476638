import yargs, { type Argv } from 'yargs';
import { InputError } from '../errors.js';
import { registerCommands } from './commands/index.js';

/**
 * The command line. Bad input of any kind (a flag, a file, a layout) prints one line on stderr
 * and returns 2; a bug prints its stack and returns 1.
 */
export async function main(argv: string[]): Promise<number> {
  let usageError: string | null = null;
  let parser: Argv = yargs(argv)
    .scriptName('mesh-search')
    .usage('mesh-search: find the best Mesh-TensorFlow layout to train a Transformer on a mesh of accelerators.\n\nUsage: $0 [command] --mesh 16x32 --model transformer-5b [options]')
    .strict()
    .exitProcess(false)
    .wrap(Math.min(120, process.stdout.columns || 120))
    .epilog([
      'Examples:',
      '  mesh-search --mesh 16x32 --model transformer-5b     the best plan for the paper\'s 5B LM on 512 TPU v2 cores',
      '  mesh-search estimate --mesh 16x32 --model transformer-5b --layout "batch:rows;d_ff:cols;heads:cols;vocab:cols"',
      '  mesh-search models     the model presets;   mesh-search devices     the hardware profiles',
      '',
      'A layout maps tensor dimensions (batch, length, memory_length, d_model, heads, d_kv, d_ff, vocab,',
      'layers; q_group in grouped-query models) to mesh axes as Mesh-TensorFlow writes it; layers on an',
      'axis makes pipeline stages.',
      'Bad input prints one line and exits 2.',
    ].join('\n'))
    .help()
    .alias('help', 'h')
    .version(false)
    .fail((msg, err) => {
      if (err) throw err;
      usageError = msg ?? 'bad command line';
      // Throwing stops yargs before it runs the command's handler.
      throw new InputError(usageError);
    });
  try {
    parser = await registerCommands(parser, argv);
    await parser.parseAsync();
  } catch (e) {
    if (usageError !== null) {
      // A usage error stops before the command; report it, not what followed from it.
    } else if (e instanceof InputError) {
      process.stderr.write(`mesh-search: ${e.message}\n`);
      return 2;
    } else {
      process.stderr.write(`mesh-search: internal error: ${(e as Error)?.stack ?? String(e)}\n`);
      return 1;
    }
  }
  if (usageError !== null) {
    process.stderr.write(`mesh-search: ${String(usageError).replace(/\s*\n\s*/g, ' ')} (see mesh-search --help)\n`);
    return 2;
  }
  return typeof process.exitCode === 'number' ? process.exitCode : 0;
}
