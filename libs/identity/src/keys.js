// Key pairs for SVIDs and CAs. Keys stay node:crypto KeyObjects (native,
// reusable across signatures); the SPKI DER is kept alongside because it goes
// verbatim into CSRs and certificates.
import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { DerError, Tag, children, expectTag, nullValue, oid, readBitString, readIntegerBytes, readOid, readRoot, seq, } from './der.js';
import { OID } from './oids.js';
import { fromPemSingle, toPem } from './pem.js';
export const KEY_ALGORITHMS = ['ec-p256', 'rsa-2048'];
export class KeyError extends Error {
    reason;
    code = 'AMIME_ERR_IDENTITY_KEY';
    constructor(reason, message) {
        super(message);
        this.reason = reason;
        this.name = 'KeyError';
    }
}
const RSA_SIZES = new Set([2048, 3072, 4096]);
const MIN_RSA_EXPONENT = 65537n;
export function generateKeyPair(algorithm) {
    let pair;
    if (algorithm === 'ec-p256')
        pair = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    else if (algorithm === 'rsa-2048')
        pair = generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 0x10001 });
    else
        throw new KeyError('unsupported_key', `unknown key algorithm ${JSON.stringify(algorithm)}; use one of ${KEY_ALGORITHMS.join(', ')}`);
    return { algorithm, ...pair, spki: spkiOf(pair.publicKey) };
}
/**
 * The amime name of a key's algorithm (private or public KeyObject). Throws
 * KeyError('unsupported_key') for anything but P-256 and RSA 2048/3072/4096
 * with a standard public exponent.
 */
export function keyAlgorithmOf(key) {
    const type = key.asymmetricKeyType;
    const details = key.asymmetricKeyDetails ?? {};
    if (type === 'ec') {
        if (details.namedCurve === 'prime256v1')
            return 'ec-p256';
        throw new KeyError('unsupported_key', `EC curve ${details.namedCurve ?? '(unknown)'} is not supported; use P-256`);
    }
    if (type === 'rsa') {
        const bits = details.modulusLength ?? 0;
        if (!RSA_SIZES.has(bits)) {
            throw new KeyError('unsupported_key', `RSA modulus of ${bits} bits is not supported; use 2048, 3072 or 4096 bits`);
        }
        const e = details.publicExponent ?? 0n;
        // FIPS 186-4: 2^16 < e, odd; tiny exponents are a classic foot-gun
        if (e < MIN_RSA_EXPONENT || e % 2n === 0n) {
            throw new KeyError('unsupported_key', `RSA public exponent ${e} is not supported; use 65537`);
        }
        return `rsa-${bits}`;
    }
    throw new KeyError('unsupported_key', `key type ${type ?? '(none)'} is not supported; use P-256 or RSA`);
}
/** DER SubjectPublicKeyInfo of a public (or private) key, in canonical form. */
export function spkiOf(key) {
    const pub = key.type === 'private' ? createPublicKey(key) : key;
    return pub.export({ type: 'spki', format: 'der' });
}
/** The private key as unencrypted PKCS#8 PEM ("PRIVATE KEY"). Store it 0600. */
export function exportPrivateKeyPem(key) {
    if (key.type !== 'private')
        throw new KeyError('malformed', 'exportPrivateKeyPem needs a private key');
    return toPem('PRIVATE KEY', key.export({ type: 'pkcs8', format: 'der' }));
}
/**
 * Reads exactly one unencrypted PKCS#8 "PRIVATE KEY" PEM block and returns
 * the full key pair. Legacy "EC PRIVATE KEY"/"RSA PRIVATE KEY" files are
 * refused: convert them with `openssl pkcs8 -topk8 -nocrypt`.
 */
export function importPrivateKeyPem(pem) {
    let der;
    try {
        der = fromPemSingle(pem, 'PRIVATE KEY');
    }
    catch (err) {
        throw new KeyError('malformed', `private key: ${err.message} (expected PKCS#8 "PRIVATE KEY" PEM)`);
    }
    let privateKey;
    try {
        privateKey = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
    }
    catch (err) {
        throw new KeyError('malformed', `private key: not a valid PKCS#8 key (${err.message})`);
    }
    return keyPairFromPrivateKey(privateKey);
}
/** Completes a private KeyObject into a KeyPair, checking that the algorithm is supported. */
export function keyPairFromPrivateKey(privateKey) {
    if (privateKey.type !== 'private')
        throw new KeyError('malformed', 'expected a private key');
    const algorithm = keyAlgorithmOf(privateKey);
    const publicKey = createPublicKey(privateKey);
    return { algorithm, privateKey, publicKey, spki: spkiOf(publicKey) };
}
// RFC 5758 §3.2: ecdsa-with-SHA256 has no parameters; RFC 4055 §5:
// sha256WithRSAEncryption carries an explicit NULL.
const ECDSA_SHA256 = seq(oid(OID.ecdsaWithSha256));
const RSA_SHA256 = seq(oid(OID.sha256WithRsa), nullValue());
/**
 * DER AlgorithmIdentifier of the signatures this key makes with
 * `crypto.sign('sha256', data, key)` (ECDSA: DER-encoded, as X.509 wants;
 * RSA: PKCS#1 v1.5). Shared constant buffers: do not modify.
 */
