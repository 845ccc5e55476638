import type { Estimate } from '../cost/estimate.js';
import { estimatePlan } from '../cost/estimatePlan.js';
import type { HardwareProfile } from '../cost/profile.js';
import { InputError } from '../errors.js';
import { MAX_AXES } from './space.js';
import { formatLayout, parseLayout } from '../layout/layout.js';
import { formatMesh, innerSize, makeMesh, type Mesh } from '../mesh/mesh.js';
import { buildGraph, type DimName } from '../model/graph.js';
import { makePlan } from '../lower/plan.js';
import { search, type SearchOptions, type SearchResult } from './search.js';

/**
 * The mesh shape as part of the search. The space is every mesh whose axes factor the device
 * count and respect the profile's levels (allowedMesh): an axis that crosses a level boundary
 * starts and ends on whole units of it. Every such mesh is a coarsening of one finest mesh (prime
 * axes, each inside one level's segment), and a layout on a coarse mesh is a layout on the finest
 * one (each coarse axis's dimensions on all its parts) with the same cost: a group of axes prices
 * as one axis of their product on the slowest of their links, which for an axis that crosses
 * levels is the level its span reaches. So the best plan over every mesh is the best plan on the
 * finest mesh, found by one exact search; it is reported on the coarsest mesh that runs it
 * (the axes of a level with the same dimensions merged).
 */
export interface DeviceSearchOptions extends Omit<SearchOptions, 'mesh'> {
  readonly devices: number;
}

export type DeviceSearchResult = SearchResult & { mesh: string };

/** The finite level units below the device count, innermost first. */
function units(devices: number, profile: HardwareProfile): { name: string; devices: number }[] {
  return profile.levels.filter((l) => !l.perThread && l.devices < devices).map((l) => ({ name: l.name, devices: l.devices }));
}

/** Whether a mesh respects the levels: an axis crossing a unit boundary covers whole units. */
export function allowedMesh(mesh: Mesh, profile: HardwareProfile): boolean {
  for (let i = 0; i < mesh.axes.length; i++) {
    const s = innerSize(mesh, i);
    const span = s * mesh.axes[i].size;
    for (const u of units(mesh.size, profile)) if (s < u.devices && u.devices < span && (u.devices % s !== 0 || span % u.devices !== 0)) return false;
  }
  return true;
}

function primes(n: number): number[] {
  const out: number[] = [];
  for (let p = 2; p * p <= n; p++) while (n % p === 0) { out.push(p); n /= p; }
  if (n > 1) out.push(n);
  return out;
}

/** Per level segment (innermost first): its name and its share of the devices. */
function segments(devices: number, profile: HardwareProfile): { name: string; size: number }[] {
  const us = units(devices, profile);
  for (let i = 1; i < profile.levels.length; i++) {
    const a = profile.levels[i - 1].link, b = profile.levels[i].link;
    const kinds = ['allreduce', 'allgather', 'reduce-scatter', 'all-to-all', 'send'] as const;
    const achieved = (l: typeof a, k: (typeof kinds)[number]) => l.bandwidth * (l.efficiency?.[k] ?? 1);
    if (kinds.some((k) => achieved(b, k) > achieved(a, k)) || b.latency < a.latency) {
      throw new InputError(`--devices needs network levels that get no faster outward; ${profile.name}'s ${profile.levels[i].name} is faster than its ${profile.levels[i - 1].name}`);
    }
  }
  const out: { name: string; size: number }[] = [];
  let inner = 1;
  for (const u of us) {
    if (u.devices % inner !== 0 || devices % u.devices !== 0) {
      throw new InputError(`--devices ${devices} is not a whole number of ${profile.name}'s ${u.name} units of ${u.devices} devices`);
    }
    out.push({ name: u.name, size: u.devices / inner });
    inner = u.devices;
  }
  const outer = profile.levels.find((l) => l.devices >= devices) ?? profile.levels[profile.levels.length - 1];
  out.push({ name: outer.name, size: devices / inner });
  return out;
}

/** The segment of a torus level (cost/torus.ts), where the order of the axes changes their links; -1 if none. */
function torusSegment(devices: number, profile: HardwareProfile): number {
  const segs = segments(devices, profile);
  const level = profile.levels.findIndex((l) => l.torus !== undefined);
  return level < 0 ? -1 : segs.findIndex((s) => s.name === profile.levels[level].name);
}

/** Every distinct order of a list of primes. */
function orders(ps: readonly number[]): number[][] {
  if (ps.length <= 1) return [[...ps]];
  const out: number[][] = [];
  for (const p of new Set(ps)) {
    const rest = [...ps];
    rest.splice(rest.indexOf(p), 1);
    for (const o of orders(rest)) out.push([p, ...o]);
  }
  return out;
}

