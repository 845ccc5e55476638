// bench/accuracy: every published step time in data/published/steps.csv against the cost model's
// estimate, per device family: under the shipped preset, fitted on all the family's rows by the
// project's own calibrate fit (in-sample), and leave-one-model-out (each model's rows predicted by a
// profile fitted without them); then data/published/heldout/*.csv under the presets alone. Prints JSON lines; `--write-readme` also writes the table into
// README.md between the accuracy markers. Goals (issue 10, leave-one-model-out): mean |error| ≤ 5%,
// max ≤ 10%, signed mean within ±2%, per family. `--hold a,b` keeps those parameters at the preset's
// values in every fit, as `calibrate --hold` does (the README table is written with calibrate's defaults).
import { existsSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readBenchFile } from '../dist/calibrate/bench.js';
import { fitPhysicsFamily } from '../dist/calibrate/physics.js';
import { compareRow, groupRowsByDevice, summarizeErrors } from '../dist/calibrate/validate.js';
import { InputError } from '../dist/errors.js';
import { datasheetDevice, findDevice } from '../dist/cost/presets.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const file = join(root, 'data/published/steps.csv');
const GOAL = { meanAbsError: 0.05, maxAbsError: 0.1, signedMeanError: 0.02 };
const r4 = (x) => (Number.isFinite(x) ? +x.toFixed(4) : null);
const short = (s) => ({ rows: s.rows, meanAbsError: r4(s.meanAbsError), maxAbsError: r4(s.maxAbsError), signedMeanError: r4(s.signedMeanError) });
// calibrate's refusal names every parameter; the table needs only the count.
const firstLine = (e) => {
  const m = /give (\d+) observations.*?for (\d+) parameters/.exec(String(e.message));
  return m ? `calibrate refuses, ${m[1]} observations for ${m[2]} free parameters` : String(e.message).split('. ')[0];
};
/** The constants presets.ts's FITTED table carries, read off a fitted profile. */
const fittedConstants = (p) => ({
  matmul: r4(p.efficiency.matmul), gemmHalfSize: r4(p.gemmHalfSize), elementwise: r4(p.efficiency.elementwise),
  launchOverhead: p.launchOverhead, overlap: r4(p.overlap), tensorParallelOverlap: r4(p.tensorParallelOverlap ?? 0),
  links: Object.fromEntries(p.levels.map((l) => [l.name, { efficiency: r4(l.link.efficiency?.allreduce ?? 1), latency: l.link.latency, overlap: r4(l.link.overlap ?? 1) }])),
});
const holdArg = process.argv.indexOf('--hold');
const hold = holdArg > 0 ? String(process.argv[holdArg + 1] ?? '').split(',').map((h) => h.trim()).filter(Boolean) : [];

/**
 * Fit on `train` (rows with the index of their base profile) from the family's datasheet profiles,
 * as calibrate --fit physics does for one profile; null with the reason when the fit refuses.
 */
function fit(train, bases, held = []) {
  if (train.length === 0) return { profiles: null, reason: 'no rows left to fit on' };
  try {
    return { profiles: fitPhysicsFamily(train.map((t) => t.m), bases, (i) => train[i].b, [...held, ...hold]).profiles, reason: null };
  } catch (e) {
    if (e instanceof InputError) return { profiles: null, reason: firstLine(e) };
    throw e;
  }
}

