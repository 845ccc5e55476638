import type { Task, TaskResult } from './protocol.js';
import { runTask } from './task.js';

/**
 * The piscina worker entry: imports the protocol types and what it computes (cost, never the
 * runtime). `crash` is fault injection for tests: the thread dies as a real crash would.
 */
export default function work(task: Task): TaskResult {
  if (task.crash === 'throw') return runTask({ ...task, crash: undefined, throws: true });
  if (task.crash) process.exit(70);
  return runTask(task);
}