/**
 * The finest mesh: prime axes, outer segments first; and each axis's segment index. `order`, for
 * the torus segment: its primes in this order (outer first) instead of ascending.
 */
export function finestMesh(devices: number, profile: HardwareProfile, order?: readonly number[]): { mesh: Mesh; segment: number[]; names: string[]; consecutive: number } {
  if (!Number.isSafeInteger(devices) || devices < 1) throw new InputError(`--devices must be a positive integer, got ${devices}`);
  const segs = segments(devices, profile);
  const torus = torusSegment(devices, profile);
  const axes: { name: string; size: number }[] = [];
  const segment: number[] = [];
  for (let k = segs.length - 1; k >= 0; k--) {
    for (const p of k === torus && order ? order : primes(segs[k].size)) {
      axes.push({ name: `s${k}_${axes.length}`, size: p });
      segment.push(k);
    }
  }
  if (axes.length === 0) { axes.push({ name: 's0_0', size: 1 }); segment.push(0); }
  // The mesh module's own limit, said in the terms the user gave.
  if (axes.length > MAX_AXES) {
    throw new InputError(`--devices ${devices} factors into ${axes.length} prime axes (${axes.map((a) => a.size).join('x')}); the search handles at most ${MAX_AXES}: give fewer devices, or a --mesh of merged axes`);
  }
  return { mesh: makeMesh(axes), segment, names: segs.map((s) => axisName(s.name)), consecutive: torus };
}

const axisName = (level: string) => {
  const t = level.replace(/[^A-Za-z0-9_]/g, '_');
  return /^[A-Za-z_]/.test(t) ? t : `l_${t}`;
};

/**
 * A plan on the finest mesh on the coarsest mesh that runs it: within each level segment, the
 * axes that split the same dimensions merge into one (named after the level). Outer segments
 * first; within a segment, merged axes in the order of their first part. On a torus segment only
 * neighbouring axes merge: an axis's place there decides which torus dimensions it spans.
 */
export function coarsen(fine: ReturnType<typeof finestMesh>, layout: string): { mesh: Mesh; layout: string; axisOf: ReadonlyMap<string, string> } {
  const parsed = parseLayout(layout);
  const dimsOf = fine.mesh.axes.map((a) => [...parsed].filter(([, axes]) => axes.includes(a.name)).map(([d]) => d).sort().join(','));
  const groups: { segment: number; key: string; size: number; dims: string }[] = [];
  // On the torus segment, each run of neighbouring axes with the same dimensions is a group of its own.
  let runs = 0;
  const run = fine.mesh.axes.map((_, i) => {
    if (i > 0 && (fine.segment[i - 1] !== fine.segment[i] || dimsOf[i - 1] !== dimsOf[i])) runs++;
    return fine.segment[i] === fine.consecutive ? runs : 0;
  });
  const keyOf = (i: number) => `${fine.segment[i]}|${dimsOf[i]}|${run[i]}`;
  fine.mesh.axes.forEach((a, i) => {
    const key = keyOf(i);
    const g = groups.find((x) => x.key === key);
    if (g) g.size *= a.size;
    else groups.push({ segment: fine.segment[i], key, size: a.size, dims: dimsOf[i] });
  });
  const perSegment = new Map<number, number>();
  for (const g of groups) perSegment.set(g.segment, (perSegment.get(g.segment) ?? 0) + 1);
  const seen = new Map<number, number>();
  const named = groups.map((g) => {
    const i = seen.get(g.segment) ?? 0;
    seen.set(g.segment, i + 1);
    const base = fine.names[g.segment];
    return { ...g, name: perSegment.get(g.segment)! > 1 ? `${base}${i}` : base };
  });
  const mesh = makeMesh(named.map((g) => ({ name: g.name, size: g.size })));
  const out = new Map<DimName, string[]>();
  for (const [d] of parsed) out.set(d, named.filter((g) => g.dims.split(',').includes(d)).map((g) => g.name));
  // Each fine axis's coarse axis: what a hybrid plan's zeroAxes become (its axes share a level, so a group).
  const axisOf = new Map(fine.mesh.axes.map((a, i) => [a.name, named.find((g) => g.key === keyOf(i))!.name]));
  return { mesh, layout: formatLayout(out), axisOf };
}

/**
 * Search every mesh of `devices` devices jointly with the plan: the best mesh and its plan. On a
 * torus, where the order of a slice's axes decides their links, one search per distinct order of
 * the slice's primes (one when they are all equal, as in every power-of-two slice), and the best of
 * them; its counts add up those searches' (a mesh two orders both reach counts in both).
 */
