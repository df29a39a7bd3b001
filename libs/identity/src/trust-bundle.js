// Trust bundles: the root CA certificates of one trust domain, with the
// sequence number and refresh hint of the SPIFFE bundle format
// (https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE_Trust_Domain_and_Bundle.md §4).
// Bundles are validated where they enter (parse, create) and are immutable
// afterwards; verifySvid keeps its per-bundle caches keyed by the object.
import { createHash, createPublicKey } from 'node:crypto';
import { parseCertificate } from './parse-certificate.js';
import { certsToPem, fromPem } from './pem.js';
import { parseTrustDomain } from './spiffe-id.js';
export class TrustBundleError extends Error {
    field;
    code = 'AMIME_ERR_IDENTITY_TRUST_BUNDLE';
    /** The offending field, e.g. `keys[1].x5c` or `spiffe_sequence`. */
    constructor(field, message) {
        super(`${field}: ${message}`);
        this.field = field;
        this.name = 'TrustBundleError';
    }
}
export const DEFAULT_REFRESH_HINT_SECONDS = 300;
export const MAX_BUNDLE_ROOTS = 64;
/** Largest SPIFFE bundle document accepted, in bytes of JSON. */
export const MAX_BUNDLE_JSON_BYTES = 1 << 20;
function checkSequence(n, field) {
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
        throw new TrustBundleError(field, `must be a non-negative integer, got ${JSON.stringify(n)}`);
    }
    return n;
}
function checkRefreshHint(n, field) {
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n <= 0) {
        throw new TrustBundleError(field, `must be a positive number of seconds, got ${JSON.stringify(n)}`);
    }
    return n;
}
function checkTrustDomain(td) {
    try {
        return parseTrustDomain(td);
    }
    catch (e) {
        throw new TrustBundleError('trustDomain', e.message);
    }
}
function parseRoot(der, field) {
    let cert;
    try {
        cert = parseCertificate(der);
    }
    catch (e) {
        throw new TrustBundleError(field, `not a valid DER certificate: ${e.message}`);
    }
    if (cert.basicConstraints?.ca !== true)
        throw new TrustBundleError(field, 'is not a CA certificate (basicConstraints CA=true required)');
    return cert;
}
function build(trustDomain, roots, sequence, refreshHintSeconds, rootsField) {
    if (roots.length === 0)
        throw new TrustBundleError(rootsField, 'no X.509 root certificates');
    if (roots.length > MAX_BUNDLE_ROOTS)
        throw new TrustBundleError(rootsField, `more than ${MAX_BUNDLE_ROOTS} roots`);
    return Object.freeze({ trustDomain, roots: Object.freeze(roots), sequence, refreshHintSeconds });
}
function addUnique(roots, cert, field) {
    const dup = roots.findIndex((r) => r.der.equals(cert.der));
    if (dup >= 0)
        throw new TrustBundleError(field, `duplicates root #${dup}`);
    roots.push(cert);
}
export function createTrustBundle(opts) {
    const trustDomain = checkTrustDomain(opts.trustDomain);
    const sequence = checkSequence(opts.sequence ?? 0, 'sequence');
    const refresh = checkRefreshHint(opts.refreshHintSeconds ?? DEFAULT_REFRESH_HINT_SECONDS, 'refreshHintSeconds');
    if (!Array.isArray(opts.roots))
        throw new TrustBundleError('roots', 'must be an array of DER buffers');
    const roots = [];
    opts.roots.forEach((der, i) => {
        if (!Buffer.isBuffer(der))
            throw new TrustBundleError(`roots[${i}]`, 'must be a Buffer');
        // own the bytes: the caller may reuse its buffer
        addUnique(roots, parseRoot(Buffer.from(der), `roots[${i}]`), `roots[${i}]`);
    });
    return build(trustDomain, roots, sequence, refresh, 'roots');
}
const EC_CURVES = new Set(['P-256', 'P-384', 'P-521']);
/** The public JWK parameters of a certificate's key (EC or RSA only). */
function jwkOf(cert, field) {
    let jwk;
    try {
        jwk = createPublicKey({ key: cert.spki, format: 'der', type: 'spki' }).export({ format: 'jwk' });
    }
    catch (e) {
        throw new TrustBundleError(field, `unusable public key: ${e.message}`);
    }
    if (jwk.kty === 'EC' && EC_CURVES.has(jwk.crv))
        return { kty: 'EC', crv: jwk.crv, x: jwk.x, y: jwk.y };
    if (jwk.kty === 'RSA')
        return { kty: 'RSA', n: jwk.n, e: jwk.e };
    throw new TrustBundleError(field, `key type ${jwk.kty}${jwk.crv ? ` ${jwk.crv}` : ''} is not EC (P-256/384/521) or RSA`);
}
/** The SPIFFE bundle (a JWK Set) for `bundle`; JSON.stringify it to publish. */
export function toSpiffeBundle(bundle) {
    return {
        keys: bundle.roots.map((cert, i) => ({
            use: 'x509-svid',
            ...jwkOf(cert, `roots[${i}]`),
            x5c: [cert.der.toString('base64')],
        })),
        spiffe_sequence: bundle.sequence,
        spiffe_refresh_hint: bundle.refreshHintSeconds,
    };
}
const TOP_LEVEL_FIELDS = new Set(['keys', 'spiffe_sequence', 'spiffe_refresh_hint']);
const X509_KEY_FIELDS = new Set(['use', 'kty', 'crv', 'x', 'y', 'n', 'e', 'x5c', 'kid']);
const PRIVATE_KEY_FIELDS = new Set(['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k']);
const BASE64URL = /^[A-Za-z0-9_-]+$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
function isObject(v) {
    return typeof v === 'object' && v !== null && !Array.isArray(v);
}
function parseKey(key, field) {
    for (const name of Object.keys(key)) {
        if (PRIVATE_KEY_FIELDS.has(name))
            throw new TrustBundleError(`${field}.${name}`, 'private key material must never appear in a bundle');
        if (!X509_KEY_FIELDS.has(name))
            throw new TrustBundleError(`${field}.${name}`, 'unknown field');
    }
    const x5c = key['x5c'];
    if (!Array.isArray(x5c) || x5c.length !== 1)
        throw new TrustBundleError(`${field}.x5c`, 'must hold exactly one certificate');
    const b64 = x5c[0];
    if (typeof b64 !== 'string' || b64.length === 0 || !BASE64.test(b64)) {
        throw new TrustBundleError(`${field}.x5c[0]`, 'must be standard base64 (not base64url) DER');
    }
    const cert = parseRoot(Buffer.from(b64, 'base64'), `${field}.x5c[0]`);
    const want = jwkOf(cert, `${field}.x5c[0]`);
    if (key['kty'] !== 'EC' && key['kty'] !== 'RSA')
        throw new TrustBundleError(`${field}.kty`, `must be "EC" or "RSA", got ${JSON.stringify(key['kty'])}`);
    if (key['kty'] !== want.kty)
        throw new TrustBundleError(`${field}.kty`, `is ${key['kty']} but the x5c certificate has an ${want.kty} key`);
    const params = want.kty === 'EC' ? ['crv', 'x', 'y'] : ['n', 'e'];
    for (const p of params) {
        const v = key[p];
        if (typeof v !== 'string' || (p !== 'crv' && !BASE64URL.test(v))) {
            throw new TrustBundleError(`${field}.${p}`, p === 'crv' ? 'must be a curve name' : 'must be unpadded base64url');
        }
        if (v !== want[p])
            throw new TrustBundleError(`${field}.${p}`, 'does not match the key of the x5c certificate');
    }
    for (const p of want.kty === 'EC' ? ['n', 'e'] : ['crv', 'x', 'y']) {
        if (p in key)
            throw new TrustBundleError(`${field}.${p}`, `not a parameter of a ${want.kty} key`);
    }
    if ('kid' in key && typeof key['kid'] !== 'string')
        throw new TrustBundleError(`${field}.kid`, 'must be a string');
    return cert;
}
/**
 * Parses and validates a SPIFFE bundle (object or JSON text) for
 * `trustDomain`. Keys whose `use` is not `x509-svid` (e.g. `jwt-svid`) are
 * ignored, as the specification asks; anything malformed is refused with a
 * TrustBundleError naming the field.
 */
