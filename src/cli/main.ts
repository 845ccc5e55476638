import yargs, { type Argv } from 'yargs';
import { InputError } from '../errors.js';
import { registerCommands } from './commands/index.js';

/**
 * The command line. Bad input of any kind (a flag, a file, a layout) prints one line on stderr
 * and returns 2; a bug prints its stack and returns 1.
 */
export async function main(argv: string[]): Promise<number> {
  let usageError: string | null = null;
  let parser: Argv = yargs(attachDashValues(argv))
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
      process.stderr.write(`mesh-search: ${oneLine(e.message)}\n`);
      return 2;
    } else {
      process.stderr.write(`mesh-search: internal error: ${(e as Error)?.stack ?? String(e)}\n`);
      return 1;
    }
  }
  if (usageError !== null) {
    process.stderr.write(`mesh-search: ${oneLine(String(usageError).replace(/\s*\n\s*/g, ' '))} (see mesh-search --help)\n`);
    return 2;
  }
  return typeof process.exitCode === 'number' ? process.exitCode : 0;
}

/** An error is one line: a newline the user typed (in a layout, say) is shown as \\n. */
export function oneLine(message: string): string {
  return message.replace(/\r\n|\r|\n/g, '\\n');
}

/**
 * `--mesh -2x4` is a value that starts with a dash: yargs would read it as the short flags -2, -x
 * and -4. A `--flag` followed by a word starting with a dash and a digit takes it as its value.
 */
export function attachDashValues(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = argv[i + 1];
    if (/^--[A-Za-z][\w-]*$/.test(a) && next !== undefined && /^-[0-9.]/.test(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else {
      out.push(a);
    }
  }
  return out;
}
