#!/usr/bin/env node
// `npm ci` (the prepare script) compiles the CLI to dist/ and bundles it to dist/bundle/ (fewer
// files to load: a faster start). This shim loads the bundle, or dist/cli/main.js where the
// bundle is missing or older than the compiled sources (tsc run without scripts/bundle.mjs).
import { statSync } from 'node:fs';

// The commands that run the simulated mesh run in a node started with --single-threaded-gc: V8's
// GC helper threads would take cores from the devices' threads (src/runtime/gc.ts says how much).
// The flag works only from the start, so the shim starts node again for them, once. The names
// are src/runtime/gc.ts's SINGLE_THREADED_GC and PARALLEL_GC_ENV.
const RUNS_THE_MESH = new Set(['run', 'train', 'tune']);
const args = process.argv.slice(2);
if (RUNS_THE_MESH.has(args[0]) && !process.execArgv.includes('--single-threaded-gc') && !process.env.MESH_SEARCH_PARALLEL_GC) {
  const [{ spawn }, { fileURLToPath }] = await Promise.all([import('node:child_process'), import('node:url')]);
  const child = spawn(process.execPath, [...process.execArgv, '--single-threaded-gc', fileURLToPath(import.meta.url), ...args], { stdio: 'inherit' });
  // A signal sent to this process alone (timeout, a job manager) reaches the run as well.
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, () => child.kill(s));
  child.on('error', (e) => {
    process.stderr.write(`mesh-search: could not start node again with --single-threaded-gc: ${e.message}\n`);
    process.exit(1);
  });
  child.on('exit', (code, signal) => {
    for (const s of signals) process.removeAllListeners(s);
    if (signal) process.kill(process.pid, signal);
    else process.exit(code ?? 1);
  });
} else {
  const mtime = (path) => {
    try {
      return statSync(new URL(path, import.meta.url)).mtimeMs;
    } catch {
      return -1;
    }
  };
  const bundled = mtime('../dist/bundle/main.js') >= Math.max(0, mtime('../dist/cli/main.js'));
  const { main } = await import(bundled ? '../dist/bundle/main.js' : '../dist/cli/main.js');
  main(args).then((code) => { process.exitCode = code; });
}
