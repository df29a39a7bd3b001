// What the transport needs from the identity layer: one function that checks
// a connected peer's SVID (chain to the bundle, trust domain, revocations),
// e.g. `(s) => verifyPeer(s, { bundle, revocations })` from @amime/identity.

import type { TLSSocket } from 'node:tls';

export type PeerVerification =
  | { readonly ok: true; readonly spiffeId: string }
  | { readonly ok: false; readonly reason: string; readonly message: string };

/** Must not throw; called once per full handshake, before any application byte. */
export type VerifyPeerFn = (socket: TLSSocket) => PeerVerification;

/** A verified peer as remembered with a TLS session. */
export interface VerifiedPeer {
  readonly peerId: string;
  /** Lower-case hex, no leading zero bytes (as @amime/identity's normalizeSerial). */
  readonly serialHex: string;
  /** ms since the epoch; the session may not be trusted past it. */
  readonly notAfter: number;
}

/** Node's `serialNumber` (upper-case hex) in the normalized form. */
export function normalizeSerialHex(serial: string | undefined): string {
  if (typeof serial !== 'string' || serial.length === 0) return '';
  let hex = serial.replaceAll(':', '').toLowerCase();
  if (hex.length % 2 === 1) hex = '0' + hex;
  let i = 0;
  while (i < hex.length - 2 && hex[i] === '0' && hex[i + 1] === '0') i += 2;
  return hex.slice(i);
}

/**
 * The peer leaf's serial and expiry. Call only after the VerifyPeerFn: the
 * identity verifier reads the full chain first (abbreviated
 * getPeerCertificate() does not consume it, unlike getPeerX509Certificate()).
 */
export function peerLeafFacts(socket: TLSSocket): { serialHex: string; notAfter: number; fingerprint: string } | undefined {
  let cert;
  try {
    cert = socket.getPeerCertificate();
  } catch {
    return undefined;
  }
  if (cert === null || typeof cert !== 'object' || !Buffer.isBuffer(cert.raw)) return undefined;
  const notAfter = Date.parse(cert.valid_to);
  return {
    serialHex: normalizeSerialHex(cert.serialNumber),
    notAfter: Number.isFinite(notAfter) ? notAfter : 0,
    fingerprint: cert.fingerprint256,
  };
}
