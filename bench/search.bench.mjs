// bench/search: the search against a plain exhaustive scan and against an integer program solved by
// HiGHS (the way auto_mtf and Alpa pose layout choice), on workers and inline. One JSON line per case;
// each case runs in its own process so that its peak RSS is its own. Ratios are measured side by side.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { availableParallelism, loadavg } from 'node:os';
import { getDevice } from '../dist/cost/presets.js';
import { makePricer } from '../dist/cost/pricer.js';
import { getPreset } from '../dist/model/presets.js';
import { parseMesh } from '../dist/mesh/mesh.js';
import { buildGraph, DIM_NAMES } from '../dist/model/graph.js';
import { exhaustive, search, searchDevices } from '../dist/search/index.js';
import { conflicts, dimMasks, layoutOf, makeSpace, splits, strategies } from '../dist/search/space.js';

const CASES = ['startup', 'transformer-5b', 'highs', 'gpt3-175b', 'workers', 'devices-512', 'devices-1024', 'axes-7', 'axes-10'];
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rss = () => process.resourceUsage().maxRSS * 1024;
const samePlan = (a, b) => JSON.stringify(a?.plan) === JSON.stringify(b?.plan);

async function timed(fn, runs) {
  const seconds = [];
  let result;
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    result = await fn();
    seconds.push((performance.now() - t0) / 1000);
  }
  return { seconds: median(seconds), all: seconds, result };
}

const t5b = { spec: getPreset('transformer-5b'), mesh: '16x32', profile: getDevice('tpu-v2') };

/** transformer-5b on 16x32: the whole space, against a plain scan pricing every valid plan. */
async function caseTransformer() {
  const cold = await timed(() => search({ ...t5b, workers: 0 }), 1);
  const coldPlain = await timed(() => exhaustive({ ...t5b, symmetry: false }), 1);
  // Both sides warmed alike before they are timed: one search is ~1/20 of a scan, so a few runs
  // of it left V8 still compiling where the scan had long warmed up inside its first run.
  await timed(() => search({ ...t5b, workers: 0 }), 120);
  await timed(() => exhaustive({ ...t5b, symmetry: false }), 2);
  // Side by side: rounds of the search (the median of 9 runs) and one scan right after it, so that
  // the machine's speed, which drifts over seconds here, is about the same for both in each round;
  // the ratio is the median of the rounds' ratios.
  const rounds = [];
  for (let i = 0; i < 5; i++) rounds.push({ search: await timed(() => search({ ...t5b, workers: 0 }), 9), scan: await timed(() => exhaustive({ ...t5b, symmetry: false }), 1) });
  const inline = { ...rounds.at(-1).search, seconds: median(rounds.map((r) => r.search.seconds)) };
  const plain = { ...rounds.at(-1).scan, seconds: median(rounds.map((r) => r.scan.seconds)) };
  const roundRatios = rounds.map((r) => r.scan.seconds / r.search.seconds);
  const pooled = await timed(() => search({ ...t5b, workers: 2 }), 3);
  // The best plan alone (--top 1, no Pareto front): one exact estimate at the end instead of ~11.
  const single = await timed(() => search({ ...t5b, workers: 0, top: 1, paretoSlack: 0 }), 5);
  const plainSingle = await timed(() => exhaustive({ ...t5b, symmetry: false, top: 1, paretoSlack: 0 }), 3);
  const s = inline.result.searched;
  return {
    case: 'transformer-5b 16x32 tpu-v2, whole space', plans: s.plans, valid: s.valid, priced: s.valid - s.pruned, pruned: s.pruned,
    seconds: inline.seconds, coldSeconds: cold.seconds, secondsOn2Workers: pooled.seconds,
    // The first run of each: the search in a fresh process, as one command runs it (JIT compilation
    // included), the scan right after it (sharing the pricer code the search compiled).
    exhaustiveColdSeconds: coldPlain.seconds, coldRatioToExhaustive: coldPlain.seconds / cold.seconds,
    plansPerSecond: Math.round(s.valid / inline.seconds),
    exhaustiveSeconds: plain.seconds, exhaustivePlansPerSecond: Math.round(plain.result.candidates / plain.seconds),
    ratioToExhaustive: median(roundRatios), roundRatios: roundRatios.map((x) => +x.toFixed(1)), ratioToExhaustiveOn2Workers: plain.seconds / pooled.seconds,
    // Machine-independent: how many fewer plans the search prices than the plain scan.
    pricedRatio: plain.result.candidates / (s.valid - s.pruned),
    bestOnly: {
      seconds: single.seconds, priced: single.result.searched.valid - single.result.searched.pruned, exhaustiveSeconds: plainSingle.seconds,
      ratioToExhaustive: plainSingle.seconds / single.seconds, sameOptimum: samePlan(single.result.best, plainSingle.result.best),
    },
    sameOptimum: samePlan(inline.result.best, plain.result.best) && inline.result.best.time.step === plain.result.best.time.step,
    best: inline.result.best.plan, bestStep: inline.result.best.time.step,
    goals: { under0_2s: inline.seconds < 0.2, x50: median(roundRatios) >= 50 },
    peakRssBytes: rss(),
  };
}

