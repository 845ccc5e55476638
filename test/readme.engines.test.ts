import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { engineSection } from '../src/engine/index.js';

describe('README engine table', () => {
  it('is the one scripts/engine-table.mjs generates from src/engine and the fixtures (npm run engine-table)', () => {
    const root = new URL('..', import.meta.url);
    const dir = new URL('test/fixtures/engines/', root);
    const fixtures = Object.fromEntries(readdirSync(dir).filter((f) => f.endsWith('.json'))
      .map((f) => [f.replace(/\.json$/, ''), JSON.parse(readFileSync(new URL(f, dir), 'utf8'))]));
    const readme = readFileSync(new URL('README.md', root), 'utf8');
    expect(engineSection(readme, fixtures)).toBe(readme);
    for (const f of Object.values(fixtures)) expect(readme).toContain((f as { commit: string }).commit);
  });
});
