import tls from 'node:tls';
import type { KeyObject } from 'node:crypto';
import { type TrustBundle } from './trust-bundle.js';
import type { RevocationSet } from './revocation.js';
import { type SvidVerification } from './verify-svid.js';
/** TLS 1.3 suites first; for 1.2 only ECDHE with AEAD. */
export declare const SVID_CIPHERS: string;
export interface SvidTlsConfig {
    /** Our SVID: PEM (leaf then intermediates) or DER buffers, leaf first. */
    certChain: string | readonly Buffer[];
    /** PEM text, PKCS#8 DER, or a KeyObject. */
    privateKey: string | Buffer | KeyObject;
    bundle: TrustBundle;
    /** Default 'TLSv1.2' (TLS 1.3 is negotiated whenever both sides have it). */
    minVersion?: 'TLSv1.2' | 'TLSv1.3';
    /** Default 'TLSv1.3'; 'TLSv1.2' only to test or interoperate. */
    maxVersion?: 'TLSv1.2' | 'TLSv1.3';
    ciphers?: string;
    /**
     * Finish handshakes with peers OpenSSL refuses, so that verifyPeer can
     * refuse them with a reason (for metrics and logs). Every socket MUST then
     * pass verifyPeer before any byte is read from or written to it.
     */
    deferPeerRejection?: boolean;
}
/**
 * Options for tls.createServer and tls.connect. The server uses cert/key/ca;
 * tls.connect uses `secureContext` (built once here) and ignores them.
 */
export type SvidTlsOptions = tls.TlsOptions & tls.ConnectionOptions & {
    readonly secureContext: tls.SecureContext;
    readonly requestCert: true;
    readonly rejectUnauthorized: boolean;
};
export declare function svidTlsOptions(config: SvidTlsConfig): SvidTlsOptions;
export interface VerifyPeerOptions {
    readonly bundle: TrustBundle;
    readonly revocations?: RevocationSet;
    readonly trustDomain?: string;
    readonly now?: Date;
}
/**
 * The peer's certificate chain as DER, leaf first, from
 * getPeerCertificate(true)'s issuerCertificate links (which may end with the
 * root from our own store; verifySvid skips a bundle root). Empty without a
 * peer certificate.
 *
 * Never call socket.getPeerX509Certificate() before this: on Node 20 that
 * call consumes the peer chain, and a later getPeerCertificate(true) returns
 * only the leaf (or nothing on a client), so verification fails closed.
 */
export declare function peerChain(socket: tls.TLSSocket): Buffer[];
/**
 * Verifies the peer of an established mTLS socket as an X.509-SVID. Also
 * disables TLS 1.2 renegotiation, so the verified identity cannot change
 * afterwards. Never throws; on refusal, destroy the socket.
 */
export declare function verifyPeer(socket: tls.TLSSocket, opts: VerifyPeerOptions): SvidVerification;