const t0 = performance.now();
const raw = readBenchFile(file);
const { groups, rejected } = groupRowsByDevice(raw);
for (const r of rejected) process.stderr.write(`  rejected ${relative(root, r.source.file)}:${r.source.line}: ${r.reason}\n`);
// A family is one chip: profiles that differ only in their network (chip) are fitted together.
const byChip = new Map();
for (const g of groups) {
  const chip = g.profile.chip ?? g.profile.name;
  if (!byChip.has(chip)) byChip.set(chip, []);
  byChip.get(chip).push(g);
}
const families = [];
for (const [chip, gs] of byChip) {
  const devices = gs.map((g) => g.profile.name);
  const family = devices.length > 1 ? `${chip} (${devices.join(', ')})` : devices[0];
  // Fits start from the datasheet profiles, not the presets (which were fitted on these very rows).
  const bases = gs.map((g) => (findDevice(g.profile.name) ? datasheetDevice(g.profile.name) : g.profile));
  const rows = gs.flatMap((g, b) => g.rows.map((m) => ({ m, b, device: g.profile.name, profile: g.profile })));
  const models = [...new Set(rows.map((r) => r.m.modelName))];
  const preset = rows.map((r) => compareRow(r.m, r.profile, r.device));
  const all = fit(rows, bases);
  const inSample = all.profiles ? rows.map((r) => compareRow(r.m, all.profiles[r.b], r.device)) : null;
  const lomo = new Array(rows.length).fill(null);
  const lomoReasons = [];
  for (const model of models) {
    const { profiles, reason } = fit(rows.filter((r) => r.m.modelName !== model), bases);
    if (!profiles) lomoReasons.push(`${model}: ${reason}`);
    rows.forEach((r, i) => {
      if (r.m.modelName === model && profiles) lomo[i] = compareRow(r.m, profiles[r.b], r.device);
    });
  }
  rows.forEach((r, i) => {
    const m = r.m;
    process.stdout.write(JSON.stringify({
      bench: 'accuracy', row: `${relative(root, m.source.file)}:${m.source.line}`, device: r.device, model: m.modelName, mesh: preset[i].mesh,
      measured: m.stepTime, preset: r4(preset[i].estimated), presetError: r4(preset[i].error),
      inSample: inSample ? r4(inSample[i].estimated) : null, inSampleError: inSample ? r4(inSample[i].error) : null,
      leaveOneModelOut: lomo[i] ? r4(lomo[i].estimated) : null, leaveOneModelOutError: lomo[i] ? r4(lomo[i].error) : null,
    }) + '\n');
  });
  const lomoRows = lomo.filter(Boolean);
  const summary = {
    bench: 'accuracy', device: family, rows: rows.length, models: models.length,
    preset: short(summarizeErrors(preset.map((x) => x.error))),
    inSample: inSample ? short(summarizeErrors(inSample.map((x) => x.error))) : { reason: all.reason },
    leaveOneModelOut: { ...short(summarizeErrors(lomoRows.map((x) => x.error))), ...(lomoReasons.length ? { notPredicted: lomoReasons } : {}) },
  };
  const s = summary.leaveOneModelOut;
  summary.goalMet = lomoRows.length === rows.length && s.meanAbsError <= GOAL.meanAbsError && s.maxAbsError <= GOAL.maxAbsError && Math.abs(s.signedMeanError) <= GOAL.signedMeanError;
  if (all.profiles) summary.fitted = Object.fromEntries(devices.map((d, b) => [d, fittedConstants(all.profiles[b])]));
  families.push(summary);
  process.stdout.write(JSON.stringify(summary) + '\n');
}
// Eager engines: rows of an engine that runs PyTorch's kernels op by op fit the presets' one
// constant for them, eagerCompute (src/cost/presets.ts EAGER), with the chip's own constants held at
// the preset (fitted on steps.csv above): in-sample, and leave-one-model-out as for a family.
const EAGER_FILE = join(root, 'data/published/llm-foundry-a100.csv');
const HOLD_CHIP = ['efficiency', 'gemmHalfSize', 'launchOverhead', 'overlap', 'tensorParallelOverlap', 'levels'];
const engines = [];
{
  const { groups: eg, rejected: er } = groupRowsByDevice(readBenchFile(EAGER_FILE));
  for (const r of er) process.stderr.write(`  rejected ${relative(root, r.source.file)}:${r.source.line}: ${r.reason}\n`);
  for (const g of eg) {
    // From the preset without its eager constant, so that no row predicts itself through it.
    const { eagerCompute: _, ...base } = g.profile;
    const rows = g.rows.map((m) => ({ m, b: 0 }));
    const fitEager = (train) => fit(train, [base], HOLD_CHIP).profiles?.[0] ?? null;
    const models = [...new Set(rows.map((r) => r.m.modelName))];
    const preset = rows.map((r) => compareRow(r.m, g.profile));
    const all = fitEager(rows);
    const inSample = all ? rows.map((r) => compareRow(r.m, all)) : null;
    const lomo = rows.map(() => null);
    for (const model of models) {
      const p = fitEager(rows.filter((r) => r.m.modelName !== model));
      rows.forEach((r, i) => { if (p && r.m.modelName === model) lomo[i] = compareRow(r.m, p); });
    }
    rows.forEach((r, i) => process.stdout.write(JSON.stringify({
      bench: 'accuracy', eager: true, row: `${relative(root, r.m.source.file)}:${r.m.source.line}`, device: g.profile.name, model: r.m.modelName, mesh: preset[i].mesh,
      measured: r.m.stepTime, preset: r4(preset[i].estimated), presetError: r4(preset[i].error),
      inSampleError: inSample ? r4(inSample[i].error) : null, leaveOneModelOutError: lomo[i] ? r4(lomo[i].error) : null,
    }) + '\n'));
    const summary = {
      bench: 'accuracy', eager: true, file: relative(join(root, 'data/published'), EAGER_FILE), device: g.profile.name, rows: rows.length, models: models.length,
      preset: short(summarizeErrors(preset.map((x) => x.error))),
      inSample: inSample ? short(summarizeErrors(inSample.map((x) => x.error))) : { reason: 'the fit refused' },
      leaveOneModelOut: short(summarizeErrors(lomo.filter(Boolean).map((x) => x.error))),
      eagerCompute: { preset: g.profile.eagerCompute ?? 1, fitted: all ? r4(all.eagerCompute ?? 1) : null },
    };
    engines.push(summary);
    process.stdout.write(JSON.stringify(summary) + '\n');
  }
}
// Held out: published rows of engines the presets were not fitted on (data/published/heldout/),
// priced under the shipped presets only: no fit reads them.
const heldOutDir = join(root, 'data/published/heldout');
const heldOut = [];
for (const f of existsSync(heldOutDir) ? readdirSync(heldOutDir).filter((x) => x.endsWith('.csv')).sort() : []) {
  const { groups: hg, rejected: hr } = groupRowsByDevice(readBenchFile(join(heldOutDir, f)));
  for (const r of hr) process.stderr.write(`  rejected ${relative(root, r.source.file)}:${r.source.line}: ${r.reason}\n`);
  for (const g of hg) {
    const errors = g.rows.map((m) => {
      const c = compareRow(m, g.profile, g.profile.name);
      process.stdout.write(JSON.stringify({ bench: 'accuracy', heldOut: true, row: `${relative(root, m.source.file)}:${m.source.line}`, device: g.profile.name, model: m.modelName, mesh: c.mesh, measured: m.stepTime, preset: r4(c.estimated), presetError: r4(c.error) }) + '\n');
      return c.error;
    });
    const summary = { bench: 'accuracy', heldOut: true, file: `heldout/${f}`, device: g.profile.name, rows: g.rows.length, models: new Set(g.rows.map((m) => m.modelName)).size, preset: short(summarizeErrors(errors)) };
    heldOut.push(summary);
    process.stdout.write(JSON.stringify(summary) + '\n');
  }
}
process.stdout.write(JSON.stringify({ bench: 'accuracy', file: relative(root, file), rows: raw.length, rejected: rejected.length, hold, goal: GOAL, seconds: +((performance.now() - t0) / 1e3).toFixed(1) }) + '\n');