/** The 2-adic valuation: the power of two a size has. */
const v2 = (n) => { let k = 0; while (n % 2 === 0) { n /= 2; k++; } return k; };

/**
 * The layout choice as an integer program, as Alpa poses it: each mesh axis a node with one binary
 * per axis choice (which dimensions it splits), the pair of nodes an edge with one binary per pair of
 * choices, whose cost is the plan's (best strategy's) step time; auto_mtf's constraints on x[d][a]
 * (dimension d on axis a): no tensor with two dimensions on one axis, splits dividing sizes (in log2:
 * exact for power-of-two axes). Expressible for a two-axis mesh with power-of-two axes.
 */
async function caseHighs() {
  const { default: loadHighs } = await import('highs');
  const highs = await loadHighs();
  const { spec, profile } = t5b;
  const mesh = parseMesh(t5b.mesh);
  const ours = await timed(() => search({ ...t5b, workers: 0 }), 5);

  const run = () => {
    const t0 = performance.now();
    const graph = buildGraph(spec);
    const space = makeSpace(graph, mesh, profile);
    const pricer = makePricer(graph, mesh, profile);
    const S = space.choices.length;
    const edges = [];
    for (let c0 = 0; c0 < S; c0++) {
      for (let c1 = 0; c1 < S; c1++) {
        const masks = dimMasks(space, [c0, c1], new Array(DIM_NAMES.length));
        const split = splits(space, masks);
        if (!split) continue;
        const layout = layoutOf(space, masks);
        let best = Infinity;
        for (const st of strategies(space, split, masks)) {
          const c = pricer({ layout, ...st });
          if (c.feasible && c.step < best) best = c.step;
        }
        if (best < Infinity) edges.push([c0, c1, best]);
      }
    }
    const t1 = performance.now();
    const conf = conflicts(graph);
    const rows = [];
    const vars = [];
    for (let a = 0; a < 2; a++) {
      rows.push(` one${a}: ${Array.from({ length: S }, (_, c) => `u${a}_${c}`).join(' + ')} = 1`);
      for (let c = 0; c < S; c++) vars.push(`u${a}_${c}`);
    }
    rows.push(` pick: ${edges.map(([a, b]) => `e${a}_${b}`).join(' + ')} = 1`);
    for (const [c0, c1] of edges) {
      rows.push(` l0_${c0}_${c1}: e${c0}_${c1} - u0_${c0} <= 0`, ` l1_${c0}_${c1}: e${c0}_${c1} - u1_${c1} <= 0`);
      vars.push(`e${c0}_${c1}`);
    }
    for (let d = 0; d < DIM_NAMES.length; d++) {
      for (let a = 0; a < 2; a++) {
        const on = [];
        for (let c = 0; c < S; c++) if (space.choices[c] & (1 << d)) on.push(`u${a}_${c}`);
        rows.push(` x${d}_${a}: x${d}_${a}${on.map((u) => ` - ${u}`).join('')} = 0`);
        vars.push(`x${d}_${a}`);
        for (let e = d + 1; e < DIM_NAMES.length; e++) if (conf[d] & (1 << e)) rows.push(` c${d}_${e}_${a}: x${d}_${a} + x${e}_${a} <= 1`);
      }
      rows.push(` div${d}: ${mesh.axes.map((ax, a) => `${Math.log2(ax.size)} x${d}_${a}`).join(' + ')} <= ${v2(space.dimSizes[d])}`);
    }
    // Step times in milliseconds keep the coefficients readable; the objective is scaled back.
    const lp = `Minimize\n obj: ${edges.map(([a, b, s]) => `${(s * 1e3).toPrecision(17)} e${a}_${b}`).join(' + ')}\nSubject To\n${rows.join('\n')}\nBinary\n ${vars.join(' ')}\nEnd\n`;
    const t2 = performance.now();
    const sol = highs.solve(lp, { output_flag: false });
    const t3 = performance.now();
    if (sol.Status !== 'Optimal') throw new Error(`HiGHS: ${sol.Status}`);
    const chosen = edges.find(([a, b]) => sol.Columns[`e${a}_${b}`].Primal > 0.5);
    const layout = layoutOf(space, dimMasks(space, [chosen[0], chosen[1]], new Array(DIM_NAMES.length)));
    return {
      coefficients: (t1 - t0) / 1000, build: (t2 - t1) / 1000, solve: (t3 - t2) / 1000, total: (t3 - t0) / 1000,
      objective: sol.ObjectiveValue / 1e3, chosenStep: chosen[2], layout, edges: edges.length, variables: vars.length, constraints: rows.length,
    };
  };
  run();
  const runs = [run(), run(), run()];
  const r = runs.sort((a, b) => a.total - b.total)[1];
  const best = ours.result.best;
  const layoutText = [...r.layout].map(([d, a]) => `${d}:${a.join('+')}`).join(';');
  return {
    case: 'HiGHS integer program vs search, transformer-5b 16x32 tpu-v2 (layout choice, best strategy per layout)',
    searchSeconds: ours.seconds,
    ilpSeconds: r.total, ilpCoefficientSeconds: r.coefficients, ilpBuildSeconds: r.build, highsSolveSeconds: r.solve,
    ratio: r.total / ours.seconds, ratioSolveOnly: r.solve / ours.seconds,
    ilp: { variables: r.variables, constraints: r.constraints, edges: r.edges },
    ilpOptimum: r.chosenStep, ilpObjective: r.objective, searchOptimum: best.time.step,
    sameOptimum: r.chosenStep === best.time.step && Math.abs(r.objective - best.time.step) <= 1e-9 * best.time.step,
    ilpLayout: layoutText, searchLayout: best.plan.layout,
    peakRssBytes: rss(),
  };
}

