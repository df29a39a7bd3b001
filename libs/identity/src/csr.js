// PKCS#10 certificate signing requests (RFC 2986) carrying one SPIFFE ID.
//
// Agents create them (createCsr); the CA parses them where they enter
// (parseCsr): size first, then structure, key, algorithm and SAN rules, and
// last the proof of possession (one native signature check over the
// CertificationRequestInfo bytes). Every refusal is a CsrError whose
// `reason` is a stable metric label.
import { sign, verify } from 'node:crypto';
import { DerError, Tag, children, content, expectTag, explicit, octetString, oid, readBitString, readBoolean, readOid, readRoot, readSmallInteger, seq, set, smallInteger, tlv, utf8String, whole, } from './der.js';
import { KeyError, inspectSpki, publicKeyFromSpki, signatureAlgorithmFor, } from './keys.js';
import { OID } from './oids.js';
import { parseGeneralNames } from './parse-certificate.js';
import { PemError, fromPem } from './pem.js';
import { SpiffeIdError, parseSpiffeId } from './spiffe-id.js';
/** Stable refusal reasons, snake_case for metric labels. */
export const CSR_REJECT_REASONS = [
    'malformed',
    'too_large',
    'bad_signature',
    'unsupported_key',
    'unsupported_algorithm',
    'san_count',
    'bad_spiffe_id',
    // from CertificateAuthority.signCsr: the CSR is sound but not for this request
    'spiffe_id_mismatch',
    'foreign_trust_domain',
];
export class CsrError extends Error {
    reason;
    code = 'AMIME_ERR_IDENTITY_CSR';
    constructor(reason, message) {
        super(message);
        this.reason = reason;
        this.name = 'CsrError';
    }
}
/** A P-256 CSR is ~300 bytes and an RSA-4096 one ~1.7 KB; anything near 8 KB is not ours. */
export const DEFAULT_MAX_CSR_BYTES = 8 * 1024;
// ------------------------------------------------------------------ create
// Subject O=amime: non-empty, so the SAN need not be critical (RFC 5280 §4.2.1.6).
const CSR_SUBJECT = seq(set(seq(oid(OID.organization), utf8String('amime'))));
/** GeneralNames with one uniformResourceIdentifier ([6] IMPLICIT IA5String). */
export function uriGeneralNames(uri) {
    return seq(tlv(0x86, Buffer.from(uri, 'ascii')));
}
/**
 * A DER PKCS#10 request for `spiffeId`, signed with the pair's private key:
 * subject O=amime, the SPIFFE ID as the only SAN in an extensionRequest.
 */
export function createCsr(keyPair, spiffeId) {
    const id = parseSpiffeId(spiffeId).toString();
    const san = seq(oid(OID.subjectAltName), octetString(uriGeneralNames(id)));
    const extensionRequest = seq(oid(OID.extensionRequest), set(seq(san)));
    const info = seq(smallInteger(0), CSR_SUBJECT, keyPair.spki, explicit(0, extensionRequest));
    const signature = sign('sha256', info, keyPair.privateKey);
    return seq(info, signatureAlgorithmFor(keyPair.algorithm), tlv(Tag.BIT_STRING, Buffer.concat([Buffer.from([0]), signature])));
}
// ------------------------------------------------------------------- parse
/**
 * Parses and verifies a CSR (DER Buffer, or PEM "CERTIFICATE REQUEST" as
 * string or Buffer). Throws CsrError; never returns a CSR whose signature,
 * key, algorithm or SAN is unacceptable.
 */
