import type { CommandModule } from 'yargs';
import type { Estimate } from '../../cost/estimate.js';
import { estimatePlan } from '../../cost/estimatePlan.js';
import { DEFAULT_DEVICE } from '../../cost/presets.js';
import { InputError } from '../../errors.js';
import { formatMesh, type Mesh } from '../../mesh/mesh.js';
import { buildGraph } from '../../model/graph.js';
import { findPreset } from '../../model/presets.js';
import type { ModelSpec } from '../../model/spec.js';
import { makePlan, planFromJson } from '../../lower/plan.js';
import { search, searchDevices, SearchFailed, type Objective, type Progress, type SearchResult } from '../../search/index.js';
import { CAPABILITIES, ENGINES, isEngine, modelProblems, type Engine } from '../../engine/index.js';
import type { HardwareProfile } from '../../cost/profile.js';
import { fmtBytes, fmtCount, fmtParams, fmtSeconds, table } from '../format.js';
import { availableParallelism } from 'node:os';
import { checkWritable, enumFlag, writeAtomic, intFlag, loadDevice, loadMesh, loadModel, workersFlag, withNodeSize } from '../../inputs/index.js';

interface Args {
  mesh?: string;
  devices?: number;
  timeLimit?: number;
  model?: string;
  device: string;
  nodeSize?: string;
  top: string;
  workers?: string;
  objective: string;
  json?: boolean;
  out?: string;
  explain?: boolean;
  report?: string;
  engine?: string;
  export?: string;
}

/** The layout of the Mesh-TF paper's Transformer experiments (Shazeer et al. 2018, Sec. 5), on a 2-D mesh. */
export function paperLayout(spec: ModelSpec, mesh: Mesh): string | null {
  if (!spec.name.startsWith('mtf-') || mesh.axes.length !== 2) return null;
  const [r, c] = mesh.axes.map((a) => a.name);
  return `batch:${r};d_ff:${c};heads:${c};vocab:${c}`;
}

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

function planRow(i: number, e: Estimate): string[] {
  return [
    String(i + 1), e.plan.layout || '(replicated)', e.plan.zeroAxes ? `${e.plan.zero} over ${e.plan.zeroAxes.join('+')}` : String(e.plan.zero), e.plan.recompute, String(e.plan.microbatches),
    e.plan.sequenceParallel ? 'yes' : '-', fmtSeconds(e.time.step), pct(e.mfu), fmtBytes(e.memory.total), fmtBytes(e.communication.bytesPerDevice),
  ];
}

const HEADER = ['#', 'layout', 'zero', 'recompute', 'microbatches', 'seq-par', 'step', 'MFU', 'memory/device', 'sent/device'];

/** Where the best beats the runner-up, term by term (positive: the best is lower). */
export function explain(best: Estimate, next: Estimate): string {
  const terms: [string, number, number, (x: number) => string][] = [
    ['step time', best.time.step, next.time.step, fmtSeconds],
    ['  compute', best.time.compute, next.time.compute, fmtSeconds],
    ['  exposed communication', best.time.exposedCommunication, next.time.exposedCommunication, fmtSeconds],
    ['  pipeline bubble', best.time.bubble, next.time.bubble, fmtSeconds],
    ['communication (hidden or not)', best.time.communication, next.time.communication, fmtSeconds],
    ['bytes sent per device', best.communication.bytesPerDevice, next.communication.bytesPerDevice, fmtBytes],
    ['matmul FLOPs per device', best.flops.perDevice, next.flops.perDevice, fmtCount],
    ['memory per device', best.memory.total, next.memory.total, fmtBytes],
    ['  parameters', best.memory.params, next.memory.params, fmtBytes],
    ['  gradients', best.memory.gradients, next.memory.gradients, fmtBytes],
    ['  optimizer state', best.memory.optimizer, next.memory.optimizer, fmtBytes],
    ['  activations', best.memory.activations, next.memory.activations, fmtBytes],
    ['  temporary', best.memory.temporary, next.memory.temporary, fmtBytes],
  ];
  const rows = terms.map(([name, a, b, f]) => {
    const d = b - a;
    const verdict = d > 0 ? 'best wins' : d < 0 ? 'runner-up wins' : 'equal';
    return [name, f(a), f(b), d === 0 ? '0' : `${d > 0 ? '-' : '+'}${f(Math.abs(d))}`, verdict];
  });
  return [
    `best:      ${best.plan.layout || '(replicated)'} zero ${best.plan.zero} recompute ${best.plan.recompute} microbatches ${best.plan.microbatches}`,
    `runner-up: ${next.plan.layout || '(replicated)'} zero ${next.plan.zero} recompute ${next.plan.recompute} microbatches ${next.plan.microbatches}`,
    table(['term', 'best', 'runner-up', 'best vs runner-up', ''], rows),
  ].join('\n');
}

