import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const bin = fileURLToPath(new URL('../bin/mesh-search.js', import.meta.url));
const hook = fileURLToPath(new URL('./support/loads/register.mjs', import.meta.url));

const root = fileURLToPath(new URL('..', import.meta.url));
// esbuild's metafile of the command-line bundle (scripts/bundle.mjs): the modules in each chunk.
const meta = JSON.parse(readFileSync(join(root, 'dist', 'bundle', 'meta.json'), 'utf8')) as { outputs: Record<string, { inputs: Record<string, unknown> }> };

/** The URLs of every module a CLI run loads (a bundle chunk counts as the modules in it), and its exit code. */
function loads(args: string[]): { code: number; urls: string[]; chunks: number } {
  const file = join(mkdtempSync(join(tmpdir(), 'ms-loads-')), 'loads.txt');
  const r = spawnSync(process.execPath, ['--import', hook, bin, ...args], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, LOADS_FILE: file } });
  const urls: string[] = [];
  let chunks = 0;
  for (const url of readFileSync(file, 'utf8').split('\n').filter(Boolean)) {
    const path = url.startsWith('file:') ? relative(root, fileURLToPath(url)).split(sep).join('/') : '';
    const chunk = meta.outputs[path];
    if (!chunk) urls.push(url);
    else {
      chunks++;
      for (const input of Object.keys(chunk.inputs)) urls.push(pathToFileURL(join(root, input)).href);
    }
  }
  return { code: r.status ?? -1, urls, chunks };
}

// What the training runtime, calibration, the HTML report and tfjs bring in.
const HEAVY = [/@tensorflow/, /[\\/]node_modules[\\/]vega/, /[\\/]dist[\\/]runtime[\\/]/, /[\\/]dist[\\/]calibrate[\\/]/, /[\\/]dist[\\/]export[\\/]report[\\/]/];
const heavy = (urls: string[]) => urls.filter((u) => HEAVY.some((h) => h.test(u)));

describe('the command line loads only what a command needs', () => {
  it('search, estimate and export load no tfjs, runtime, calibration or report module', () => {
    const runs = [
      ['--mesh', '2x2', '--model', 'tiny', '--json'],
      ['estimate', '--mesh', '2x2', '--model', 'tiny', '--layout', 'batch:rows', '--json'],
      ['export', '--mesh', '2x2', '--model', 'tiny', '--layout', 'batch:rows;d_ff:cols;heads:cols;vocab:cols', '--format', 'megatron'],
    ];
    for (const args of runs) {
      const r = loads(args);
      expect(r.code).toBe(0);
      // The command line ran from its bundle (the fast start), not from dist/cli's ~100 files.
      expect(r.chunks).toBeGreaterThan(0);
      expect(r.urls.filter((u) => /[\\/]dist[\\/]cli[\\/]main\.js$/.test(u))).toHaveLength(1);
      // The run itself went through the command's module: the list is the real one.
      expect(r.urls.some((u) => /dist[\\/]cli[\\/]commands[\\/](search|estimate|export)\.js$/.test(u))).toBe(true);
      expect(heavy(r.urls)).toEqual([]);
      // A plain search or estimate writes no engine configuration: no exporter, no YAML writer.
      if (args[0] !== 'export') expect(r.urls.filter((u) => /[\\/]dist[\\/]export[\\/]|[\\/]node_modules[\\/]yaml[\\/]/.test(u))).toEqual([]);
    }
  });

  it('run loads the runtime and tfjs it needs (the hook sees heavy modules when they load)', () => {
    const r = loads(['run', '--mesh', '2', '--model', 'tiny', '--layout', 'batch:x', '--steps', '1']);
    expect(r.code).toBe(0);
    expect(heavy(r.urls).some((u) => /@tensorflow/.test(u))).toBe(true);
  });
});
