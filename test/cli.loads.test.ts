import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const bin = fileURLToPath(new URL('../bin/mesh-search.js', import.meta.url));
const hook = fileURLToPath(new URL('./support/loads/register.mjs', import.meta.url));

/** The URLs of every module a CLI run loads, and its exit code. */
function loads(args: string[]): { code: number; urls: string[] } {
  const file = join(mkdtempSync(join(tmpdir(), 'ms-loads-')), 'loads.txt');
  const r = spawnSync(process.execPath, ['--import', hook, bin, ...args], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, LOADS_FILE: file } });
  return { code: r.status ?? -1, urls: readFileSync(file, 'utf8').split('\n').filter(Boolean) };
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
