// One error type for the control plane's admin API and resource writes, with
// a stable code (metric label, JSON error bodies) and the HTTP status.
import type { Issue } from '@amime/protocol';

export type ControlPlaneErrorCode =
  | 'AMIME_ERR_CP_BAD_REQUEST'
  | 'AMIME_ERR_CP_NOT_FOUND'
  | 'AMIME_ERR_CP_FORBIDDEN'
  | 'AMIME_ERR_CP_UNAUTHENTICATED'
  | 'AMIME_ERR_CP_TOO_LARGE'
  | 'AMIME_ERR_CP_METHOD_NOT_ALLOWED'
  | 'AMIME_ERR_CP_UNSUPPORTED_MEDIA_TYPE'
  | 'AMIME_ERR_CP_CONFLICT'
  | 'AMIME_ERR_CP_TIMEOUT'
  | 'AMIME_ERR_CP_INTERNAL';

/** The HTTP status each code is answered with. */
export const CONTROL_PLANE_ERROR_STATUS: Readonly<Record<ControlPlaneErrorCode, number>> = {
  AMIME_ERR_CP_BAD_REQUEST: 400,
  AMIME_ERR_CP_UNAUTHENTICATED: 401,
  AMIME_ERR_CP_FORBIDDEN: 403,
  AMIME_ERR_CP_NOT_FOUND: 404,
  AMIME_ERR_CP_METHOD_NOT_ALLOWED: 405,
  AMIME_ERR_CP_TIMEOUT: 408,
  AMIME_ERR_CP_CONFLICT: 409,
  AMIME_ERR_CP_TOO_LARGE: 413,
  AMIME_ERR_CP_UNSUPPORTED_MEDIA_TYPE: 415,
  AMIME_ERR_CP_INTERNAL: 500,
};

export class ControlPlaneError extends Error {
  constructor(
    readonly code: ControlPlaneErrorCode,
    readonly status: number,
    message: string,
    /** A short snake_case cause, e.g. 'derived_kind', for logs and metrics. */
    readonly reason: string = code.slice('AMIME_ERR_CP_'.length).toLowerCase(),
    /** Validation problems, each with its document index and field path. */
    readonly issues?: readonly Issue[],
  ) {
    super(message);
    this.name = 'ControlPlaneError';
  }
}

/** A ControlPlaneError with the status its code maps to. */
export function cpError(code: ControlPlaneErrorCode, message: string, reason?: string, issues?: readonly Issue[]): ControlPlaneError {
  return new ControlPlaneError(code, CONTROL_PLANE_ERROR_STATUS[code], message, reason, issues);
}
