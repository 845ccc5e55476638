import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { gcMode, PARALLEL_GC_ENV, SINGLE_THREADED_GC } from '../src/runtime/gc.js';

const bin = fileURLToPath(new URL('../bin/mesh-search.js', import.meta.url));

/** `mesh-search run` as a user starts it (plain node), with its --json output and trace. */
function run(env: Record<string, string> = {}) {
  const trace = join(mkdtempSync(join(tmpdir(), 'ms-gc-')), 'trace.json');
  const base = { ...process.env };
  delete base[PARALLEL_GC_ENV];
  const r = spawnSync(process.execPath, [bin, 'run', '--mesh', '2', '--model', 'tiny', '--layout', 'batch:x', '--steps', '1', '--json', '--trace', trace], {
    encoding: 'utf8', timeout: 120_000, env: { ...base, ...env },
  });
  expect(r.status, r.stderr).toBe(0);
  return { out: JSON.parse(r.stdout) as { gc: string }, trace: JSON.parse(readFileSync(trace, 'utf8')) as { otherData: { gc: string } } };
}

describe('the runtime commands run without GC helper threads (src/runtime/gc.ts)', () => {
  it('reads the mode off the flags node started with', () => {
    expect(gcMode([SINGLE_THREADED_GC])).toBe('single-threaded');
    expect(gcMode(['--expose-gc', '--single-threaded-gc'])).toBe('single-threaded');
    expect(gcMode([])).toBe('parallel');
    expect(gcMode(['--expose-gc'])).toBe('parallel');
  });

  it('run started from plain node measures under --single-threaded-gc, and says so in its output and trace', () => {
    const r = run();
    expect(r.out.gc).toBe('single-threaded');
    expect(r.trace.otherData.gc).toBe('single-threaded');
  });

  it(`${PARALLEL_GC_ENV}=1 keeps V8's default GC, and the trace records that too`, () => {
    const r = run({ [PARALLEL_GC_ENV]: '1' });
    expect(r.out.gc).toBe('parallel');
    expect(r.trace.otherData.gc).toBe('parallel');
  });
});
