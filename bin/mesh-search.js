#!/usr/bin/env node
// `npm ci` (the prepare script) compiles the CLI to dist/ and bundles it to dist/bundle/ (fewer
// files to load: a faster start). This shim loads the bundle, or dist/cli/main.js where the
// bundle is missing or older than the compiled sources (tsc run without scripts/bundle.mjs).
import { statSync } from 'node:fs';

const mtime = (path) => {
  try {
    return statSync(new URL(path, import.meta.url)).mtimeMs;
  } catch {
    return -1;
  }
};
const bundled = mtime('../dist/bundle/main.js') >= Math.max(0, mtime('../dist/cli/main.js'));
const { main } = await import(bundled ? '../dist/bundle/main.js' : '../dist/cli/main.js');

main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
