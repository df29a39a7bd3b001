// Errors of the agent's identity manager: one class, a stable code per
// reason (AMIME_ERR_AGENT_IDENTITY_<REASON>), messages that say the fix.

export const IDENTITY_ERROR_REASONS = [
  /** An option is missing or malformed (thrown by the constructor). */
  'bad_options',
  /** No usable stored agent SVID and no join token to get one. */
  'no_token',
  /** The stored agent SVID has expired: only a new join token brings the node back. */
  'agent_expired',
  /** The CA refused the join (token unknown, reused, expired, for another node, revoked ID). */
  'join_refused',
  /** The CA refused a request or could not be reached. */
  'ca_failed',
  /** The CA answered with something that is not an SVID for our CSR. */
  'bad_answer',
  /** The SPIFFE ID is not one this agent manages. */
  'unknown_identity',
  /** The identity is managed but has no SVID yet (first issuance still failing). */
  'not_ready',
  /** start() was not called, or stop() was. */
  'not_running',
] as const;
export type IdentityErrorReason = (typeof IDENTITY_ERROR_REASONS)[number];

export class IdentityError extends Error {
  readonly code: `AMIME_ERR_AGENT_IDENTITY_${Uppercase<IdentityErrorReason>}`;
  constructor(
    readonly reason: IdentityErrorReason,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'IdentityError';
    this.code = `AMIME_ERR_AGENT_IDENTITY_${reason.toUpperCase() as Uppercase<IdentityErrorReason>}`;
  }
}