/** GPT-3 175B on a 4-D mesh of 512 A100s: the exact optimum, checked against a scan of the whole (symmetry-reduced) space. */
async function caseGpt3() {
  const s = { spec: getPreset('gpt3-175b'), mesh: '4x4x4x8', profile: getDevice('a100-80g') };
  const ours = await timed(() => search({ ...s, workers: 2 }), 1);
  const inline = await timed(() => search({ ...s, workers: 0 }), 1);
  const ref = await timed(() => exhaustive({ ...s, symmetry: true }), 1);
  const r = ours.result;
  return {
    case: 'gpt3-175b 4x4x4x8 a100-80g', plans: r.searched.plans, valid: r.searched.valid, priced: r.searched.valid - r.searched.pruned,
    seconds: ours.seconds, workers: 2, inlineSeconds: inline.seconds, plansPerSecond: Math.round(r.searched.valid / ours.seconds),
    exhaustiveSeconds: ref.seconds, exhaustivePriced: ref.result.candidates, ratioToExhaustive: ref.seconds / ours.seconds,
    ratioInlineToExhaustive: ref.seconds / inline.seconds, pricedRatio: ref.result.candidates / (r.searched.valid - r.searched.pruned),
    sameOptimum: samePlan(r.best, ref.result.best) && JSON.stringify(r.top) === JSON.stringify(ref.result.top),
    best: r.best.plan, bestStep: r.best.time.step, mfu: r.best.mfu,
    goals: { under30s: ours.seconds < 30 },
    peakRssBytes: rss(),
  };
}

/**
 * 1 worker against 2 on an exhaustive case: on tpu-v2 (8 GiB) almost nothing fits GPT-3 175B, so
 * no bound prunes and every canonical plan is priced.
 */
