import { check } from '../../errors.js';
import type { Estimate } from '../../cost/estimate.js';
import type { SearchResult } from '../../search/search.js';

/** DESIGN.md's search output, as the search makes it (one type; read back from JSON here). */
export type { SearchResult };

function checkEstimate(v: unknown, where: string): Estimate {
  check(typeof v === 'object' && v !== null && !Array.isArray(v), `${where}: expected an estimate object`);
  const e = v as Record<string, unknown>;
  for (const k of ['model', 'mesh', 'plan', 'memory', 'time', 'communication']) {
    check(typeof e[k] === 'object' && e[k] !== null, `${where}: an estimate needs "${k}"`);
  }
  const t = e.time as Record<string, unknown>;
  for (const k of ['compute', 'exposedCommunication', 'bubble', 'step']) {
    check(typeof t[k] === 'number', `${where}: time.${k} must be a number`);
  }
  check(typeof (e.memory as Record<string, unknown>).total === 'number', `${where}: memory.total must be a number`);
  check(typeof (e.plan as Record<string, unknown>).layout === 'string', `${where}: plan.layout must be a string`);
  check(Array.isArray((e.mesh as Record<string, unknown>).axes), `${where}: mesh.axes must be a list`);
  return v as Estimate;
}

/** Validate a saved `mesh-search --json` output; every failure names the field. */
export function parseSearchResult(value: unknown, where = 'search result'): SearchResult {
  check(typeof value === 'object' && value !== null && !Array.isArray(value), `${where}: expected { best, top, pareto, searched }`);
  const o = value as Record<string, unknown>;
  check(Array.isArray(o.top), `${where}: "top" must be a list of estimates`);
  check(Array.isArray(o.pareto), `${where}: "pareto" must be a list of estimates`);
  check(typeof o.searched === 'object' && o.searched !== null, `${where}: "searched" must be an object`);
  const top = (o.top as unknown[]).map((e, i) => checkEstimate(e, `${where}: top[${i}]`));
  const pareto = (o.pareto as unknown[]).map((e, i) => checkEstimate(e, `${where}: pareto[${i}]`));
  const best = o.best === null || o.best === undefined ? null : checkEstimate(o.best, `${where}: best`);
  const closest = o.closest === undefined || o.closest === null ? undefined : checkEstimate(o.closest, `${where}: closest`);
  const s = o.searched as Record<string, unknown>;
  const num = (k: string) => (typeof s[k] === 'number' ? (s[k] as number) : 0);
  return {
    best, top, pareto, ...(closest ? { closest } : {}),
    searched: { plans: num('plans'), valid: num('valid'), feasible: num('feasible'), pruned: num('pruned'), seconds: num('seconds'), workers: num('workers'), sequenceParallel: num('sequenceParallel') },
  };
}

/** One line per plan: equal plans print equally. */
export function planKey(e: Estimate): string {
  return `${e.plan.layout}|${e.plan.zero}|${e.plan.recompute}|${e.plan.microbatches}`;
}
