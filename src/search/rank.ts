import type { Candidate, Objective } from './protocol.js';

/**
 * The one order of plans: the objective, then the other figure, then the plan's place in the
 * space (layout rank, strategy index). It is total, so the answer never depends on which worker
 * saw a plan first.
 */
export function compare(objective: Objective, a: Candidate, b: Candidate): number {
  // Without a tuple of the four figures: a sort compares often, and each tuple was garbage.
  const time = objective === 'time';
  return (time ? a.step - b.step : a.memory - b.memory) || (time ? a.memory - b.memory : a.step - b.step) || a.rank - b.rank || a.strategy - b.strategy;
}

export function primary(objective: Objective, c: Candidate): number {
  return objective === 'time' ? c.step : c.memory;
}

/** Keep the best k (sorted), adding one candidate. */
export function pushTop(objective: Objective, top: Candidate[], c: Candidate, k: number): void {
  if (top.length >= k && compare(objective, c, top[top.length - 1]) >= 0) return;
  let i = top.length;
  while (i > 0 && compare(objective, c, top[i - 1]) < 0) i--;
  top.splice(i, 0, c);
  if (top.length > k) top.pop();
}

export function mergeTop(objective: Objective, lists: readonly Candidate[][], k: number): Candidate[] {
  const top: Candidate[] = [];
  for (const l of lists) for (const c of l) pushTop(objective, top, c, k);
  return top;
}

/**
 * The Pareto front of step time and memory among candidates whose objective is at most `cap`:
 * in the order of compare(), the plans that beat every plan before them on the other figure.
 */
export function paretoFront(objective: Objective, candidates: readonly Candidate[], cap: number): Candidate[] {
  const inScope = candidates.filter((c) => c.feasible && primary(objective, c) <= cap).sort((a, b) => compare(objective, a, b));
  const front: Candidate[] = [];
  let bestOther = Infinity;
  for (const c of inScope) {
    const other = objective === 'time' ? c.memory : c.step;
    if (other < bestOther) {
      front.push(c);
      bestOther = other;
    }
  }
  return front;
}

/**
 * Whether a known point rules out of the front every plan with step ≥ s and memory ≥ m: it is no
 * worse on both and better on one (so it comes first in the order and beats them on the other figure).
 */
export function dominated(front: readonly (readonly [number, number])[], s: number, m: number): boolean {
  for (let i = 0; i < front.length; i++) {
    const ps = front[i][0], pm = front[i][1];
    if (ps <= s && pm <= m && (ps < s || pm < m)) return true;
  }
  return false;
}
