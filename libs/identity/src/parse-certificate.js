// Decode the parts of an X.509 certificate that SVID rules and RFC 5280 path
// validation look at. Strict: anything malformed throws a DerError naming
// the part; extensions are kept with their criticality so that verifiers can
// refuse critical extensions they do not understand.
import { DerError, Tag, children, content, expectTag, readBitString, readBoolean, readIntegerBytes, readOid, readRoot, readSmallInteger, readTime, whole, } from './der.js';
import { OID } from './oids.js';
export function serialToHex(bytes) {
    let i = 0;
    while (i < bytes.length - 1 && bytes[i] === 0)
        i++;
    return bytes.subarray(i).toString('hex');
}
/** Parse an AlgorithmIdentifier, returning its OID. */
export function readAlgorithm(node) {
    expectTag(node, Tag.SEQUENCE, 'AlgorithmIdentifier');
    const parts = children(node);
    if (parts.length < 1 || parts.length > 2)
        throw new DerError('AlgorithmIdentifier: wrong number of fields');
    return readOid(parts[0]);
}
export function parseSpki(node) {
    expectTag(node, Tag.SEQUENCE, 'SubjectPublicKeyInfo');
    const [alg, key] = children(node);
    if (!alg || !key)
        throw new DerError('SubjectPublicKeyInfo: missing fields');
    expectTag(alg, Tag.SEQUENCE, 'SubjectPublicKeyInfo.algorithm');
    const algParts = children(alg);
    const algorithm = readOid(algParts[0]);
    let curve;
    if (algorithm === OID.ecPublicKey && algParts[1] && algParts[1].tag === Tag.OID)
        curve = readOid(algParts[1]);
    const { bytes, unusedBits } = readBitString(key);
    if (unusedBits !== 0)
        throw new DerError('subjectPublicKey has unused bits');
    return curve ? { algorithm, bits: bytes, curve } : { algorithm, bits: bytes };
}
/** Decode GeneralNames: URIs and a count of every name. */
export function parseGeneralNames(der) {
    const root = readRoot(der);
    expectTag(root, Tag.SEQUENCE, 'GeneralNames');
    const names = children(root);
    const uris = [];
    for (const n of names) {
        if (n.tag === 0x86)
            uris.push(content(n).toString('latin1'));
    }
    return { uris, count: names.length };
}
function parseExtensions(node) {
    const map = new Map();
    const list = expectTag(children(node)[0], Tag.SEQUENCE, 'Extensions');
    for (const ext of children(list)) {
        expectTag(ext, Tag.SEQUENCE, 'Extension');
        const parts = children(ext);
        const id = readOid(parts[0]);
        let critical = false;
        let valueNode = parts[1];
        if (valueNode && valueNode.tag === Tag.BOOLEAN) {
            critical = readBoolean(valueNode);
            // DER: a DEFAULT FALSE field is omitted, never encoded as false
            if (!critical)
                throw new DerError(`extension ${id}: critical=FALSE must be omitted in DER`);
            valueNode = parts[2];
        }
        if (!valueNode)
            throw new DerError(`extension ${id}: missing value`);
        expectTag(valueNode, Tag.OCTET_STRING, `extension ${id} value`);
        if (map.has(id))
            throw new DerError(`extension ${id} appears twice`);
        map.set(id, { critical, value: content(valueNode) });
    }
    return map;
}
export function parseCertificate(der) {
    const root = readRoot(der);
    expectTag(root, Tag.SEQUENCE, 'Certificate');
    const top = children(root);
    if (top.length !== 3)
        throw new DerError('Certificate must have three fields');
    const [tbsNode, sigAlgNode, sigNode] = top;
    expectTag(tbsNode, Tag.SEQUENCE, 'tbsCertificate');
    const f = children(tbsNode);
    let i = 0;
    let version = 1;
    if (f[i]?.tag === 0xa0) {
        version = readSmallInteger(children(f[i])[0]) + 1;
        i++;
    }
    const serialBytes = readIntegerBytes(f[i++]);
    if (serialBytes[0] & 0x80)
        throw new DerError('serial number is negative');
    const innerAlg = readAlgorithm(f[i++]);
    const issuerNode = expectTag(f[i++], Tag.SEQUENCE, 'issuer');
    const validity = children(expectTag(f[i++], Tag.SEQUENCE, 'validity'));
    if (validity.length !== 2)
        throw new DerError('validity must have two times');
    const subjectNode = expectTag(f[i++], Tag.SEQUENCE, 'subject');
    const spkiNode = f[i++];
    if (!spkiNode)
        throw new DerError('tbsCertificate: missing subjectPublicKeyInfo');
    const spki = parseSpki(spkiNode);
    let extensions = new Map();
    for (; i < f.length; i++) {
        const n = f[i];
        if (n.tag === 0xa3)
            extensions = parseExtensions(n);
        else if (n.tag !== 0x81 && n.tag !== 0x82)
            throw new DerError(`tbsCertificate: unexpected field tag 0x${n.tag.toString(16)}`);
    }
    const signatureAlgorithm = readAlgorithm(sigAlgNode);
    if (signatureAlgorithm !== innerAlg)
        throw new DerError('signatureAlgorithm differs from tbsCertificate.signature');
    const { bytes: signature } = readBitString(sigNode);
    let basicConstraints;
    const bc = extensions.get(OID.basicConstraints);
    if (bc) {
        const seqNode = expectTag(readRoot(bc.value), Tag.SEQUENCE, 'basicConstraints');
        const parts = children(seqNode);
        let ca = false;
        let pathLen;
        let j = 0;
        if (parts[j]?.tag === Tag.BOOLEAN)
            ca = readBoolean(parts[j++]);
        if (parts[j]?.tag === Tag.INTEGER)
            pathLen = readSmallInteger(parts[j++]);
        if (j !== parts.length)
            throw new DerError('basicConstraints: unexpected fields');
        basicConstraints = pathLen === undefined ? { ca } : { ca, pathLen };
    }
    let keyUsage;
    const ku = extensions.get(OID.keyUsage);
    if (ku) {
        const { bytes } = readBitString(readRoot(ku.value));
        keyUsage = 0;
        // bit 0 is the most significant bit of the first byte
        for (let b = 0; b < bytes.length * 8 && b < 16; b++) {
            if (bytes[b >> 3] & (0x80 >> (b & 7)))
                keyUsage |= 1 << b;
        }
    }
    let extKeyUsage;
    const eku = extensions.get(OID.extKeyUsage);
    if (eku)
        extKeyUsage = children(expectTag(readRoot(eku.value), Tag.SEQUENCE, 'extKeyUsage')).map(readOid);
    let uris = [];
    let sanCount = 0;
    const san = extensions.get(OID.subjectAltName);
    if (san) {
        const g = parseGeneralNames(san.value);
        uris = g.uris;
        sanCount = g.count;
    }
    let subjectKeyId;
    const ski = extensions.get(OID.subjectKeyIdentifier);
    if (ski)
        subjectKeyId = content(expectTag(readRoot(ski.value), Tag.OCTET_STRING, 'subjectKeyIdentifier'));
    let authorityKeyId;
    const aki = extensions.get(OID.authorityKeyIdentifier);
    if (aki) {
        const parts = children(expectTag(readRoot(aki.value), Tag.SEQUENCE, 'authorityKeyIdentifier'));
        const kid = parts.find((p) => p.tag === 0x80);
        if (kid)
            authorityKeyId = content(kid);
    }
    return {
        der,
        tbs: whole(tbsNode),
        version,
        serialHex: serialToHex(serialBytes),
        signatureAlgorithm,
        signature,
        issuerDer: whole(issuerNode),
        subjectDer: whole(subjectNode),
        notBefore: readTime(validity[0]),
        notAfter: readTime(validity[1]),
        spki: whole(spkiNode),
        publicKeyAlgorithm: spki.algorithm,
        publicKeyBits: spki.bits,
        extensions,
        ...(basicConstraints ? { basicConstraints } : {}),
        ...(keyUsage !== undefined ? { keyUsage } : {}),
        ...(extKeyUsage ? { extKeyUsage } : {}),
        uris,
        sanCount,
        ...(subjectKeyId ? { subjectKeyId } : {}),
        ...(authorityKeyId ? { authorityKeyId } : {}),
    };
}
//# sourceMappingURL=parse-certificate.js.map