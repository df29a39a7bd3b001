// Verifies a peer's X.509-SVID chain: the SPIFFE X.509-SVID profile (§4, §5)
// plus RFC 5280 path validation up to a root of the trust bundle. Runs once
// per new connection, so it never throws on bad input (every refusal is a
// value with a stable reason code, usable as a metric label), does the cheap
// profile checks before any signature, and keeps per-bundle state: the roots'
// KeyObjects, and the intermediates it has already verified (keyed by their
// exact DER), so that a steady stream of peers from one CA costs one parse
// and one signature check per connection.
import { createPublicKey, verify as verifySignature } from 'node:crypto';
import { DerError, Tag, children, content, expectTag, readRoot } from './der.js';
import { OID, KeyUsageBit } from './oids.js';
import { parseCertificate } from './parse-certificate.js';
import { parseSpiffeId } from './spiffe-id.js';
/** Stable reason codes, snake_case so they can be Prometheus label values. */
export const SVID_REJECT_REASONS = [
    'malformed',
    'empty_chain',
    'chain_too_long',
    'root_only',
    'leaf_is_ca',
    'leaf_missing_basic_constraints',
    'san_count',
    'bad_spiffe_id',
    'trust_domain_mismatch',
    'key_usage_missing',
    'key_usage_not_critical',
    'key_usage_no_digital_signature',
    'key_usage_cert_sign',
    'eku_incomplete',
    'unknown_critical_extension',
    'unknown_issuer',
    'unsupported_algorithm',
    'bad_signature',
    'issuer_not_ca',
    'issuer_key_usage',
    'path_len_exceeded',
    'name_constraints_violation',
    'unsupported_name_constraints',
    'expired',
    'not_yet_valid',
    'revoked',
    // only from verifyPeer (tls.ts): no certificate at all, or OpenSSL refused
    // a chain this verifier accepted
    'no_peer_certificate',
    'tls_verify_failed',
];
/**
 * At most this many certificates are accepted from a peer, and a built path
 * (leaf … root, root included) is at most this long.
 */