const pct = (x, signed = false) => (x === null || x === undefined ? 'n/a' : `${signed && x >= 0 ? '+' : ''}${(100 * x).toFixed(1)}%`);
const cell = (s) => ('reason' in s ? 'n/a' : `${pct(s.meanAbsError)} / ${pct(s.maxAbsError)} / ${pct(s.signedMeanError, true)}`);
const lomoCell = (s) => (s.rows === 0 ? 'n/a' : `${cell(s)}${s.notPredicted ? ` (${s.rows} rows)` : ''}`);

/** The README table: mean |error| / max |error| / signed mean of step time, per device family. */
function readmeTable() {
  const lines = [
    '| device | rows (models) | preset | in-sample fit | leave-one-model-out |',
    '| --- | --- | --- | --- | --- |',
    ...families.map((f) => `| ${f.device} | ${f.rows} (${f.models}) | ${cell(f.preset)} | ${cell(f.inSample)} | ${lomoCell(f.leaveOneModelOut)} |`),
    ...engines.map((e) => `| ${e.device}, eager kernels (${e.file}: eagerCompute ${e.eagerCompute.fitted}) | ${e.rows} (${e.models}) | ${cell(e.preset)} | ${cell(e.inSample)} | ${lomoCell(e.leaveOneModelOut)} |`),
    ...heldOut.map((h) => `| ${h.device}, held out (${h.file}) | ${h.rows} (${h.models}) | ${cell(h.preset)} | not fitted | not fitted |`),
  ];
  const notes = families.flatMap((f) => [
    ...('reason' in f.inSample ? [`${f.device} in-sample: ${f.inSample.reason}.`] : []),
    ...(f.leaveOneModelOut.notPredicted ?? []).map((r) => `${f.device} leave-one-model-out, ${r}.`),
  ]);
  if (rejected.length) notes.push(`${rejected.length} rows rejected: ${[...new Set(rejected.map((r) => r.reason))].join('; ')}.`);
  return [...lines, ...(notes.length ? ['', ...notes.map((n) => `- ${n}`)] : [])].join('\n');
}

if (process.argv.includes('--write-readme')) {
  if (hold.length) {
    process.stderr.write('bench/accuracy: the README table is written with calibrate\'s default fit; drop --hold\n');
    process.exit(2);
  }
  const readme = join(root, 'README.md');
  const text = readFileSync(readme, 'utf8');
  const begin = '<!-- accuracy:begin -->';
  const end = '<!-- accuracy:end -->';
  const a = text.indexOf(begin);
  const b = text.indexOf(end);
  if (a < 0 || b < a) {
    process.stderr.write(`bench/accuracy: README.md has no ${begin} ... ${end} block\n`);
    process.exit(2);
  }
  const out = `${text.slice(0, a + begin.length)}\n${readmeTable()}\n${text.slice(b)}`;
  writeFileSync(`${readme}.tmp`, out);
  renameSync(`${readme}.tmp`, readme);
  process.stderr.write('bench/accuracy: README.md table written\n');
}
