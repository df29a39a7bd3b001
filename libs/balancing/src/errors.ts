// One error type for the balancing library, with a stable code. Thrown only
// where configuration enters (the constructor and update()), never by pick(),
// start() or finish(), which run on the data-plane hot path.
export type BalancingErrorCode =
  /** BalancerOptions are invalid (unknown algorithm, a non-positive time, a percent out of range). */
  | 'AMIME_ERR_BALANCING_OPTIONS'
  /** An endpoint set passed to update() is invalid (duplicate key, weight out of 1..1000, bad port). */
  | 'AMIME_ERR_BALANCING_ENDPOINT';

export class BalancingError extends Error {
  constructor(
    readonly code: BalancingErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'BalancingError';
  }
}