function noFeasible(r: SearchResult): string {
  const c = r.closest!;
  const over = c.memory.total - c.memory.capacity;
  return [
    `no feasible plan: every one of the ${r.searched.valid.toLocaleString('en-US')} valid plans needs more memory per device than the ${c.device}'s ${fmtBytes(c.memory.capacity)} (the binding constraint is memory capacity).`,
    `closest plan (least memory): ${c.plan.layout || '(replicated)'} zero ${c.plan.zero} recompute ${c.plan.recompute} microbatches ${c.plan.microbatches}`,
    `  needs ${fmtBytes(c.memory.total)} per device, ${fmtBytes(over)} (${over} bytes) over capacity: params ${fmtBytes(c.memory.params)}, gradients ${fmtBytes(c.memory.gradients)}, optimizer ${fmtBytes(c.memory.optimizer)}, activations ${fmtBytes(c.memory.activations)}, temporary ${fmtBytes(c.memory.temporary)}`,
    `  it needs a larger mesh or a device with more memory.`,
  ].join('\n') + '\n';
}

/** The human answer: what was searched, the top plans, the paper's layout, the Pareto front. */
export function formatSearch(r: SearchResult, ctx: { spec: ModelSpec; mesh: Mesh; objective: Objective; paper: Estimate | null; paperLayout: string | null; explain: boolean; engine?: Engine }): string {
  const s = r.searched;
  const any = r.best ?? r.closest!;
  const lines = [
    `${ctx.spec.name} (${fmtParams(any.model.params)} parameters) on ${formatMesh(ctx.mesh)} (${ctx.mesh.size} devices), ${any.device}: ${ctx.objective === 'time' ? 'least step time' : 'least memory per device'}${ctx.engine ? `, plans ${CAPABILITIES[ctx.engine].title} can express` : ''}`,
    `searched ${s.valid.toLocaleString('en-US')} valid plans of ${s.plans.toLocaleString('en-US')} in ${s.seconds.toFixed(2)} s on ${s.workers === 0 ? 'the main thread' : `${s.workers} worker${s.workers === 1 ? '' : 's'}`}: ` +
      `${(s.valid - s.pruned).toLocaleString('en-US')} priced${s.sequenceParallel || s.hybrid ? ` (and ${[s.sequenceParallel ? `${s.sequenceParallel.toLocaleString('en-US')} sequence-parallel` : '', s.hybrid ? `${s.hybrid.toLocaleString('en-US')} hybrid-sharded` : ''].filter(Boolean).join(' and ')} variants beside them)` : ''}, ${s.pruned.toLocaleString('en-US')} pruned by bounds and symmetry${ctx.engine ? ` or outside ${CAPABILITIES[ctx.engine].title}` : ''}, ${s.feasible.toLocaleString('en-US')} of those priced fit in memory`,
    '',
  ];
  if (!r.best) return lines.join('\n') + '\n' + noFeasible(r);
  lines.push(table(HEADER, r.top.map((e, i) => planRow(i, e))));
  if (ctx.paperLayout) {
    const p = ctx.paper!;
    const b = r.best;
    let verdict: string;
    if (!p.valid) verdict = `not valid on this mesh (${p.reasons[0]})`;
    else if (!p.feasible) verdict = `does not fit: ${fmtBytes(p.memory.total)} per device of ${fmtBytes(p.memory.capacity)}; the best plan fits in ${fmtBytes(b.memory.total)}`;
    else if (ctx.objective === 'time') verdict = `step ${fmtSeconds(p.time.step)}, MFU ${pct(p.mfu)}, ${fmtBytes(p.memory.total)} per device: the best plan is ${(p.time.step / b.time.step).toFixed(2)}x as fast (${fmtSeconds(b.time.step)})`;
    else verdict = `${fmtBytes(p.memory.total)} per device, step ${fmtSeconds(p.time.step)}: the best plan needs ${(b.memory.total / p.memory.total * 100).toFixed(1)}% of its memory (${fmtBytes(b.memory.total)})`;
    lines.push('', `the paper's layout ${ctx.paperLayout} (zero 0, no recompute, 1 microbatch): ${verdict}`);
  }
  if (r.pareto.length > 1) {
    lines.push('', `Pareto front of step time and memory (plans within 25% of the best on the objective):`,
      table(HEADER, r.pareto.map((e, i) => planRow(i, e))));
  }
  if (ctx.explain) {
    lines.push('');
    if (r.top.length > 1) lines.push(explain(r.best, r.top[1]));
    else lines.push('no runner-up to compare with (--top 1, or a single feasible plan)');
  }
  return lines.join('\n') + '\n';
}