/** What 2 threads can gain on this machine right now: a pure spin loop on 1 thread, then on 2 at once. */
async function spinSpeedup() {
  const { Worker } = await import('node:worker_threads');
  const code = `let x = 0; for (let i = 0; i < 2e8; i++) x += Math.sqrt(i); require('node:worker_threads').parentPort.postMessage(x);`;
  const spin = () => new Promise((res) => new Worker(code, { eval: true }).once('message', res));
  let t = performance.now();
  await spin();
  const one = performance.now() - t;
  t = performance.now();
  await Promise.all([spin(), spin()]);
  const two = performance.now() - t;
  return (2 * one) / two;
}

/**
 * The same question for this very workload: the search inline on one thread, then two inline
 * searches at once on two threads (no pool, no sharing): the most two workers could gain here.
 */
async function workloadSpeedup(s) {
  const { Worker } = await import('node:worker_threads');
  const url = new URL('../dist/search/index.js', import.meta.url).href;
  const code = `const { parentPort, workerData } = require('node:worker_threads');
    (async () => {
      const { search } = await import(${JSON.stringify(url)});
      const { getPreset } = await import(${JSON.stringify(new URL('../dist/model/presets.js', import.meta.url).href)});
      const { getDevice } = await import(${JSON.stringify(new URL('../dist/cost/presets.js', import.meta.url).href)});
      const t = performance.now();
      await search({ spec: getPreset(workerData.model), mesh: workerData.mesh, profile: getDevice(workerData.device), workers: 0 });
      parentPort.postMessage(performance.now() - t);
    })();`;
  const once = () => new Promise((res) => new Worker(code, { eval: true, workerData: s }).once('message', res));
  const one = await once();
  const t0 = performance.now();
  await Promise.all([once(), once()]);
  return (2 * one) / (performance.now() - t0);
}

async function caseWorkers() {
  const machineSpeedup = await spinSpeedup();
  const workload = await workloadSpeedup({ model: 'gpt3-175b', mesh: '4x4x4x8', device: 'tpu-v2' });
  const s = { spec: getPreset('gpt3-175b'), mesh: '4x4x4x8', profile: getDevice('tpu-v2') };
  const one = [], two = [];
  let r1, r2;
  for (let i = 0; i < 2; i++) {
    let t = performance.now(); r1 = await search({ ...s, workers: 1 }); one.push((performance.now() - t) / 1000);
    t = performance.now(); r2 = await search({ ...s, workers: 2 }); two.push((performance.now() - t) / 1000);
  }
  return {
    case: '1 worker vs 2 workers, gpt3-175b 4x4x4x8 tpu-v2 (exhaustive: no bound prunes)',
    priced: r2.searched.valid - r2.searched.pruned, seconds1Worker: Math.min(...one), seconds2Workers: Math.min(...two),
    speedup: Math.min(...one) / Math.min(...two),
    machineSpeedup, // what a pure spin loop gained from a second thread in the same run (2 on an idle machine)
    workloadSpeedup: workload, // what two independent inline searches on two threads gained over one
    sameAnswer: JSON.stringify([r1.best, r1.top, r1.pareto]) === JSON.stringify([r2.best, r2.top, r2.pareto]),
    goals: { x1_7: Math.min(...one) / Math.min(...two) >= 1.7 },
    peakRssBytes: rss(),
  };
}

/**
 * The whole headline process as a user runs it (module loading included) against a bare `node -e 0`,
 * interleaved run by run so that both see the same machine load.
 */
async function caseStartup() {
  const bin = fileURLToPath(new URL('../bin/mesh-search.js', import.meta.url));
  const wall = (args) => {
    const t = performance.now();
    const r = spawnSync(process.execPath, args, { stdio: ['ignore', 'ignore', 'inherit'] });
    if (r.status !== 0) throw new Error(`${args.join(' ')} exited ${r.status}`);
    return (performance.now() - t) / 1000;
  };
  // The same command from dist/cli's modules, as bin/ ran it before the bundle (scripts/bundle.mjs).
  const modules = new URL('../dist/cli/main.js', import.meta.url).href;
  const unbundledArgs = ['--input-type=module', '-e', `import { main } from ${JSON.stringify(modules)}; process.exitCode = await main(['--mesh', '16x32', '--model', 'transformer-5b', '--json']);`];
  const bare = [], headline = [], unbundled = [];
  for (let i = 0; i < 7; i++) {
    bare.push(wall(['-e', '0']));
    headline.push(wall([bin, '--mesh', '16x32', '--model', 'transformer-5b', '--json']));
    unbundled.push(wall(unbundledArgs));
  }
  const ratio = median(headline) / median(bare);
  return {
    case: 'whole process: mesh-search --mesh 16x32 --model transformer-5b --json vs node -e 0',
    headlineSeconds: median(headline), bareNodeSeconds: median(bare), ratio, goals: { atMost4x: ratio <= 4 },
    unbundledSeconds: median(unbundled), unbundledRatio: median(unbundled) / median(bare),
    peakRssBytes: rss(),
  };
}

