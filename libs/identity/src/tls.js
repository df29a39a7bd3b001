// node:tls options and peer verification for mesh mTLS with X.509-SVIDs.
//
// OpenSSL checks the chain during the handshake (validity, signatures, CA
// flags, purpose/EKU/keyUsage, critical extensions); verifySvid then applies
// the SPIFFE profile, the trust domain and the revocation list, which OpenSSL
// knows nothing about. verifyPeer must gate every connection, on both sides.
//
// Two Node facts shape this module:
// - A tls.Server ignores `secureContext`: it builds one shared context from
//   cert/key/ca when created (rotate with server.setSecureContext). A client
//   honours `secureContext`, so tls.connect reuses the one built here.
// - When a server refuses a client certificate inside the handshake
//   (rejectUnauthorized), Node destroys the socket without telling the server
//   why, and in TLS 1.3 the client sees a successful connect followed by a
//   clean end. With `deferPeerRejection` the handshake completes, and
//   verifyPeer refuses the peer with a reason code.
import tls from 'node:tls';
import { certsToPem } from './pem.js';
import { bundleToPem } from './trust-bundle.js';
import { MAX_CHAIN_LENGTH, verifySvid } from './verify-svid.js';
/** TLS 1.3 suites first; for 1.2 only ECDHE with AEAD. */
export const SVID_CIPHERS = [
    'TLS_AES_128_GCM_SHA256',
    'TLS_AES_256_GCM_SHA384',
    'TLS_CHACHA20_POLY1305_SHA256',
    'ECDHE-ECDSA-AES128-GCM-SHA256',
    'ECDHE-RSA-AES128-GCM-SHA256',
    'ECDHE-ECDSA-AES256-GCM-SHA384',
    'ECDHE-RSA-AES256-GCM-SHA384',
    'ECDHE-ECDSA-CHACHA20-POLY1305',
    'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');
function chainPem(chain) {
    return typeof chain === 'string' ? chain : certsToPem(chain);
}
function keyPem(key) {
    if (typeof key === 'string' || Buffer.isBuffer(key))
        return key;
    return key.export({ format: 'pem', type: 'pkcs8' });
}
/** SVIDs carry a URI SAN, not a DNS name: identity is checked by verifyPeer. */
const skipHostnameCheck = () => undefined;
export function svidTlsOptions(config) {
    const base = {
        cert: chainPem(config.certChain),
        key: keyPem(config.privateKey),
        ca: bundleToPem(config.bundle),
        minVersion: config.minVersion ?? 'TLSv1.2',
        maxVersion: config.maxVersion ?? 'TLSv1.3',
        ciphers: config.ciphers ?? SVID_CIPHERS,
        honorCipherOrder: true,
    };
    const secureContext = tls.createSecureContext(base);
    return {
        ...base,
        secureContext,
        requestCert: true,
        rejectUnauthorized: config.deferPeerRejection !== true,
        checkServerIdentity: skipHostnameCheck,
    };
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
export function peerChain(socket) {
    const out = [];
    let cert = socket.getPeerCertificate(true);
    while (cert !== undefined && cert !== null && Buffer.isBuffer(cert.raw) && out.length <= MAX_CHAIN_LENGTH) {
        out.push(cert.raw);
        const next = cert.issuerCertificate;
        if (next === cert || next === undefined || (Buffer.isBuffer(next.raw) && next.raw.equals(cert.raw)))
            break;
        cert = next;
    }
    return out;
}
const chains = new WeakMap();
/**
 * Verifies the peer of an established mTLS socket as an X.509-SVID. Also
 * disables TLS 1.2 renegotiation, so the verified identity cannot change
 * afterwards. Never throws; on refusal, destroy the socket.
 */
export function verifyPeer(socket, opts) {
    try {
        socket.disableRenegotiation();
    }
    catch {
        // a destroyed socket: the chain below is empty and the peer is refused
    }
    // getPeerCertificate(true) costs several times the verification itself
    // (Node builds objects and fingerprints for every certificate); with
    // renegotiation off the chain cannot change, so a socket verified again
    // (e.g. per HTTP request on a kept-alive connection) reuses it.
    let chain = chains.get(socket);
    if (chain === undefined) {
        try {
            chain = peerChain(socket);
        }
        catch {
            chain = [];
        }
        if (chain.length > 0)
            chains.set(socket, chain);
    }
    if (chain.length === 0)
        return { ok: false, reason: 'no_peer_certificate', message: 'the peer presented no certificate' };
    const result = verifySvid(chain, opts);
    if (result.ok && !socket.authorized) {
        // OpenSSL refused what the SVID verifier accepts: never override it
        const code = String(socket.authorizationError ?? 'unknown');
        return { ok: false, reason: 'tls_verify_failed', message: `OpenSSL refused the peer chain: ${code}` };
    }
    return result;
}
//# sourceMappingURL=tls.js.map