export function signatureAlgorithmFor(algorithm) {
    return algorithm === 'ec-p256' ? ECDSA_SHA256 : RSA_SHA256;
}
// ------------------------------------------------------- SPKI fast path
//
// OpenSSL 3's DER decoder and encoder cost ~250 us per public key, more than
// an ECDSA verification. SPKIs that enter from CSRs are therefore checked
// here in JavaScript (strict DER, supported algorithm and size, canonical
// form, so they can be copied into certificates verbatim) and turned into
// KeyObjects through JWK, which skips the decoder.
/** SEQUENCE { SEQUENCE { ecPublicKey, prime256v1 }, BIT STRING (0 unused bits) 04 || X || Y }. */
const P256_SPKI_PREFIX = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex');
const P256_SPKI_LENGTH = P256_SPKI_PREFIX.length + 65;
/**
 * Checks a DER SubjectPublicKeyInfo without OpenSSL: P-256 (uncompressed
 * point) or RSA 2048/3072/4096 with a standard exponent, in canonical DER.
 * Throws KeyError ('unsupported_key' or 'malformed'). Does not check that an
 * EC point is on the curve: importing it (publicKeyFromSpki) does.
 */
export function inspectSpki(spki) {
    if (spki.length === P256_SPKI_LENGTH && spki.subarray(0, P256_SPKI_PREFIX.length).equals(P256_SPKI_PREFIX)) {
        const bits = spki.subarray(P256_SPKI_PREFIX.length);
        if (bits[0] !== 0x04)
            throw new KeyError('unsupported_key', 'P-256 public keys must be uncompressed points');
        return {
            algorithm: 'ec-p256',
            bits,
            jwk: { kty: 'EC', crv: 'P-256', x: bits.subarray(1, 33).toString('base64url'), y: bits.subarray(33).toString('base64url') },
        };
    }
    try {
        return inspectOtherSpki(spki);
    }
    catch (err) {
        if (err instanceof DerError)
            throw new KeyError('malformed', `public key is not a valid SubjectPublicKeyInfo: ${err.message}`);
        throw err;
    }
}
function inspectOtherSpki(spki) {
    const [alg, key, ...rest] = children(expectTag(readRoot(spki), Tag.SEQUENCE, 'SubjectPublicKeyInfo'));
    if (!alg || !key || rest.length > 0)
        throw new DerError('SubjectPublicKeyInfo must have two fields');
    const [algOid, params, ...more] = children(expectTag(alg, Tag.SEQUENCE, 'AlgorithmIdentifier'));
    if (!algOid || more.length > 0)
        throw new DerError('bad AlgorithmIdentifier');
    const algorithm = readOid(algOid);
    if (algorithm === OID.ecPublicKey) {
        const curve = params?.tag === Tag.OID ? readOid(params) : '(not a named curve)';
        if (curve !== OID.prime256v1)
            throw new KeyError('unsupported_key', `EC curve ${curve} is not supported; use P-256`);
        throw new KeyError('unsupported_key', 'P-256 public keys must be uncompressed points');
    }
    if (algorithm !== OID.rsaEncryption) {
        throw new KeyError('unsupported_key', `public key algorithm ${algorithm} is not supported; use P-256 or RSA`);
    }
    // RFC 3279 §2.3.1: the parameters MUST be NULL
    if (!params || params.tag !== Tag.NULL || params.end !== params.contentStart) {
        throw new DerError('rsaEncryption parameters must be NULL');
    }
    const { bytes: bits, unusedBits } = readBitString(key);
    if (unusedBits !== 0)
        throw new DerError('subjectPublicKey has unused bits');
    const [n, e, ...extra] = children(expectTag(readRoot(bits), Tag.SEQUENCE, 'RSAPublicKey'));
    if (!n || !e || extra.length > 0)
        throw new DerError('RSAPublicKey must have two fields');
    const modulus = positive(n, 'modulus');
    const exponent = positive(e, 'exponent');
    const size = (modulus.length - 1) * 8 + (32 - Math.clz32(modulus[0]));
    if (!RSA_SIZES.has(size)) {
        throw new KeyError('unsupported_key', `RSA modulus of ${size} bits is not supported; use 2048, 3072 or 4096 bits`);
    }
    const expValue = exponent.length > 32 ? 0n : BigInt(`0x${exponent.toString('hex')}`);
    if (expValue < MIN_RSA_EXPONENT || expValue % 2n === 0n) {
        throw new KeyError('unsupported_key', `RSA public exponent ${exponent.length > 32 ? '(too large)' : expValue} is not supported; use 65537`);
    }
    return {
        algorithm: `rsa-${size}`,
        bits,
        jwk: { kty: 'RSA', n: modulus.toString('base64url'), e: exponent.toString('base64url') },
    };
}
/** A positive INTEGER's magnitude, without the sign byte. */
function positive(node, what) {
    const b = readIntegerBytes(node);
    if (b[0] & 0x80)
        throw new DerError(`RSA ${what} is negative`);
    const m = b[0] === 0 ? b.subarray(1) : b;
    if (m.length === 0)
        throw new DerError(`RSA ${what} is zero`);
    return m;
}
/**
 * A public KeyObject for an SPKI already checked by inspectSpki, imported
 * through JWK (which also checks that an EC point is on the curve).
 */
export function publicKeyFromSpki(info) {
    try {
        return createPublicKey({ key: info.jwk, format: 'jwk' });
    }
    catch (err) {
        throw new KeyError('malformed', `public key cannot be imported: ${err.message}`);
    }
}
//# sourceMappingURL=keys.js.map