import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import type { Task, TaskResult } from './protocol.js';
import { runTask } from './task.js';

/** Runs shares of the search: on a piscina pool, or inline with the very same code. */
export interface Runner {
  readonly workers: number;
  run(task: Task): Promise<TaskResult>;
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
  workerError: (what: string, error: string) => `the search failed: a worker reported an error on ${what}: ${error}`,
  noWorkerFile: (path: string) => `the search worker ${path} is missing: build it with npm run build`,
};

/** dist/search/worker.js, also when this module runs from src/ (under vitest or tsx). */
export function workerPath(): string {
  const here = fileURLToPath(import.meta.url);
  const path = here.replace(/[\\/]src[\\/]search[\\/]pool\.[tj]s$/, '/dist/search/worker.js').replace(/pool\.js$/, 'worker.js');
  return path;
}

/** Inline: a simulated crash is an exception, so the retry path is the same as the pool's. */
class InlineRunner implements Runner {
  readonly workers = 0;
  async run(task: Task): Promise<TaskResult> {
    if (task.crash) throw new Error('worker exited (injected crash)');
    return runTask(task);
  }
  async close(): Promise<void> {}
}

class PoolRunner implements Runner {
  private readonly pool: Piscina;
  constructor(readonly workers: number) {
    const filename = workerPath();
    if (!existsSync(filename)) throw new SearchFailed(MESSAGES.noWorkerFile(filename));
    this.pool = new Piscina({ filename, minThreads: workers, maxThreads: workers, idleTimeout: 60_000 });
  }
  run(task: Task): Promise<TaskResult> {
    return this.pool.run(task) as Promise<TaskResult>;
  }
  async close(): Promise<void> {
    await this.pool.destroy();
  }
}

export function makeRunner(workers: number): Runner {
  return workers <= 0 ? new InlineRunner() : new PoolRunner(workers);
}

/** Run a share; a crash (a rejected run) is retried once, an error reported as data fails at once. */
export async function runShare(runner: Runner, task: Task, what: string, crashes: (attempt: number) => boolean): Promise<TaskResult> {
  let first = '';
  for (let attempt = 0; attempt < 2; attempt++) {
    let result: TaskResult;
    try {
      result = await runner.run(crashes(attempt) ? { ...task, crash: true } : task);
    } catch (e) {
      const msg = (e as Error)?.message ?? String(e);
      if (attempt === 0) {
        first = msg;
        continue;
      }
      throw new SearchFailed(MESSAGES.crashedTwice(what, first, msg));
    }
    if (result.kind === 'error') throw new SearchFailed(MESSAGES.workerError(what, result.error));
    return result;
  }
  throw new Error('unreachable');
}