/** A plain search of a model on a mesh, named so that workloadSpeedup can run it in threads of its own. */
function workloadCase(workload, goal) {
  const { model, mesh, device } = workload;
  return { what: `${model} on ${mesh} (${device})`, goal, workload, run: (w) => search({ spec: getPreset(model), mesh, profile: getDevice(device), workers: w }) };
}

/**
 * Search at scale (issue 14): inline, then 1 and 2 workers where inline takes over 5 s, with the
 * spin-loop control (and, for a plain search, two of it at once) measured in the same run; each
 * case in its own process for its peak RSS.
 */
const SCALE = {
  'devices-512': { what: '--devices 512 --model transformer-5b (tpu-v2)', goal: 10, run: (w) => searchDevices({ spec: getPreset('transformer-5b'), devices: 512, profile: getDevice('tpu-v2'), workers: w }) },
  'devices-1024': { what: '--devices 1024 --model gpt3-175b --device a100-80g', goal: 10, run: (w) => searchDevices({ spec: getPreset('gpt3-175b'), devices: 1024, profile: getDevice('a100-80g'), workers: w }) },
  'axes-7': workloadCase({ model: 'llama2-70b', mesh: 'a:2;b:2;c:2;d:2;e:2;f:2;g:2', device: 'a100-80g' }, 5),
  'axes-10': { what: 'gpt3-175b on ten axes of 2, 1024 devices (a100-80g)', goal: 30, run: (w) => search({ spec: getPreset('gpt3-175b'), mesh: Array.from({ length: 10 }, (_, i) => `a${i}:2`).join(';'), profile: getDevice('a100-80g'), workers: w }) },
};

/** USER_HZ: the clock ticks per second of /proc's per-thread utime and stime. */
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100;
/** CPU seconds per thread of this process (tid → seconds), from /proc (Linux); empty elsewhere. */
function threadTimes() {
  const out = new Map();
  let tids = [];
  try { tids = readdirSync('/proc/self/task'); } catch { return out; }
  for (const tid of tids) {
    try {
      const st = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      out.set(tid, (Number(f[11]) + Number(f[12])) / CLK_TCK); // utime + stime, fields 14 and 15 of stat(5)
    } catch { /* the thread exited meanwhile */ }
  }
  return out;
}
// The threads this process started with: the main thread, V8's platform threads (garbage collector
// and optimising compiler helpers) and libuv's; a search's pool adds its workers after these.
const STARTUP_THREADS = threadTimes();

/**
 * fn's CPU time by thread kind: the main thread, the threads started while it ran (a pool's
 * workers), and the threads the process started with (V8's collector and compiler helpers, which
 * run beside whichever isolate needs them). Sampled every 20 ms so that workers that exit with
 * their pool are counted up to their last 20 ms.
 */
async function cpuByThread(fn) {
  const before = threadTimes();
  const seen = new Map(before);
  const sample = () => { for (const [t, v] of threadTimes()) seen.set(t, v); };
  const timer = setInterval(sample, 20);
  const t0 = performance.now();
  const result = await fn();
  const seconds = (performance.now() - t0) / 1000;
  clearInterval(timer);
  sample();
  const cpu = { main: 0, workers: 0, helpers: 0 };
  for (const [tid, v] of seen) {
    const d = v - (before.get(tid) ?? 0);
    if (tid === String(process.pid)) cpu.main += d;
    else if (STARTUP_THREADS.has(tid)) cpu.helpers += d;
    else cpu.workers += d;
  }
  for (const k of Object.keys(cpu)) cpu[k] = Math.round(cpu[k] * 100) / 100;
  return { seconds, result, cpu };
}

