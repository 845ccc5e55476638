import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { estimatePlan } from '../src/cost/estimatePlan.js';
import { getDevice } from '../src/cost/presets.js';
import { parseSearchResult, renderReport, type SearchResult } from '../src/export/report/report.js';
import { makePlan } from '../src/lower/plan.js';
import { parseMesh } from '../src/mesh/mesh.js';
import { buildGraph } from '../src/model/graph.js';
import { getPreset } from '../src/model/presets.js';
import { runMain } from './support/capture.js';
import { searchResultFixture } from './support/searchResult.js';

/** The marks vega drew for one named vega-lite layer: the paths of its symbol group. */
function marksOf(svg: string, name: string): number {
  const start = svg.indexOf(`role-mark ${name}_marks"`);
  if (start < 0) return 0;
  const group = svg.slice(start, svg.indexOf('</g>', start));
  return group.split('<path').length - 1;
}

const dir = mkdtempSync(join(tmpdir(), 'mesh-search-report-'));
const result = searchResultFixture();

describe('the HTML report', () => {
  it('draws one Pareto point per Pareto plan, the best plan once, and a row per top plan', async () => {
    expect(result.pareto.length).toBeGreaterThanOrEqual(3);
    const html = await renderReport(result);
    expect(marksOf(html, 'pareto')).toBe(result.pareto.length);
    expect(marksOf(html, 'best')).toBe(1);
    expect(marksOf(html, 'plans')).toBe(new Set([...result.top, ...result.pareto].map((e) => JSON.stringify(e.plan))).size);
    expect(html.match(/<tr>/g)!.length).toBe(1 + result.top.length);
    expect(html).toContain(`Searched ${result.searched.plans} plans`);
  });

  it('is one self-contained page: inline SVG charts, no scripts, nothing fetched', async () => {
    const html = await renderReport(result);
    expect(html.match(/<svg /g)!.length).toBe(3);
    expect(html).not.toMatch(/<script|<link |src=|@import/i);
  });

  it("draws the mesh with how the paper's plan splits each weight", async () => {
    const html = await renderReport(result);
    expect(html).toContain('decoder.ffn.w1');
    expect(html).toMatch(/\[vocab, d_model\]: 32 shards/);
    expect(html).toMatch(/\[length, d_model\]: replicated/);
    // 9 weights of 16x32 devices each.
    expect(html.split('role-mark devices').length - 1).toBe(9);
    const group = html.slice(html.indexOf('role-mark devices'));
    expect(group.slice(0, group.indexOf('</g>')).split('<path').length - 1).toBe(512);
  });

  it('splits weights over pipeline stages too, and stacks the bubble for a pipelined plan', async () => {
    const graph = buildGraph(getPreset('llama2-7b'));
    const e = estimatePlan(graph, parseMesh('2x4x8'), makePlan('layers:x;batch:y;d_ff:z;heads:z;vocab:z', { microbatches: 8 }), getDevice('h100-sxm'));
    const r: SearchResult = { best: e, top: [e], pareto: [e], searched: { plans: 1, valid: 1, feasible: 1, pruned: 0, seconds: 0, workers: 0, sequenceParallel: 0 } };
    const html = await renderReport(r);
    expect(e.time.bubble).toBeGreaterThan(0);
    expect(html).toMatch(/\[d_model, d_ff, layers\]: 16 shards/);
    expect(html).toMatch(/\[vocab, d_model\]: 8 shards/);
    expect(html).toContain('bubble');
  });

  it('refuses a result that is not a search result, naming the field', () => {
    expect(() => parseSearchResult({ top: [], pareto: 3, searched: {} })).toThrow(/"pareto" must be a list/);
    expect(() => parseSearchResult({ best: { model: {} }, top: [], pareto: [], searched: {} })).toThrow(/best: an estimate needs "mesh"/);
    expect(() => parseSearchResult(JSON.parse(JSON.stringify(result)))).not.toThrow();
  });
});

describe('mesh-search report', () => {
  it('writes the report of a saved search result', async () => {
    const from = join(dir, 'result.json');
    writeFileSync(from, JSON.stringify(result));
    const out = join(dir, 'from.html');
    const r = await runMain(['report', '--from', from, '--out', out]);
    expect(r.code).toBe(0);
    expect(marksOf(readFileSync(out, 'utf8'), 'pareto')).toBe(result.pareto.length);
  });

  it('runs the search itself given a mesh and a model', async () => {
    const out = join(dir, 'searched.html');
    const r = await runMain(['report', '--mesh', '2x2', '--model', 'tiny', '--workers', '0', '--out', out]);
    expect(r.stderr).toMatch(/wrote the report/);
    expect(r.code).toBe(0);
    expect(readFileSync(out, 'utf8')).toMatch(/mesh-search: tiny on rows:2;cols:2/);
  });

  it('exits 2 on a missing or malformed input, writing nothing', async () => {
    const out = join(dir, 'never.html');
    expect((await runMain(['report', '--out', out])).code).toBe(2);
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ top: 'no' }));
    const r = await runMain(['report', '--from', bad, '--out', out]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/"top" must be a list of estimates/);
    expect(existsSync(out)).toBe(false);
  });
});
