import type { Accuracy } from './types.js';

/** Mean absolute percentage error, as a fraction. */
export function mape(predicted: readonly number[], measured: readonly number[]): number {
  let s = 0;
  for (let i = 0; i < measured.length; i++) s += Math.abs(predicted[i] - measured[i]) / measured[i];
  return measured.length ? s / measured.length : NaN;
}

/**
 * Kendall's tau-b, pooled over the pairs that `comparable` admits (here: different plans of the
 * same model on the same mesh, the choices a search makes); null when there is no such pair.
 */
export function kendallTau(predicted: readonly number[], measured: readonly number[], comparable: (i: number, j: number) => boolean = () => true): number | null {
  let concordant = 0;
  let discordant = 0;
  let pairs = 0;
  let tiesP = 0;
  let tiesM = 0;
  for (let i = 0; i < measured.length; i++) {
    for (let j = i + 1; j < measured.length; j++) {
      if (!comparable(i, j)) continue;
      pairs++;
      const a = Math.sign(predicted[i] - predicted[j]);
      const b = Math.sign(measured[i] - measured[j]);
      if (a === 0) tiesP++;
      if (b === 0) tiesM++;
      if (a * b > 0) concordant++;
      else if (a * b < 0) discordant++;
    }
  }
  const denom = Math.sqrt((pairs - tiesP) * (pairs - tiesM));
  return denom > 0 ? (concordant - discordant) / denom : null;
}

export function accuracy(predicted: readonly number[], measured: readonly number[], comparable?: (i: number, j: number) => boolean): Accuracy {
  return { mape: mape(predicted, measured), kendallTau: kendallTau(predicted, measured, comparable) };
}