/** Progress waits this long: a quick search prints nothing but its answer. */
export const PROGRESS_AFTER_MS = 2000;

/**
 * Progress on stderr once a search has run PROGRESS_AFTER_MS: the fraction decided, layouts
 * examined, the proven bound and the best so far. On a terminal one line redrawn ten times a
 * second; otherwise a line every 5 s. Never on stdout.
 */
function progressReporter(objective: Objective, tty: boolean): { onProgress: (p: Progress) => void; shown: () => boolean } {
  const start = Date.now();
  let last = 0;
  let shown = false;
  const fmt = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? '-' : objective === 'time' ? fmtSeconds(x) : fmtBytes(x));
  return {
    shown: () => shown,
    onProgress: (p) => {
      const now = Date.now();
      if (now - start < PROGRESS_AFTER_MS || p.fraction >= 1) return;
      if (now - last < (tty ? 100 : 5000)) return;
      last = now;
      shown = true;
      const width = 20;
      const filled = Math.round(p.fraction * width);
      const line = `[${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${(p.fraction * 100).toFixed(0).padStart(3)}%  ${fmtCount(p.examined ?? 0)} layouts examined, bound ${fmt(p.bound)}, best ${fmt(p.best)}`;
      process.stderr.write(tty ? `\r${line}\x1b[K` : `mesh-search: ${line}\n`);
    },
  };
}

