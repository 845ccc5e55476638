#!/usr/bin/env node
// Regenerates the README's engine table and the engine commits checked, between marker comments,
// from src/engine's capabilities (built into dist/) and test/fixtures/engines. Run after `npm run build`.
import { readFileSync, writeFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { engineSection } from '../dist/engine/readme.js';

const root = new URL('..', import.meta.url);
const fixtures = Object.fromEntries(readdirSync(new URL('test/fixtures/engines/', root)).filter((f) => f.endsWith('.json'))
  .map((f) => [f.replace(/\.json$/, ''), JSON.parse(readFileSync(new URL(`test/fixtures/engines/${f}`, root), 'utf8'))]));
const path = fileURLToPath(new URL('README.md', root));
const readme = readFileSync(path, 'utf8');
const next = engineSection(readme, fixtures);
if (process.argv.includes('--check')) {
  if (next !== readme) { console.error('README.md: the engine table is stale; run npm run engine-table'); process.exit(1); }
} else {
  writeFileSync(path, next);
  console.log('README.md: engine table written');
}