export const MAX_CHAIN_LENGTH = 5;
/** Bound on signature checks per call while trying candidate issuers. */
const MAX_SIGNATURE_CHECKS = 8;
/** Bound on cached verified intermediates per bundle. */
const MAX_CACHED_CAS = 256;
/** Extensions this verifier understands; any other marked critical is refused. */
const KNOWN_EXTENSIONS = new Set([
    OID.basicConstraints,
    OID.keyUsage,
    OID.extKeyUsage,
    OID.subjectAltName,
    OID.subjectKeyIdentifier,
    OID.authorityKeyIdentifier,
    OID.nameConstraints,
]);
/** Signature algorithm OID → [digest, key type]. */
const SIGNATURE_ALGORITHMS = new Map([
    [OID.ecdsaWithSha256, ['sha256', 'ec']],
    ['1.2.840.10045.4.3.3', ['sha384', 'ec']],
    ['1.2.840.10045.4.3.4', ['sha512', 'ec']],
    [OID.sha256WithRsa, ['sha256', 'rsa']],
    ['1.2.840.113549.1.1.12', ['sha384', 'rsa']],
    ['1.2.840.113549.1.1.13', ['sha512', 'rsa']],
]);
const BIT_DIGITAL_SIGNATURE = 1 << KeyUsageBit.digitalSignature;
const BIT_KEY_CERT_SIGN = 1 << KeyUsageBit.keyCertSign;
const BIT_CRL_SIGN = 1 << KeyUsageBit.cRLSign;
const states = new WeakMap();
function stateFor(bundle) {
    let s = states.get(bundle);
    // a bundle whose roots array was swapped gets fresh state
    if (s === undefined || s.roots !== bundle.roots) {
        s = {
            roots: bundle.roots,
            anchors: bundle.roots.map((cert) => ({ cert, key: undefined, verifiedBy: [] })),
            cas: new Map(),
        };
        states.set(bundle, s);
    }
    return s;
}
function keyOf(entry) {
    if (entry.key === undefined) {
        try {
            entry.key = createPublicKey({ key: entry.cert.spki, format: 'der', type: 'spki' });
        }
        catch {
            entry.key = null;
        }
    }
    return entry.key;
}
function reject(reason, message) {
    return { ok: false, reason, message };
}
function errorText(e) {
    return e instanceof Error ? e.message : String(e);
}
function unknownCritical(cert) {
    for (const [oid, ext] of cert.extensions) {
        if (ext.critical && !KNOWN_EXTENSIONS.has(oid))
            return oid;
    }
    return undefined;
}
/** Name chaining plus, when both are present, AKI = SKI. */
function namesIssuer(child, issuer) {
    if (!child.issuerDer.equals(issuer.subjectDer))
        return false;
    const aki = child.authorityKeyId;
    const ski = issuer.subjectKeyId;
    return aki === undefined || ski === undefined || aki.equals(ski);
}
const isSelfIssued = (c) => c.subjectDer.equals(c.issuerDer);
function describe(c) {
    return `certificate with serial ${c.serialHex}`;
}
const constraintCache = new WeakMap();
/** The CA's URI constraints, undefined without the extension, or a string saying why they are unsupported. */
function nameConstraintsOf(ca) {
    const ext = ca.extensions.get(OID.nameConstraints);
    if (ext === undefined)
        return undefined;
    let nc = constraintCache.get(ca);
    if (nc === undefined) {
        nc = parseNameConstraints(ext.value);
        constraintCache.set(ca, nc);
    }
    return nc;
}
function parseNameConstraints(der) {
    try {
        let permitted;
        const excluded = [];
        for (const part of children(expectTag(readRoot(der), Tag.SEQUENCE, 'NameConstraints'))) {
            if (part.tag !== 0xa0 && part.tag !== 0xa1)
                return `unexpected field tag 0x${part.tag.toString(16)}`;
            const list = part.tag === 0xa0 ? (permitted ??= []) : excluded;
            for (const subtree of children(part)) {
                const [base, ...rest] = children(expectTag(subtree, Tag.SEQUENCE, 'GeneralSubtree'));
                if (base === undefined || rest.length > 0)
                    return 'minimum/maximum are not allowed';
                if (base.tag !== 0x86)
                    return `constrains name form 0x${base.tag.toString(16)}, only URI is supported`;
                list.push(content(base).toString('latin1').toLowerCase());
            }
        }
        return { permitted, excluded };
    }
    catch (e) {
        return e instanceof DerError ? `malformed: ${e.message}` : 'malformed';
    }
}
/** RFC 5280: ".example.org" matches any host below it, "example.org" only itself. */
function hostMatches(host, constraint) {
    if (constraint.startsWith('.'))
        return host.length > constraint.length && host.endsWith(constraint);
    return host === constraint;
}
function uriHost(uri) {
    const m = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)/i.exec(uri);
    if (m === null)
        return undefined;
    const host = m[1].slice(m[1].lastIndexOf('@') + 1).replace(/:\d*$/, '');
    return host === '' ? undefined : host.toLowerCase();
}
function checkNameConstraints(path) {
    for (let k = 1; k < path.length; k++) {
        const nc = nameConstraintsOf(path[k]);
        if (nc === undefined)
            continue;
        if (typeof nc === 'string')
            return reject('unsupported_name_constraints', `${describe(path[k])} nameConstraints: ${nc}`);
        for (let j = 0; j < k; j++) {
            const c = path[j];
            if (j > 0 && isSelfIssued(c))
                continue;
            for (const uri of c.uris) {
                const host = uriHost(uri);
                const ok = host !== undefined &&
                    (nc.permitted === undefined || nc.permitted.some((p) => hostMatches(host, p))) &&
                    !nc.excluded.some((x) => hostMatches(host, x));
                if (!ok)
                    return reject('name_constraints_violation', `URI ${uri} of ${describe(c)} violates the name constraints of ${describe(path[k])}`);
            }
        }
    }
    return undefined;
}
/** Path building state for one call. */
class PathBuilder {
    anchors;
    pool;
    path;
    used;
    signatureChecks = 0;
    failure;
    constructor(leaf, anchors, pool) {
        this.anchors = anchors;
        this.pool = pool;
        this.path = [leaf];
        this.used = pool.map(() => false);
    }
    fail(r) {
        // keep the first concrete failure; a later, deeper one replaces unknown_issuer
        if (this.failure === undefined || this.failure.reason === 'unknown_issuer')
            this.failure = r;
    }
    /** Extends the path above `child`; true when it ends at an anchor. */
    extend(child, childEntry) {
        for (const anchor of this.anchors) {
            if (!namesIssuer(child, anchor.cert))
                continue;
            if (this.accept(child, childEntry, anchor)) {
                this.path.push(anchor.cert);
                return true;
            }
        }
        for (let i = 0; i < this.pool.length; i++) {
            const candidate = this.pool[i];
            if (this.used[i] || !namesIssuer(child, candidate.cert))
                continue;
            if (this.path.length + 2 > MAX_CHAIN_LENGTH) {
                this.fail(reject('chain_too_long', `path would exceed ${MAX_CHAIN_LENGTH} certificates`));
                continue;
            }
            if (!this.accept(child, childEntry, candidate))
                continue;
            this.used[i] = true;
            this.path.push(candidate.cert);
            if (this.extend(candidate.cert, candidate))
                return true;
            this.path.pop();
            this.used[i] = false;
        }
        if (this.failure === undefined) {
            this.fail(reject('unknown_issuer', `no trusted or presented CA issued the ${describe(child)}`));
        }
        return false;
    }
    /** RFC 5280 checks of `issuer` as the CA above `child`, then the signature. */
    accept(child, childEntry, issuer) {
        const ca = issuer.cert;
        if (ca.basicConstraints?.ca !== true) {
            this.fail(reject('issuer_not_ca', `issuer ${describe(ca)} is not a CA (basicConstraints CA is not true)`));
            return false;
        }
        if (ca.keyUsage !== undefined && (ca.keyUsage & BIT_KEY_CERT_SIGN) === 0) {
            this.fail(reject('issuer_key_usage', `issuer ${describe(ca)} lacks keyUsage keyCertSign`));
            return false;
        }
        const pathLen = ca.basicConstraints.pathLen;
        if (pathLen !== undefined) {
            // intermediates between the leaf and this CA, self-issued ones excepted
            let below = 0;
            for (let i = 1; i < this.path.length; i++)
                if (!isSelfIssued(this.path[i]))
                    below++;
            if (below > pathLen) {
                this.fail(reject('path_len_exceeded', `issuer ${describe(ca)} allows ${pathLen} CA(s) below it, found ${below}`));
                return false;
            }
        }
        const oid = unknownCritical(ca);
        if (oid !== undefined) {
            this.fail(reject('unknown_critical_extension', `issuer ${describe(ca)} has unknown critical extension ${oid}`));
            return false;
        }
        if (childEntry !== undefined && childEntry.verifiedBy.includes(ca))
            return true;
        const alg = SIGNATURE_ALGORITHMS.get(child.signatureAlgorithm);
        if (alg === undefined) {
            this.fail(reject('unsupported_algorithm', `${describe(child)} is signed with unsupported algorithm ${child.signatureAlgorithm}`));
            return false;
        }
        const key = keyOf(issuer);
        if (key === null) {
            this.fail(reject('malformed', `issuer ${describe(ca)} has an unusable public key`));
            return false;
        }
        if (key.asymmetricKeyType !== alg[1]) {
            this.fail(reject('bad_signature', `${describe(child)}: ${child.signatureAlgorithm} does not match the issuer's ${key.asymmetricKeyType} key`));
            return false;
        }
        if (++this.signatureChecks > MAX_SIGNATURE_CHECKS) {
            this.fail(reject('chain_too_long', `more than ${MAX_SIGNATURE_CHECKS} candidate signatures to check`));
            return false;
        }
        let good = false;
        try {
            good = verifySignature(alg[0], child.tbs, key, child.signature);
        }
        catch {
            good = false;
        }
        if (!good) {
            this.fail(reject('bad_signature', `signature on ${describe(child)} does not verify under issuer ${describe(ca)}`));
            return false;
        }
        if (childEntry !== undefined) {
            if (childEntry.verifiedBy.length >= 4)
                childEntry.verifiedBy.length = 0;
            childEntry.verifiedBy.push(ca);
        }
        return true;
    }
}
/**
 * Verifies `chain` (DER, leaf first, then the intermediates as the peer sent
 * them) as an X.509-SVID of the expected trust domain, anchored in `bundle`.
 * Never throws.
 */