export const searchCommand: CommandModule<object, Args> = {
  command: ['$0', 'search'],
  describe: 'Find the best plan (layout, ZeRO, recompute, microbatches) for a model on a mesh: the default command',
  builder: (y) =>
    y
      .option('mesh', { type: 'string', describe: 'mesh shape: 16x32, 4x4x4x8 or rows:16;cols:32' })
      .option('devices', { type: 'number', describe: 'instead of --mesh: the device count; every mesh shape that respects the network levels is searched too' })
      .option('time-limit', { type: 'number', describe: 'stop after this many seconds with the best plan found and its proven gap' })
      .option('model', { type: 'string', describe: 'model preset (mesh-search models) or JSON spec file' })
      .option('device', { type: 'string', default: DEFAULT_DEVICE, describe: 'hardware preset (mesh-search devices) or profile JSON' })
      .option('node-size', { type: 'string', describe: "devices in the profile's innermost network level (72 for an NVL72 rack, a TPU slice's chips)" })
      .option('top', { type: 'string', default: '5', describe: 'how many plans to show' })
      .option('workers', { type: 'string', describe: 'worker threads (0: run inline); default: inline, then one per core if the search runs past 1 s' })
      .option('objective', { type: 'string', default: 'time', choices: ['time', 'memory'], describe: 'least step time (among plans that fit) or least memory' })
      .option('json', { type: 'boolean', describe: 'print one JSON object on stdout: {best, top, pareto, searched}' })
      .option('out', { type: 'string', describe: 'write the best plan to this file (estimate/run/train/export --plan read it)' })
      .option('explain', { type: 'boolean', describe: 'show where the best plan beats the runner-up, term by term' })
      .option('report', { type: 'string', describe: 'also write a self-contained HTML report of the search to this file' })
      .option('engine', { type: 'string', choices: ENGINES as unknown as string[], describe: 'search only the plans this training engine can express, priced as it runs them (mesh-search README: what each engine can express)' })
      .option('export', { type: 'string', choices: ENGINES as unknown as string[], describe: "print the best plan as this engine's configuration (implies --engine of the same name unless given)" }),
  handler: async (args) => {
    if (args.mesh !== undefined && args.devices !== undefined) throw new InputError('give --mesh or --devices, not both');
    if (args.mesh === undefined && args.devices === undefined) throw new InputError('--mesh is required (like --mesh 16x32), or --devices N to search the mesh shape too');
    if (args.model === undefined) throw new InputError('--model is required (a preset from mesh-search models, or a JSON spec file)');
    if (args.devices !== undefined && (!Number.isSafeInteger(args.devices) || args.devices < 1)) throw new InputError(`--devices must be a positive integer, got ${args.devices}`);
    if (args.timeLimit !== undefined && !(Number.isFinite(args.timeLimit) && args.timeLimit > 0)) throw new InputError(`--time-limit must be a positive number of seconds, got ${args.timeLimit}`);
    const spec = loadModel(args.model);
    const profile = withNodeSize(loadDevice(args.device), args.nodeSize);
    let mesh: Mesh = args.mesh !== undefined ? loadMesh(args.mesh) : (null as unknown as Mesh);
    const objective: Objective = enumFlag('objective', args.objective, ['time', 'memory'] as const);
    const top = intFlag('top', args.top, 1, 10_000);
    const workers = workersFlag(args.workers, availableParallelism(), (line) => process.stderr.write(`mesh-search: ${line}\n`));
    // Output paths are checked before the search runs, so a typo costs nothing.
    if (args.out !== undefined) checkWritable(args.out, 'the plan');
    if (args.report !== undefined) checkWritable(args.report, 'the report');
    const engine = engineArg(args.engine ?? args.export);
    if (engine && args.devices !== undefined) {
      throw new InputError(`--${args.export !== undefined ? 'export' : 'engine'} goes with --mesh, not --devices: an engine's rules are checked on the mesh it runs; search --devices first, then --mesh with the mesh it reports`);
    }
    if (args.export !== undefined && args.json) throw new InputError('--export prints a configuration on stdout; it does not go with --json');
    if (args.export !== undefined && args.engine !== undefined && args.engine !== args.export) {
      throw new InputError(`--export ${args.export} with --engine ${args.engine}: the best ${args.engine} plan may not be one ${args.export} can express; give one engine`);
    }
    // What of the model the engine cannot build fails before any plan is searched.
    if (engine && modelProblems(engine, spec).length > 0) throw new InputError(cannotRun(engine, spec, mesh, profile));
    const tty = process.stderr.isTTY === true;
    const progress = progressReporter(objective, tty);
    let result: SearchResult;
    try {
      const common = { spec, profile, top, workers, objective, timeLimit: args.timeLimit, onProgress: progress.onProgress };
      if (args.devices !== undefined) {
        const r = await searchDevices({ ...common, devices: args.devices });
        mesh = loadMesh(r.mesh);
        result = r;
      } else {
        result = await search({ ...common, mesh, ...(engine ? { filter: { engine } } : {}) });
      }
    } catch (e) {
      if (e instanceof SearchFailed) {
        if (tty && progress.shown()) process.stderr.write('\n');
        process.stderr.write(`mesh-search: ${e.message.replace(/\n/g, ' ')}\n`);
        process.exitCode = 1;
        return;
      }
      throw e;
    } finally {
      if (tty && progress.shown()) process.stderr.write('\r\x1b[K');
    }
    if (result.searched.gap !== undefined) {
      process.stderr.write(`mesh-search: stopped at the time limit; the best plan is within ${(result.searched.gap * 100).toFixed(1)}% of the optimum (proven bound ${objective === 'time' ? fmtSeconds(result.searched.lowerBound!) : fmtBytes(result.searched.lowerBound!)})\n`);
    }
    if (engine && !result.best && !result.closest) throw new InputError(cannotRun(engine, spec, mesh, profile));
    const paper = paperLayout(spec, mesh);
    const paperEstimate = paper ? estimatePlan(buildGraph(spec), mesh, makePlan(paper), profile) : null;
    if (args.out !== undefined && result.best) {
      const file = {
        plan: planFromJsonSafe(result.best),
        mesh: formatMesh(mesh),
        model: findPreset(args.model) ? args.model : spec,
        device: args.device,
        ...(args.nodeSize !== undefined ? { nodeSize: Number(args.nodeSize) } : {}),
        estimate: result.best,
      };
      writeAtomic(args.out, JSON.stringify(file, null, 2) + '\n', 'the plan');
    }
    if (args.report !== undefined) {
      // Loaded only when asked for: vega adds half a second to every start.
      const { writeReport } = await import('../../export/report/report.js');
      await writeReport(result, args.report, { spec, top });
    }
    if (args.out !== undefined && !result.best) process.stderr.write(`mesh-search: no plan fits, so nothing was written to ${args.out}\n`);
    if (args.export !== undefined) {
      if (!result.best) {
        const c = result.closest;
        process.stderr.write(`mesh-search: ${CAPABILITIES[engine!].title} cannot run ${spec.name} on ${formatMesh(mesh)} (${profile.name}): no plan it can express fits in memory${c ? ` (the closest needs ${fmtBytes(c.memory.total)} of ${fmtBytes(c.memory.capacity)} per device)` : ''}; nothing exported\n`);
        process.exitCode = 3;
        return;
      }
      const b = result.best;
      process.stderr.write(`mesh-search: best ${args.export} plan ${b.plan.layout || '(replicated)'} zero ${b.plan.zero} recompute ${b.plan.recompute} microbatches ${b.plan.microbatches}: step ${fmtSeconds(b.time.step)}, MFU ${pct(b.mfu)}\n`);
      // Loaded only when asked for: the exporters and their YAML writer add ~50 ms to every start.
      const { exportPlan } = await import('../../export/exportPlan.js');
      process.stdout.write(exportPlan({ plan: planFromJson(b.plan), mesh, spec, profile }, args.export).text);
      return;
    }
    if (args.json) process.stdout.write(JSON.stringify(result) + '\n');
    else process.stdout.write(formatSearch(result, { spec, mesh, objective, paper: paperEstimate, paperLayout: paper, explain: args.explain === true, engine }));
    if (!result.best) process.exitCode = 3;
  },
};

/** The plan JSON of an estimate, checked by the same parser that reads plan files back. */
function planFromJsonSafe(e: Estimate): Estimate['plan'] {
  planFromJson(e.plan);
  return e.plan;
}

/** `--engine` checked here too: a yargs `choices` failure does not stop the handler. */
export function engineArg(name: string | undefined): Engine | undefined {
  if (name === undefined) return undefined;
  if (!isEngine(name)) throw new InputError(`unknown engine "${name}"; engines are ${ENGINES.join(', ')}`);
  return name;
}

/**
 * One line when an engine can run no plan at all: what of the model it lacks (from a plain
 * data-parallel plan's reasons that do not depend on the layout), else that no layout fits its rules.
 */
export function cannotRun(engine: Engine, spec: ModelSpec, mesh: Mesh, profile: HardwareProfile): string {
  const t = CAPABILITIES[engine].title;
  const reasons = modelProblems(engine, spec);
  return reasons.length > 0
    ? `${t} cannot run ${spec.name}: ${reasons.join('; ')}`
    : `${t} cannot run ${spec.name} on ${formatMesh(mesh)} (${profile.name}): no valid layout of it on this mesh is one ${t} can express`;
}
