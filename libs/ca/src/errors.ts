// One error type for the CA's API with a stable code (used as a metric label
// and in JSON error bodies) and the HTTP status it maps to.
export type CaErrorCode =
  | 'AMIME_ERR_CA_BAD_REQUEST'
  | 'AMIME_ERR_CA_BAD_CSR'
  | 'AMIME_ERR_CA_TOKEN'
  | 'AMIME_ERR_CA_NOT_ASSIGNED'
  | 'AMIME_ERR_CA_FORBIDDEN'
  | 'AMIME_ERR_CA_UNAUTHENTICATED'
  | 'AMIME_ERR_CA_NOT_FOUND'
  | 'AMIME_ERR_CA_METHOD_NOT_ALLOWED'
  | 'AMIME_ERR_CA_CONFLICT'
  | 'AMIME_ERR_CA_REVOKED'
  | 'AMIME_ERR_CA_TOO_LARGE'
  | 'AMIME_ERR_CA_STATE';

const STATUS: Record<CaErrorCode, number> = {
  AMIME_ERR_CA_BAD_REQUEST: 400,
  AMIME_ERR_CA_BAD_CSR: 400,
  AMIME_ERR_CA_TOKEN: 403,
  AMIME_ERR_CA_NOT_ASSIGNED: 403,
  AMIME_ERR_CA_FORBIDDEN: 403,
  AMIME_ERR_CA_UNAUTHENTICATED: 401,
  AMIME_ERR_CA_NOT_FOUND: 404,
  AMIME_ERR_CA_METHOD_NOT_ALLOWED: 405,
  AMIME_ERR_CA_CONFLICT: 409,
  AMIME_ERR_CA_REVOKED: 403,
  AMIME_ERR_CA_TOO_LARGE: 413,
  AMIME_ERR_CA_STATE: 500,
};

export class CaError extends Error {
  readonly status: number;
  constructor(
    readonly code: CaErrorCode,
    message: string,
    /** A short snake_case cause, e.g. 'token_reused', for logs and metrics. */
    readonly reason: string = code.slice('AMIME_ERR_CA_'.length).toLowerCase(),
  ) {
    super(message);
    this.name = 'CaError';
    this.status = STATUS[code];
  }
}
