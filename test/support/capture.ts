import { main } from '../../src/cli/main.js';

// main() awaits its command's module, so calls would interleave their writes: they run one at a time.
let queue: Promise<unknown> = Promise.resolve();

/** Run the CLI's main() in this process, capturing what it writes and the exit code it returns. */
export function runMain(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const run = queue.then(() => runOne(args));
  queue = run.catch(() => undefined);
  return run;
}

async function runOne(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const out = process.stdout.write.bind(process.stdout);
  const err = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((chunk: string | Uint8Array) => { stdout += String(chunk); return true; }) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string | Uint8Array) => { stderr += String(chunk); return true; }) as typeof process.stderr.write;
  process.exitCode = undefined;
  try {
    const code = await main(args);
    return { code, stdout, stderr };
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
    process.exitCode = undefined;
  }
}
