#!/usr/bin/env node
// `npm run bench`: runs every bench/*.bench.mjs in turn (against the compiled dist/), each
// printing JSON lines with ratios measured side by side in the same run.
import { readdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const only = process.argv.slice(2);
const files = readdirSync(here).filter((f) => f.endsWith('.bench.mjs')).sort()
  .filter((f) => only.length === 0 || only.some((o) => f.includes(o)));
// The benches that measure the simulated mesh run as `run`, `train` and `tune` do (bin/mesh-search.js
// starts those with --single-threaded-gc: src/runtime/gc.ts); bench/runtime starts its own processes.
const MEASURES_THE_MESH = new Set(['calibrate.bench.mjs', 'host.bench.mjs']);
let failed = 0;
for (const f of files) {
  process.stderr.write(`# ${f}\n`);
  const flags = ['--expose-gc', ...(MEASURES_THE_MESH.has(f) ? ['--single-threaded-gc'] : [])];
  const r = spawnSync(process.execPath, [...flags, join(here, f)], { stdio: 'inherit' });
  if (r.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
