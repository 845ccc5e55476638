import type { Argv, CommandModule } from 'yargs';

/**
 * Every subcommand registers here, one line each, in the order `--help` lists them. Each is
 * imported only when the command line may run it (tfjs, vega and the calibrator cost most of a
 * start: bench/search measures it); `--help` and a command line naming none load them all.
 */
type Loader = () => Promise<CommandModule<object, never>>;
const COMMANDS: readonly (readonly [readonly string[], Loader])[] = [
  [['search', '$0'], async () => (await import('./search.js')).searchCommand as CommandModule<object, never>],
  [['estimate'], async () => (await import('./estimate.js')).estimateCommand as CommandModule<object, never>],
  [['models'], async () => (await import('./models.js')).modelsCommand as CommandModule<object, never>],
  [['devices'], async () => (await import('./devices.js')).devicesCommand as CommandModule<object, never>],
  [['export'], async () => (await import('./export.js')).exportCommand as CommandModule<object, never>],
  [['report'], async () => (await import('./report.js')).reportCommand as CommandModule<object, never>],
  [['calibrate'], async () => (await import('./calibrate.js')).calibrateCommand as CommandModule<object, never>],
  [['tune'], async () => (await import('./tune.js')).tuneCommand as CommandModule<object, never>],
  [['validate'], async () => (await import('./validate.js')).validateCommand as CommandModule<object, never>],
  [['run'], async () => (await import('./run.js')).runCommand as CommandModule<object, never>],
  [['train'], async () => (await import('./train.js')).trainCommand as CommandModule<object, never>],
];

/**
 * The commands `argv` can run: the default (search) and every command whose name appears as a
 * word of it. Registering a superset of what yargs would pick parses the same; help needs all.
 */
function needed(argv: readonly string[]): (names: readonly string[]) => boolean {
  if (argv.some((a) => a === '--help' || a === '-h')) return () => true;
  const words = new Set(argv);
  return (names) => names.some((n) => n === '$0' || words.has(n));
}

export async function registerCommands(y: Argv, argv: readonly string[]): Promise<Argv> {
  const want = needed(argv);
  const modules = await Promise.all(COMMANDS.filter(([names]) => want(names)).map(([, load]) => load()));
  for (const m of modules) y = y.command(m);
  return y;
}
