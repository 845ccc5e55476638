// After tsc: the command line as one ES module bundle (dist/bundle/main.js), so that a run loads a
// few files instead of ~100 (module loading was most of a short run's time: bench/search's startup
// case). Each lazily imported command stays its own chunk; packages that load files by path
// (tfjs and its wasm, piscina's worker, vega, highs) and yaml (CommonJS that requires
// node builtins, which an ES bundle cannot) stay outside. Worker threads still run dist/.
// dist/bundle/meta.json (esbuild's metafile) says which dist modules each chunk holds.
import { build } from 'esbuild';
import { rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const outdir = `${root}dist/bundle`;
rmSync(outdir, { recursive: true, force: true });
const result = await build({
  absWorkingDir: root,
  entryPoints: ['dist/cli/main.js'],
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: ['@tensorflow/*', 'piscina', 'vega', 'vega-lite', 'highs', 'yaml'],
  metafile: true,
  logLevel: 'warning',
});
writeFileSync(`${outdir}/meta.json`, JSON.stringify(result.metafile));
