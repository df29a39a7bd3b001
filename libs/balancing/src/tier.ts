// A candidate set with cumulative weights, rebuilt on update() and on
// ejection changes, so that weighted random picks cost one binary search
// and allocate nothing.
import type { EndpointState } from './endpoint.js';
import type { Prng } from './prng.js';

export class Tier {
  readonly eps: EndpointState[] = [];
  /** ends[i] = sum of the weights of eps[0..i]; integers, so the arithmetic is exact. */
  readonly ends: number[] = [];
  total = 0;

  constructor(readonly id: number) {}

  get size(): number {
    return this.eps.length;
  }

  clear(): void {
    this.eps.length = 0;
    this.ends.length = 0;
    this.total = 0;
  }

  add(ep: EndpointState): void {
    ep.tierIndex[this.id] = this.eps.length;
    this.eps.push(ep);
    this.total += ep.weight;
    this.ends.push(this.total);
  }

  /** Position of `ep` in this tier, or -1. */
  indexOf(ep: EndpointState): number {
    const i = ep.tierIndex[this.id]!;
    return i >= 0 && this.eps[i] === ep ? i : -1;
  }

  /**
   * Index of a member drawn at random in proportion to weight, never `skipA`
   * nor `skipB` (pass -1 for none). The caller guarantees a member is left.
   * The draw is made over the remaining weight and shifted past the skipped
   * members' segments, so no retries are needed.
   */
  sample(prng: Prng, skipA: number, skipB: number): number {
    const lo = skipA < skipB ? skipA : skipB;
    const hi = skipA < skipB ? skipB : skipA;
    const eps = this.eps;
    const ends = this.ends;
    let total = this.total;
    if (lo >= 0) total -= eps[lo]!.weight;
    if (hi >= 0) total -= eps[hi]!.weight;
    let r = prng.below(total);
    if (lo >= 0 && r >= ends[lo]! - eps[lo]!.weight) r += eps[lo]!.weight;
    if (hi >= 0 && r >= ends[hi]! - eps[hi]!.weight) r += eps[hi]!.weight;
    // First i with ends[i] > r.
    let a = 0;
    let b = ends.length - 1;
    while (a < b) {
      const m = (a + b) >>> 1;
      if (ends[m]! > r) b = m;
      else a = m + 1;
    }
    return a;
  }
}
