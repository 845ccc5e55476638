import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Piscina } from 'piscina';
import type { Task, TaskResult } from './protocol.js';
import { runTask } from './task.js';

/** Runs shares of the search: on a piscina pool, or inline with the very same code. */
export interface Runner {
  readonly workers: number;
  run(task: Task): Promise<TaskResult>;
  /** Start a pool's threads now (inline and auto: nothing), so that they load their code while this thread goes on. */
  start(): Promise<void>;
  close(): Promise<void>;
}

/** A search failed after a retry: never a result with a hole in it. */
export class SearchFailed extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SearchFailed';
  }
}

export const MESSAGES = {
  crashedTwice: (what: string, first: string, second: string) =>
    `the search failed: a worker crashed twice on the same share (${what}): ${first}; then ${second}`,
  workerError: (what: string, error: string) => `the search failed: a worker threw twice on the same share (${what}): ${error}`,
  noWorkerFile: (path: string) => `the search worker ${path} is missing: build it with npm run build`,
};

/**
 * dist/search/worker.js, two folders up from this module wherever it runs: src/search (under vitest
 * or tsx), dist/search, or a chunk of the command-line bundle in dist/bundle.
 */
export function workerPath(): string {
  return fileURLToPath(new URL('../../dist/search/worker.js', import.meta.url));
}

/** Inline: a simulated crash is an exception, so the retry path is the same as the pool's. */
class InlineRunner implements Runner {
  readonly workers = 0;
  async run(task: Task): Promise<TaskResult> {
    if (task.crash === 'throw') return runTask({ ...task, crash: undefined, throws: true });
    if (task.crash) throw new Error('worker exited (injected crash)');
    return runTask(task);
  }
  async start(): Promise<void> {}
  async close(): Promise<void> {}
}

class PoolRunner implements Runner {
  // piscina is loaded with the first pool: a quick search runs inline and never needs it.
  private readonly pool: Promise<Piscina>;
  constructor(readonly workers: number) {
    const filename = workerPath();
    if (!existsSync(filename)) throw new SearchFailed(MESSAGES.noWorkerFile(filename));
    this.pool = import('piscina').then(({ Piscina }) => new Piscina({ filename, minThreads: workers, maxThreads: workers, idleTimeout: 60_000 }));
  }
  async run(task: Task): Promise<TaskResult> {
    return (await this.pool).run(task) as Promise<TaskResult>;
  }
  async start(): Promise<void> {
    await this.pool;
  }
  async close(): Promise<void> {
    await (await this.pool).destroy();
  }
}

// Starting a pool costs 0.3-0.6 s (bench/search: transformer-5b on 16x32 takes 0.03 s inline, gpt3-175b
// on 4x4x4x8 0.3-0.8 s), so by default a search runs inline and starts the pool only once it has
// worked this long: then there is enough left for more cores to pay for it.
export const AUTO_INLINE_SECONDS = 1;

/** The default: inline for a quick search, a pool of `max` workers once the search proves long. */
class AutoRunner implements Runner {
  private readonly inline = new InlineRunner();
  private pool: PoolRunner | null = null;
  private busy = 0;
  constructor(private readonly max: number, private readonly inlineMs: number) {}
  get workers(): number {
    return this.pool ? this.max : 0;
  }
  run(task: Task): Promise<TaskResult> {
    if (this.pool === null && this.busy < this.inlineMs) {
      const t0 = performance.now();
      try {
        return this.inline.run(task);
      } finally {
        this.busy += performance.now() - t0;
      }
    }
    this.pool ??= new PoolRunner(this.max);
    return this.pool.run(task);
  }
  async start(): Promise<void> {}
  async close(): Promise<void> {
    await this.pool?.close();
  }
}

/** `workers` 0: inline; a number: a pool of that many; undefined: inline, then a pool of `auto` after `inlineSeconds`. */
export function makeRunner(workers: number | undefined, auto: number, inlineSeconds = AUTO_INLINE_SECONDS): Runner {
  if (workers === undefined) return new AutoRunner(auto, inlineSeconds * 1000);
  return workers <= 0 ? new InlineRunner() : new PoolRunner(workers);
}

/** The first line of an error, without its stack: what a one-line report can carry. */
const firstLine = (s: string) => s.split('\n')[0].trim();

/**
 * Run a share; a failure (a crashed thread, or an exception in the worker, reported as data) is
 * retried once, then the search fails with one line naming the share and both errors.
 */
export async function runShare(runner: Runner, task: Task, what: string, crashes: (attempt: number) => boolean | 'throw'): Promise<TaskResult> {
  let first = '';
  for (let attempt = 0; attempt < 2; attempt++) {
    let failure: string;
    let crashed = true;
    try {
      const fault = crashes(attempt);
      const result = await runner.run(fault ? { ...task, crash: fault } : task);
      if (result.kind !== 'error') return result;
      failure = firstLine(result.error);
      crashed = false;
    } catch (e) {
      if (e instanceof SearchFailed) throw e;
      failure = firstLine((e as Error)?.message ?? String(e));
    }
    if (attempt === 0) {
      first = failure;
      continue;
    }
    throw new SearchFailed(crashed ? MESSAGES.crashedTwice(what, first, failure) : MESSAGES.workerError(what, `${first}; then ${failure}`));
  }
  throw new Error('unreachable');
}