export function verifySvid(chain, opts) {
    try {
        return verify(chain, opts);
    }
    catch (e) {
        return reject('malformed', `unexpected input: ${errorText(e)}`);
    }
}
function verify(chain, opts) {
    const n = chain.length;
    if (n === 0)
        return reject('empty_chain', 'no certificate presented');
    if (n > MAX_CHAIN_LENGTH)
        return reject('chain_too_long', `${n} certificates presented, at most ${MAX_CHAIN_LENGTH} accepted`);
    const state = stateFor(opts.bundle);
    let leaf;
    try {
        leaf = parseCertificate(chain[0]);
    }
    catch (e) {
        return reject('malformed', `leaf certificate: ${errorText(e)}`);
    }
    // ---- SPIFFE X.509-SVID leaf profile (no crypto yet)
    const bc = leaf.basicConstraints;
    if (bc?.ca === true) {
        const isRoot = isSelfIssued(leaf) || state.roots.some((r) => r.der.equals(leaf.der));
        return isRoot
            ? reject('root_only', 'the chain starts with a root CA certificate, not a leaf SVID')
            : reject('leaf_is_ca', 'leaf SVID has basicConstraints CA=true');
    }
    if (bc === undefined)
        return reject('leaf_missing_basic_constraints', 'leaf SVID lacks basicConstraints (CA=false is required)');
    if (leaf.uris.length !== 1)
        return reject('san_count', `leaf SVID has ${leaf.uris.length} URI SANs, exactly one is required`);
    let spiffeId;
    let trustDomain;
    try {
        const id = parseSpiffeId(leaf.uris[0]);
        if (id.path === '')
            return reject('bad_spiffe_id', `leaf SPIFFE ID ${id.toString()} has no path`);
        spiffeId = id.toString();
        trustDomain = id.trustDomain;
    }
    catch (e) {
        return reject('bad_spiffe_id', errorText(e));
    }
    const expected = opts.trustDomain ?? opts.bundle.trustDomain;
    if (trustDomain !== expected) {
        return reject('trust_domain_mismatch', `leaf is in trust domain ${trustDomain}, expected ${expected}`);
    }
    const ku = leaf.keyUsage;
    if (ku === undefined)
        return reject('key_usage_missing', 'leaf SVID lacks keyUsage');
    if (!leaf.extensions.get(OID.keyUsage).critical)
        return reject('key_usage_not_critical', 'leaf SVID keyUsage is not critical');
    if ((ku & BIT_DIGITAL_SIGNATURE) === 0)
        return reject('key_usage_no_digital_signature', 'leaf SVID keyUsage lacks digitalSignature');
    if ((ku & (BIT_KEY_CERT_SIGN | BIT_CRL_SIGN)) !== 0)
        return reject('key_usage_cert_sign', 'leaf SVID keyUsage has keyCertSign or cRLSign');
    const eku = leaf.extKeyUsage;
    if (eku !== undefined && !(eku.includes(OID.serverAuth) && eku.includes(OID.clientAuth))) {
        return reject('eku_incomplete', 'leaf SVID extKeyUsage must include both serverAuth and clientAuth');
    }
    const critical = unknownCritical(leaf);
    if (critical !== undefined)
        return reject('unknown_critical_extension', `leaf SVID has unknown critical extension ${critical}`);
    // ---- the presented CA certificates, parsed once (verified ones are cached)
    const pool = [];
    for (let i = 1; i < n; i++) {
        const der = chain[i];
        // a peer (or Node's getPeerCertificate) may append a bundle root: the anchor serves
        if (state.anchors.some((a) => a.cert.der.equals(der)))
            continue;
        const cacheKey = der.toString('latin1');
        let entry = state.cas.get(cacheKey);
        if (entry === undefined) {
            let cert;
            try {
                cert = parseCertificate(der);
            }
            catch (e) {
                return reject('malformed', `certificate ${i}: ${errorText(e)}`);
            }
            entry = { cert, key: undefined, verifiedBy: [] };
        }
        pool.push(entry);
    }
    // ---- path building and signatures
    const builder = new PathBuilder(leaf, state.anchors, pool);
    if (!builder.extend(leaf, undefined))
        return builder.failure;
    const path = builder.path;
    const violation = checkNameConstraints(path);
    if (violation !== undefined)
        return violation;
    // ---- validity of every certificate on the path
    const now = opts.now === undefined ? Date.now() : opts.now.getTime();
    for (const c of path) {
        if (now < c.notBefore.getTime())
            return reject('not_yet_valid', `${describe(c)} is not valid before ${c.notBefore.toISOString()}`);
        if (now > c.notAfter.getTime())
            return reject('expired', `${describe(c)} expired at ${c.notAfter.toISOString()}`);
    }
    // ---- revocation
    const rev = opts.revocations;
    if (rev !== undefined) {
        if (rev.spiffeIds.has(spiffeId))
            return reject('revoked', `SPIFFE ID ${spiffeId} is revoked`);
        for (const c of path) {
            if (rev.serials.has(c.serialHex))
                return reject('revoked', `${describe(c)} is revoked`);
        }
    }
    // remember the verified intermediates (exact DER) for the next peer
    for (let i = 1; i < path.length - 1; i++) {
        const cert = path[i];
        const cacheKey = cert.der.toString('latin1');
        if (state.cas.has(cacheKey))
            continue;
        if (state.cas.size >= MAX_CACHED_CAS)
            state.cas.delete(state.cas.keys().next().value);
        // the cached copy owns its bytes: the caller may reuse the buffer it passed
        const entry = pool.find((e) => e.cert === cert);
        state.cas.set(cacheKey, { cert: parseCertificate(Buffer.from(cert.der)), key: entry.key, verifiedBy: entry.verifiedBy });
    }
    return { ok: true, spiffeId, leaf, path };
}
//# sourceMappingURL=verify-svid.js.map