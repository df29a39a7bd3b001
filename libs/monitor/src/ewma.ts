// Exponentially weighted mean and variance (West's incremental form), with a
// warm-up: the n-th sample weighs max(α, 1/n), so the first samples average
// plainly instead of creeping up from 0.

export interface Ewma {
  /** Samples taken. */
  n: number;
  mean: number;
  variance: number;
}

export const newEwma = (): Ewma => ({ n: 0, mean: 0, variance: 0 });

/** Adds `x` with weight `alpha` (scaled by `w` in [0, 1] for partial samples). */
export function ewmaUpdate(e: Ewma, x: number, alpha: number, w = 1): void {
  e.n++;
  const a = Math.max(alpha, 1 / e.n) * w;
  const d = x - e.mean;
  e.mean += a * d;
  e.variance = (1 - a) * (e.variance + a * d * d);
}
