import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve, dirname } from 'node:path';
import { describe, expect, it } from 'vitest';

/** Imports point down (DESIGN.md): each folder of src/ and what it may never import. */
const EDGES = ['runtime', 'calibrate', 'export', 'cli'];
const FORBIDDEN: Record<string, string[]> = {
  mesh: [...EDGES, 'inputs', 'search', 'cost', 'lower'], model: [...EDGES, 'inputs', 'search', 'cost', 'lower'],
  layout: [...EDGES, 'inputs', 'search', 'cost', 'lower'], lower: [...EDGES, 'inputs', 'search', 'cost'],
  cost: [...EDGES, 'inputs', 'search'], search: [...EDGES, 'inputs'], inputs: EDGES,
  runtime: ['calibrate', 'export', 'cli'], calibrate: ['export', 'cli'], export: ['cli'],
};

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

describe('the layers of src/', () => {
  it('import only downwards: the input validation is a leaf below every stage that reads files', () => {
    const src = resolve('src');
    const up: string[] = [];
    for (const f of files(src)) {
      const from = relative(src, f).split('/')[0];
      for (const m of readFileSync(f, 'utf8').matchAll(/(?:from|import\()\s*'(\.[^']+)'/g)) {
        const to = relative(src, resolve(dirname(f), m[1])).split('/')[0];
        if ((FORBIDDEN[from] ?? []).includes(to)) up.push(`${relative(src, f)} imports ${m[1]}`);
      }
    }
    expect(up).toEqual([]);
  });
});
