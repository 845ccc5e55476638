import { writeFileSync } from 'node:fs';
import type { Estimate } from '../../cost/estimate.js';
import { fmtBytes } from '../../cost/price.js';
import { InputError } from '../../errors.js';
import { findPreset, getPreset } from '../../model/presets.js';
import type { ModelSpec } from '../../model/spec.js';
import { meshChart, paretoChart, timeChart } from './charts.js';
import { renderSvg } from './render.js';
import type { SearchResult } from './result.js';

export { parseSearchResult, type SearchResult } from './result.js';

export interface ReportOptions {
  /** The model the search ran on: draws its weights. Defaults to the preset named by the estimates. */
  spec?: ModelSpec;
  title?: string;
  /** How many of the top plans the bar chart and the table show. */
  top?: number;
}

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

function seconds(s: number): string {
  return s >= 1 ? `${s.toFixed(3)} s` : `${(s * 1e3).toFixed(2)} ms`;
}

function planTable(plans: Estimate[]): string {
  const head = ['#', 'layout', 'zero', 'recompute', 'microbatches', 'step', 'MFU', 'memory / device', 'tokens/s', 'feasible'];
  const rows = plans.map((e, i) => [
    String(i + 1), `<code>${esc(e.plan.layout || '(replicated)')}</code>`, String(e.plan.zero), e.plan.recompute, String(e.plan.microbatches),
    seconds(e.time.step), `${(e.mfu * 100).toFixed(1)}%`, fmtBytes(e.memory.total), Math.round(e.tokensPerSecond).toLocaleString('en-US'), e.feasible ? 'yes' : 'no',
  ]);
  return `<table class="plans"><thead><tr>${head.map((h) => `<th>${h}</th>`).join('')}</tr></thead><tbody>${rows
    .map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join('')}</tr>`).join('')}</tbody></table>`;
}

/** One self-contained HTML page (inline SVG, no scripts) describing a search result. */
export async function renderReport(result: SearchResult, opts: ReportOptions = {}): Promise<string> {
  const best = result.best ?? result.top[0] ?? result.closest ?? null;
  if (!best) throw new InputError('the search result has no plan to report: best, top and closest are empty');
  const spec = opts.spec ?? findPreset(best.model.name);
  const top = result.top.slice(0, opts.top ?? 10);
  const [pareto, time, mesh] = await Promise.all([
    renderSvg(paretoChart(result)),
    renderSvg(timeChart(result, opts.top ?? 8)),
    // An unknown model is drawn with a preset's weights of the same structure: the split depends only on their dims.
    (async () => {
      const chart = meshChart(best, spec ?? getPreset('tiny'));
      return chart ? renderSvg(chart) : '<p>(the mesh has more than 4096 devices: not drawn)</p>';
    })(),
  ]);
  const s = result.searched;
  const title = opts.title ?? `mesh-search: ${best.model.name} on ${best.mesh.axes.map((a) => `${a.name}:${a.size}`).join(';')}`;
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
h1{font-size:1.5em} h2{font-size:1.15em;margin-top:2em}
figure{margin:1em 0} figcaption{color:#555;font-size:.9em}
table.plans{border-collapse:collapse;font-size:.9em} table.plans td,table.plans th{border:1px solid #ccc;padding:.25em .5em;text-align:right}
table.plans td:nth-child(2){text-align:left} code{font-size:.95em}
</style></head><body>
<h1>${esc(title)}</h1>
<p>${result.best ? 'Best plan' : 'No plan fits in memory; the closest'}: <code>${esc(best.plan.layout || '(replicated)')}</code>, zero ${best.plan.zero}, recompute ${best.plan.recompute}, ${best.plan.microbatches} microbatch${best.plan.microbatches === 1 ? '' : 'es'} on ${esc(best.device)}:
step ${seconds(best.time.step)}, MFU ${(best.mfu * 100).toFixed(1)}%, ${fmtBytes(best.memory.total)} per device of ${fmtBytes(best.memory.capacity)}.</p>
<p>Searched ${s.plans} plans (${s.valid} valid, ${s.feasible} feasible, ${s.pruned} pruned) in ${s.seconds.toFixed(1)} s on ${s.workers} workers; ${result.pareto.length} on the Pareto front.</p>
<h2>Pareto front</h2>
<figure id="pareto">${pareto}<figcaption>Blue: the ${result.pareto.length} Pareto-optimal plans (no other plan is both faster and smaller); grey: other plans kept; orange diamond: the best plan; dashed red: device memory.</figcaption></figure>
<h2>The mesh and the best plan's weights</h2>
<figure id="mesh">${mesh}<figcaption>One panel per weight; each cell is a device, coloured by which shard of the weight it holds (one colour: replicated).${spec ? '' : ' The model is not a preset: a preset\'s weights of the same structure are drawn.'}</figcaption></figure>
<h2>Where the step time goes</h2>
<figure id="time">${time}<figcaption>Compute, communication not hidden behind compute (split across axes in proportion to the bytes each carries), and pipeline bubble.</figcaption></figure>
<h2>Top plans</h2>
${planTable(top)}
</body></html>
`;
}

/** Write the report of a search result to `path` (what `--report report.html` calls). */
export async function writeReport(result: SearchResult, path: string, opts: ReportOptions = {}): Promise<void> {
  const html = await renderReport(result, opts);
  try {
    writeFileSync(path, html);
  } catch (e) {
    throw new InputError(`cannot write the report to ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}