export function parseCsr(input, opts = {}) {
    const maxBytes = opts.maxBytes ?? DEFAULT_MAX_CSR_BYTES;
    const der = toDer(input, maxBytes);
    let parts;
    try {
        parts = readParts(der);
    }
    catch (err) {
        if (err instanceof DerError)
            throw new CsrError('malformed', `CSR is not valid DER PKCS#10: ${err.message}`);
        throw err;
    }
    const { publicKey, keyAlgorithm, spki } = readKey(parts.spki);
    checkSignatureAlgorithm(parts.signatureAlgorithm, keyAlgorithm);
    const { uris, sanCount, spiffeId } = readSan(parts.extensions);
    let ok = false;
    try {
        ok = verify('sha256', parts.info, publicKey, parts.signature);
    }
    catch {
        ok = false; // an undecodable ECDSA signature is just a bad signature
    }
    if (!ok)
        throw new CsrError('bad_signature', 'CSR signature does not verify with its own public key (no proof of possession)');
    return { der, spki, publicKey, keyAlgorithm, subjectDer: parts.subject, uris, spiffeId, sanCount, extensions: parts.extensions };
}
function toDer(input, maxBytes) {
    if (!Number.isInteger(maxBytes) || maxBytes < 1)
        throw new RangeError(`maxBytes must be a positive integer, got ${maxBytes}`);
    if (typeof input !== 'string' && !Buffer.isBuffer(input)) {
        throw new CsrError('malformed', 'CSR must be a Buffer (DER or PEM) or a PEM string');
    }
    // PEM text is ~4/3 of the DER plus armour; check before decoding anything
    if (input.length > maxBytes * 2) {
        throw new CsrError('too_large', `CSR of ${input.length} bytes exceeds the limit (${maxBytes} bytes DER)`);
    }
    let der;
    if (Buffer.isBuffer(input) && input[0] === Tag.SEQUENCE) {
        der = input;
    }
    else {
        const text = typeof input === 'string' ? input : input.toString('latin1');
        let blocks;
        try {
            blocks = fromPem(text, 'CERTIFICATE REQUEST');
        }
        catch (err) {
            if (err instanceof PemError)
                throw new CsrError('malformed', `CSR is neither DER nor valid PEM: ${err.message}`);
            throw err;
        }
        if (blocks.length !== 1) {
            throw new CsrError('malformed', `expected exactly one "CERTIFICATE REQUEST" PEM block, found ${blocks.length}`);
        }
        der = blocks[0];
    }
    if (der.length > maxBytes)
        throw new CsrError('too_large', `CSR of ${der.length} bytes exceeds the limit of ${maxBytes} bytes`);
    return der;
}
function readParts(der) {
    const root = expectTag(readRoot(der), Tag.SEQUENCE, 'CertificationRequest');
    const top = children(root);
    if (top.length !== 3)
        throw new DerError('CertificationRequest must have three fields');
    const [infoNode, algNode, sigNode] = top;
    const fields = children(expectTag(infoNode, Tag.SEQUENCE, 'CertificationRequestInfo'));
    if (fields.length !== 4)
        throw new DerError('CertificationRequestInfo must have four fields');
    const [versionNode, subjectNode, spkiNode, attrsNode] = fields;
    const version = readSmallInteger(versionNode);
    if (version !== 0)
        throw new DerError(`version must be 0 (v1), found ${version}`);
    expectTag(subjectNode, Tag.SEQUENCE, 'subject');
    expectTag(spkiNode, Tag.SEQUENCE, 'subjectPKInfo');
    expectTag(attrsNode, 0xa0, 'attributes');
    expectTag(algNode, Tag.SEQUENCE, 'signatureAlgorithm');
    const { bytes: signature, unusedBits } = readBitString(sigNode);
    if (unusedBits !== 0)
        throw new DerError('signature has unused bits');
    return {
        info: whole(infoNode),
        subject: whole(subjectNode),
        spki: spkiNode,
        extensions: readExtensionRequest(attrsNode),
        signatureAlgorithm: algNode,
        signature,
    };
}
/** The Extensions of the extensionRequest attribute (PKCS#9); other attributes are ignored. */
function readExtensionRequest(attrs) {
    const map = new Map();
    let seen = false;
    for (const attr of children(attrs)) {
        const [typeNode, valuesNode, ...rest] = children(expectTag(attr, Tag.SEQUENCE, 'Attribute'));
        if (!typeNode || !valuesNode || rest.length > 0)
            throw new DerError('Attribute must have a type and a value set');
        const values = children(expectTag(valuesNode, Tag.SET, 'Attribute values'));
        if (readOid(typeNode) !== OID.extensionRequest)
            continue;
        if (seen)
            throw new DerError('extensionRequest attribute appears twice');
        if (values.length !== 1)
            throw new DerError('extensionRequest must have exactly one value');
        seen = true;
        for (const ext of children(expectTag(values[0], Tag.SEQUENCE, 'Extensions'))) {
            const f = children(expectTag(ext, Tag.SEQUENCE, 'Extension'));
            const id = readOid(f[0] ?? fail('Extension without an OID'));
            let critical = false;
            let i = 1;
            if (f[i]?.tag === Tag.BOOLEAN) {
                critical = readBoolean(f[i++]);
                if (!critical)
                    throw new DerError(`extension ${id}: critical=FALSE must be omitted in DER`);
            }
            const value = f[i++] ?? fail(`extension ${id}: missing value`);
            if (i !== f.length)
                throw new DerError(`extension ${id}: unexpected fields`);
            expectTag(value, Tag.OCTET_STRING, `extension ${id} value`);
            if (map.has(id))
                throw new DerError(`extension ${id} appears twice`);
            map.set(id, { critical, value: content(value) });
        }
    }
    return map;
}
function fail(message) {
    throw new DerError(message);
}
function readKey(spkiNode) {
    // Checked in JavaScript and imported through JWK: OpenSSL's SPKI decoder
    // alone would cost more than the signature check (see keys.ts).
    const spki = whole(spkiNode);
    try {
        const info = inspectSpki(spki);
        return { publicKey: publicKeyFromSpki(info), keyAlgorithm: info.algorithm, spki };
    }
    catch (err) {
        if (err instanceof KeyError) {
            throw new CsrError(err.reason === 'unsupported_key' ? 'unsupported_key' : 'malformed', `CSR key: ${err.message}`);
        }
        throw err;
    }
}
function checkSignatureAlgorithm(node, keyAlgorithm) {
    let algorithm;
    let params;
    try {
        const f = children(node);
        algorithm = readOid(f[0] ?? fail('AlgorithmIdentifier without an OID'));
        params = f.slice(1);
    }
    catch (err) {
        throw new CsrError('malformed', `CSR signatureAlgorithm: ${err.message}`);
    }
    const isEc = keyAlgorithm === 'ec-p256';
    const expected = isEc ? OID.ecdsaWithSha256 : OID.sha256WithRsa;
    if (algorithm !== expected) {
        throw new CsrError('unsupported_algorithm', `CSR signature algorithm ${algorithm} is not supported for a ${keyAlgorithm} key; use ${isEc ? 'ecdsa-with-SHA256' : 'sha256WithRSAEncryption'}`);
    }
    // ECDSA: parameters absent (RFC 5758); RSA: NULL, or absent as some encoders do
    const paramsOk = isEc
        ? params.length === 0
        : params.length === 0 || (params.length === 1 && params[0].tag === Tag.NULL && params[0].end === params[0].contentStart);
    if (!paramsOk)
        throw new CsrError('malformed', `CSR signatureAlgorithm ${algorithm} has invalid parameters`);
}
function readSan(extensions) {
    const ext = extensions.get(OID.subjectAltName);
    if (!ext)
        throw new CsrError('san_count', 'CSR must request exactly one URI SAN (the SPIFFE ID); it requests no subjectAltName');
    let names;
    try {
        names = parseGeneralNames(ext.value);
    }
    catch (err) {
        throw new CsrError('malformed', `CSR subjectAltName: ${err.message}`);
    }
    if (names.count !== 1 || names.uris.length !== 1) {
        const others = names.count - names.uris.length;
        throw new CsrError('san_count', `CSR must request exactly one SAN, a URI (the SPIFFE ID); it requests ${names.uris.length} URI SAN(s) and ${others} other SAN(s)`);
    }
    const uri = names.uris[0];
    try {
        return { uris: names.uris, sanCount: names.count, spiffeId: parseSpiffeId(uri) };
    }
    catch (err) {
        if (err instanceof SpiffeIdError)
            throw new CsrError('bad_spiffe_id', `CSR URI SAN is not a valid SPIFFE ID: ${err.message}`);
        throw err;
    }
}
//# sourceMappingURL=csr.js.map