export function parseSpiffeBundle(json, trustDomain) {
    const td = checkTrustDomain(trustDomain);
    let doc = json;
    if (typeof json === 'string') {
        if (Buffer.byteLength(json) > MAX_BUNDLE_JSON_BYTES)
            throw new TrustBundleError('$', `larger than ${MAX_BUNDLE_JSON_BYTES} bytes`);
        try {
            doc = JSON.parse(json);
        }
        catch (e) {
            throw new TrustBundleError('$', `not JSON: ${e.message}`);
        }
    }
    if (!isObject(doc))
        throw new TrustBundleError('$', 'must be a JSON object (a JWK Set)');
    for (const name of Object.keys(doc)) {
        if (!TOP_LEVEL_FIELDS.has(name))
            throw new TrustBundleError(name, 'unknown field');
    }
    const sequence = doc['spiffe_sequence'] === undefined ? 0 : checkSequence(doc['spiffe_sequence'], 'spiffe_sequence');
    const refresh = doc['spiffe_refresh_hint'] === undefined
        ? DEFAULT_REFRESH_HINT_SECONDS
        : checkRefreshHint(doc['spiffe_refresh_hint'], 'spiffe_refresh_hint');
    const keys = doc['keys'];
    if (!Array.isArray(keys))
        throw new TrustBundleError('keys', 'must be an array');
    const roots = [];
    keys.forEach((key, i) => {
        const field = `keys[${i}]`;
        if (!isObject(key))
            throw new TrustBundleError(field, 'must be an object');
        if (typeof key['use'] !== 'string')
            throw new TrustBundleError(`${field}.use`, 'must be present (a string)');
        if (key['use'] !== 'x509-svid')
            return;
        addUnique(roots, parseKey(key, field), field);
    });
    return build(td, roots, sequence, refresh, 'keys');
}
// ------------------------------------------------------------ PEM
/** The roots as concatenated PEM, e.g. for node:tls `ca`. */
export function bundleToPem(bundle) {
    return certsToPem(bundle.roots.map((r) => r.der));
}
/** A bundle from PEM text holding only CERTIFICATE blocks (anything else is refused). */
export function bundleFromPem(pem, trustDomain, sequence = 0, refreshHintSeconds = DEFAULT_REFRESH_HINT_SECONDS) {
    const td = checkTrustDomain(trustDomain);
    const seq = checkSequence(sequence, 'sequence');
    const refresh = checkRefreshHint(refreshHintSeconds, 'refreshHintSeconds');
    let ders;
    try {
        ders = fromPem(pem, 'CERTIFICATE');
    }
    catch (e) {
        throw new TrustBundleError('pem', e.message);
    }
    const blocks = pem.match(/^-----BEGIN /gm)?.length ?? 0;
    if (blocks !== ders.length)
        throw new TrustBundleError('pem', `holds ${blocks - ders.length} block(s) that are not CERTIFICATE`);
    const roots = [];
    ders.forEach((der, i) => addUnique(roots, parseRoot(der, `pem[${i}]`), `pem[${i}]`));
    return build(td, roots, seq, refresh, 'pem');
}
/**
 * SHA-256 (hex) over the roots, independent of their order: the digest of the
 * sorted per-root digests. Equal fingerprints mean equal root sets.
 */
export function bundleFingerprint(bundle) {
    const digests = bundle.roots.map((r) => createHash('sha256').update(r.der).digest()).sort(Buffer.compare);
    const h = createHash('sha256');
    for (const d of digests)
        h.update(d);
    return h.digest('hex');
}
//# sourceMappingURL=trust-bundle.js.map