export async function searchDevices(opts: DeviceSearchOptions): Promise<DeviceSearchResult> {
  const torus = torusSegment(opts.devices, opts.profile);
  const ps = torus < 0 ? [] : primes(segments(opts.devices, opts.profile)[torus].size).reverse();
  const all = orders(ps);
  // A time limit is the whole search's: each order gets its share.
  const each = opts.timeLimit !== undefined ? { ...opts, timeLimit: opts.timeLimit / all.length } : opts;
  const results: DeviceSearchResult[] = [];
  for (const order of all) results.push(await searchOrder(each, torus < 0 ? undefined : order));
  if (results.length === 1) return results[0];
  const key = (e: Estimate) => (opts.objective === 'memory' ? [e.memory.total, e.time.step] : [e.time.step, e.memory.total]);
  const cmp = (a: Estimate, b: Estimate) => key(a)[0] - key(b)[0] || key(a)[1] - key(b)[1];
  // Two orders reach the meshes their merges share: one entry per mesh and plan.
  const once = (es: Estimate[]) => es.filter((e, i) => es.findIndex((f) => JSON.stringify([f.mesh, f.plan]) === JSON.stringify([e.mesh, e.plan])) === i);
  const bestOf = results.filter((r) => r.best).sort((a, b) => cmp(a.best!, b.best!))[0] ?? results[0];
  const sum = (f: (r: DeviceSearchResult) => number | undefined) => results.reduce((t, r) => t + (f(r) ?? 0), 0);
  const k = Math.max(...results.map((r) => r.top.length));
  // Each order's front reaches (1 + slack) × its own best; the whole space's, of the best of all.
  const cap = bestOf.best ? key(bestOf.best)[0] * (1 + (opts.paretoSlack ?? 0.25)) : Infinity;
  const pareto = once(results.flatMap((r) => r.pareto).filter((e) => key(e)[0] <= cap).sort(cmp)).filter((e, i, es) => es.slice(0, i).every((f) => key(f)[1] > key(e)[1]));
  const searched: SearchResult['searched'] = { ...bestOf.searched, plans: sum((r) => r.searched.plans), valid: sum((r) => r.searched.valid), feasible: sum((r) => r.searched.feasible), pruned: sum((r) => r.searched.pruned), seconds: sum((r) => r.searched.seconds), sequenceParallel: sum((r) => r.searched.sequenceParallel), hybrid: sum((r) => r.searched.hybrid) };
  delete searched.lowerBound;
  delete searched.gap;
  if (results.some((r) => r.searched.lowerBound !== undefined)) {
    // What no order has ruled out: the least of each order's proven bound (its best, where it finished).
    const best = bestOf.best ? key(bestOf.best)[0] : Infinity;
    const lowerBound = Math.min(...results.map((r) => r.searched.lowerBound ?? (r.best ? key(r.best)[0] : Infinity)));
    searched.lowerBound = lowerBound;
    searched.gap = best === Infinity ? Infinity : best / lowerBound - 1;
  }
  return { ...bestOf, top: once(results.flatMap((r) => r.top).sort(cmp)).slice(0, k), pareto, searched };
}

async function searchOrder(opts: DeviceSearchOptions, order: readonly number[] | undefined): Promise<DeviceSearchResult> {
  const fine = finestMesh(opts.devices, opts.profile, order);
  // Per-axis overrides name another mesh's axes: they do not apply to meshes made here.
  const profile: HardwareProfile = { ...opts.profile, axisLinks: undefined };
  const r = await search({ ...opts, mesh: fine.mesh, profile });
  const graph = buildGraph(opts.spec);
  const onCoarse = (e: Estimate): Estimate => {
    const c = coarsen(fine, e.plan.layout);
    const zeroAxes = e.plan.zeroAxes ? [...new Set(e.plan.zeroAxes.map((a) => c.axisOf.get(a)!))].join('+') : undefined;
    return estimatePlan(graph, c.mesh, makePlan(c.layout, { zero: e.plan.zero, zeroAxes, recompute: e.plan.recompute, microbatches: e.plan.microbatches, sequenceParallel: e.plan.sequenceParallel, virtualStages: e.plan.virtualStages }), profile);
  };
  const best = r.best ? onCoarse(r.best) : null;
  const result: DeviceSearchResult = {
    best, top: r.top.map(onCoarse), pareto: r.pareto.map(onCoarse), searched: r.searched,
    mesh: formatMesh(coarsen(fine, (r.best ?? r.closest)?.plan.layout ?? '').mesh),
  };
  if (r.closest) result.closest = onCoarse(r.closest);
  return result;
}
