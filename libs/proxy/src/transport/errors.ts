// The transport's error catalog: one base class, stable codes
// (AMIME_ERR_PEER_* for outbound connections, AMIME_ERR_PROXY_* for the rest)
// and a snake_case reason usable as a metric label.

export const PEER_CONNECT_ERROR_CODES = [
  /** TCP connect or TLS handshake failed (refused, reset, TLS alert). */
  'AMIME_ERR_PEER_CONNECT',
  /** The handshake did not finish within handshakeTimeoutMs. */
  'AMIME_ERR_PEER_TIMEOUT',
  /** The peer's certificate failed verification (reason from the verifier). */
  'AMIME_ERR_PEER_VERIFY',
  /** The peer is a valid SVID, but not the identity we expected. */
  'AMIME_ERR_PEER_IDENTITY',
  /** The peer negotiated another ALPN protocol (or none). */
  'AMIME_ERR_PEER_ALPN',
  /** No TLS context for the source identity (no SVID yet, or the provider threw). */
  'AMIME_ERR_PEER_CONTEXT',
] as const;

export type PeerConnectErrorCode = (typeof PEER_CONNECT_ERROR_CODES)[number];

export class TransportError extends Error {
  constructor(
    readonly code: string,
    /** snake_case, a bounded set: safe as a metric label value. */
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class PeerConnectError extends TransportError {
  declare readonly code: PeerConnectErrorCode;
  constructor(code: PeerConnectErrorCode, reason: string, message: string) {
    super(code, reason, message);
  }
}

/** Invalid options or arguments: a programming or configuration error, thrown at the edge. */
export class TransportConfigError extends TransportError {
  constructor(message: string) {
    super('AMIME_ERR_PROXY_CONFIG', 'invalid_config', message);
  }
}

/** Ends a splice that saw no byte in either direction for idleTimeoutMs. */
export class IdleTimeoutError extends TransportError {
  constructor(ms: number) {
    super('AMIME_ERR_PROXY_IDLE_TIMEOUT', 'idle_timeout', `no data in either direction for ${ms} ms`);
  }
}

/** A Node error code (ECONNREFUSED, ERR_SSL_...) as a label value; 'connect_failed' without one. */
export function reasonOf(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[A-Z0-9_]{1,64}$/.test(code) ? code.toLowerCase() : 'connect_failed';
}

/** Positive finite integer (or undefined → fallback); throws TransportConfigError naming the option. */
export function positiveInt(name: string, value: number | undefined, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < min) {
    throw new TransportConfigError(`${name} must be an integer >= ${min}, got ${String(value)}`);
  }
  return value;
}