/**
 * Where two workers' time goes, beside one worker's: each run's CPU seconds by thread kind. Run
 * once in this process and once in a child under V8's --single-threaded (collector and compiler
 * work on the isolate's own thread), where the workers' CPU shows what each extra isolate repeats.
 */
async function workerCpu(c) {
  const one = await cpuByThread(() => c.run(1));
  const two = await cpuByThread(() => c.run(2));
  return { seconds1Worker: one.seconds, cpu1Worker: one.cpu, seconds2Workers: two.seconds, cpu2Workers: two.cpu };
}

async function caseScale(name) {
  const c = SCALE[name];
  if (process.env.BENCH_WORKER_CPU_ONLY) return workerCpu(c);
  const inline = await timed(() => c.run(0), 1);
  const out = { case: c.what, secondsInline: inline.seconds, mesh: inline.result.mesh, best: inline.result.best?.plan, bestStep: inline.result.best?.time.step, searched: inline.result.searched };
  let seconds = inline.seconds;
  if (inline.seconds > 5) {
    // 1 and 2 workers alternated twice, the faster of each kept (outside load only slows a run).
    let one = await timed(() => c.run(1), 1);
    let two = await timed(() => c.run(2), 1);
    const one2 = await timed(() => c.run(1), 1);
    const two2 = await timed(() => c.run(2), 1);
    if (one2.seconds < one.seconds) one = one2;
    if (two2.seconds < two.seconds) two = two2;
    out.peakRssBytes = rss(); // before the controls, whose threads run whole searches of their own
    Object.assign(out, {
      seconds1Worker: one.seconds, seconds2Workers: two.seconds, speedup: one.seconds / two.seconds, machineSpeedup: await spinSpeedup(),
      // Two whole inline searches of this case on two threads at once against one alone: the
      // machine's ceiling for this workload (memory and collector traffic, which a spin loop has none of).
      ...(c.workload ? { workloadSpeedup: await workloadSpeedup(c.workload) } : {}),
      sameAnswer: JSON.stringify([one.result.best, one.result.top]) === JSON.stringify([two.result.best, two.result.top]) && samePlan(inline.result.best, two.result.best),
    });
    seconds = two.seconds;
    out.goals = { x1_7: one.seconds / two.seconds >= 1.7 };
  }
  if (c.workload) {
    // What limits two workers, measured whether or not the case passed 5 s inline.
    out.workerCpu = await workerCpu(c);
    const child = spawnSync(process.execPath, ['--single-threaded', '--expose-gc', fileURLToPath(import.meta.url), name], { encoding: 'utf8', env: { ...process.env, BENCH_WORKER_CPU_ONLY: '1' } });
    if (child.status === 0) out.workerCpuSingleThreadedV8 = JSON.parse(child.stdout.trim().split('\n').pop()).workerCpu;
  }
  out.goals = { ...(out.goals ?? {}), [`under${c.goal}s`]: seconds <= c.goal };
  out.peakRssBytes ??= rss();
  return out;
}

const which = process.argv[2];
if (which) {
  const fn = SCALE[which] ? () => caseScale(which) : { startup: caseStartup, 'transformer-5b': caseTransformer, highs: caseHighs, 'gpt3-175b': caseGpt3, workers: caseWorkers }[which];
  if (process.env.BENCH_WORKER_CPU_ONLY) {
    process.stdout.write(JSON.stringify({ workerCpu: await fn() }) + '\n');
    process.exit(0);
  }
  const out = await fn();
  out.peakRssUnder1GB = out.peakRssBytes < 2 ** 30;
  // Timings on a shared machine: the load says how many cores others were using meanwhile.
  out.machine = { cpus: availableParallelism(), loadAverage1m: loadavg()[0] };
  process.stdout.write(JSON.stringify({ bench: 'search', ...out }) + '\n');
} else {
  let failed = 0;
  for (const c of CASES) {
    const r = spawnSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), c], { stdio: ['ignore', 'inherit', 'inherit'] });
    if (r.status !== 0) failed++;
  }
  process.exitCode = failed ? 1 : 0;
}
