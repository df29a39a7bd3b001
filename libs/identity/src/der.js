// A small, strict DER reader and writer: just what X.509 certificates and
// PKCS#10 requests need. Native crypto signs and verifies; this module only
// lays out bytes, so that issuing an SVID costs microseconds of JavaScript
// rather than the milliseconds a general ASN.1 schema library spends.
export class DerError extends Error {
    code = 'AMIME_ERR_IDENTITY_DER';
    constructor(message) {
        super(message);
        this.name = 'DerError';
    }
}
export const Tag = {
    BOOLEAN: 0x01,
    INTEGER: 0x02,
    BIT_STRING: 0x03,
    OCTET_STRING: 0x04,
    NULL: 0x05,
    OID: 0x06,
    UTF8_STRING: 0x0c,
    PRINTABLE_STRING: 0x13,
    IA5_STRING: 0x16,
    UTC_TIME: 0x17,
    GENERALIZED_TIME: 0x18,
    SEQUENCE: 0x30,
    SET: 0x31,
};
// ---------------------------------------------------------------- writing
function lengthBytes(n) {
    if (n < 0x80)
        return Buffer.from([n]);
    if (n < 0x100)
        return Buffer.from([0x81, n]);
    if (n < 0x10000)
        return Buffer.from([0x82, n >> 8, n & 0xff]);
    if (n < 0x1000000)
        return Buffer.from([0x83, n >> 16, (n >> 8) & 0xff, n & 0xff]);
    throw new DerError(`length ${n} too large`);
}
export function tlv(tag, content) {
    const len = lengthBytes(content.length);
    const out = Buffer.allocUnsafe(1 + len.length + content.length);
    out[0] = tag;
    len.copy(out, 1);
    content.copy(out, 1 + len.length);
    return out;
}
function constructed(tag, parts) {
    return tlv(tag, parts.length === 1 ? parts[0] : Buffer.concat(parts));
}
export const seq = (...parts) => constructed(Tag.SEQUENCE, parts);
export const set = (...parts) => constructed(Tag.SET, parts);
/** [n] EXPLICIT wrapper (context-specific, constructed). */
export const explicit = (n, ...parts) => constructed(0xa0 | n, parts);
export const octetString = (b) => tlv(Tag.OCTET_STRING, b);
export const nullValue = () => Buffer.from([Tag.NULL, 0]);
export const boolean = (v) => Buffer.from([Tag.BOOLEAN, 1, v ? 0xff : 0]);
export const utf8String = (s) => tlv(Tag.UTF8_STRING, Buffer.from(s, 'utf8'));
export const ia5String = (s) => tlv(Tag.IA5_STRING, Buffer.from(s, 'ascii'));
export function bitString(bytes, unusedBits = 0) {
    const content = Buffer.allocUnsafe(bytes.length + 1);
    content[0] = unusedBits;
    bytes.copy(content, 1);
    return tlv(Tag.BIT_STRING, content);
}
/** A non-negative INTEGER from big-endian magnitude bytes (minimal, sign-safe). */
export function unsignedInteger(magnitude) {
    let i = 0;
    while (i < magnitude.length - 1 && magnitude[i] === 0)
        i++;
    let body = magnitude.subarray(i);
    if (body.length === 0)
        body = Buffer.from([0]);
    if (body[0] & 0x80)
        body = Buffer.concat([Buffer.from([0]), body]);
    return tlv(Tag.INTEGER, body);
}
export function smallInteger(n) {
    if (!Number.isInteger(n) || n < 0 || n > 0x7fffffff)
        throw new DerError(`integer ${n} out of range`);
    const bytes = [];
    let v = n;
    do {
        bytes.unshift(v & 0xff);
        v = Math.floor(v / 256);
    } while (v > 0);
    return unsignedInteger(Buffer.from(bytes));
}
const oidCache = new Map();
export function oid(dotted) {
    const cached = oidCache.get(dotted);
    if (cached)
        return cached;
    const arcs = dotted.split('.').map((a) => {
        if (!/^\d+$/.test(a))
            throw new DerError(`bad OID ${dotted}`);
        return Number(a);
    });
    if (arcs.length < 2)
        throw new DerError(`bad OID ${dotted}`);
    const bytes = [arcs[0] * 40 + arcs[1]];
    for (const arc of arcs.slice(2)) {
        const enc = [arc & 0x7f];
        let v = Math.floor(arc / 128);
        while (v > 0) {
            enc.unshift((v & 0x7f) | 0x80);
            v = Math.floor(v / 128);
        }
        bytes.push(...enc);
    }
    const out = tlv(Tag.OID, Buffer.from(bytes));
    oidCache.set(dotted, out);
    return out;
}
const pad2 = (n) => (n < 10 ? '0' : '') + n;
/** RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050; whole seconds, Zulu. */
export function time(d) {
    const y = d.getUTCFullYear();
    const rest = pad2(d.getUTCMonth() + 1) +
        pad2(d.getUTCDate()) +
        pad2(d.getUTCHours()) +
        pad2(d.getUTCMinutes()) +
        pad2(d.getUTCSeconds()) +
        'Z';
    if (y >= 1950 && y < 2050)
        return tlv(Tag.UTC_TIME, Buffer.from(pad2(y % 100) + rest, 'ascii'));
    return tlv(Tag.GENERALIZED_TIME, Buffer.from(String(y).padStart(4, '0') + rest, 'ascii'));
}
export function readNode(buf, offset, limit = buf.length) {
    if (offset + 2 > limit)
        throw new DerError('truncated: expected a tag and a length');
    const tag = buf[offset];
    if ((tag & 0x1f) === 0x1f)
        throw new DerError('multi-byte tags are not used in X.509');
    let p = offset + 1;
    const first = buf[p++];
    let length;
    if (first < 0x80) {
        length = first;
    }
    else if (first === 0x80) {
        throw new DerError('indefinite length is not DER');
    }
    else {
        const n = first & 0x7f;
        if (n > 3)
            throw new DerError('length too large');
        if (p + n > limit)
            throw new DerError('truncated length');
        length = 0;
        for (let i = 0; i < n; i++)
            length = length * 256 + buf[p++];
        if (buf[p - n] === 0 || length < 0x80 || (n > 1 && length < 1 << (8 * (n - 1)))) {
            throw new DerError('non-minimal length encoding is not DER');
        }
    }
    const end = p + length;
    if (end > limit)
        throw new DerError(`truncated: element of ${length} bytes runs past its container`);
    return { buf, tag, start: offset, contentStart: p, end };
}
/** Parse a whole buffer that must be exactly one element. */
export function readRoot(buf) {
    const node = readNode(buf, 0);
    if (node.end !== buf.length)
        throw new DerError('trailing bytes after the outer element');
    return node;
}
export function children(node) {
    if ((node.tag & 0x20) === 0)
        throw new DerError(`tag 0x${node.tag.toString(16)} is not constructed`);
    const out = [];
    let p = node.contentStart;
    while (p < node.end) {
        const child = readNode(node.buf, p, node.end);
        out.push(child);
        p = child.end;
    }
    return out;
}
export function expectTag(node, tag, what) {
    if (node.tag !== tag) {
        throw new DerError(`${what}: expected tag 0x${tag.toString(16)}, found 0x${node.tag.toString(16)}`);
    }
    return node;
}
export const content = (n) => n.buf.subarray(n.contentStart, n.end);
export const whole = (n) => n.buf.subarray(n.start, n.end);
export function readOid(node) {
    expectTag(node, Tag.OID, 'OBJECT IDENTIFIER');
    const b = content(node);
    if (b.length === 0)
        throw new DerError('empty OID');
    const arcs = [];
    const first = b[0];
    if (first & 0x80) {
        // first subidentifier spanning bytes only happens for joint-iso arcs; not used here
        throw new DerError('unsupported OID first arc');
    }
    arcs.push(first < 40 ? 0 : first < 80 ? 1 : 2, first < 80 ? first % 40 : first - 80);
    let v = 0;
    for (let i = 1; i < b.length; i++) {
        const byte = b[i];
        if (v === 0 && byte === 0x80)
            throw new DerError('non-minimal OID arc');
        v = v * 128 + (byte & 0x7f);
        if (v > Number.MAX_SAFE_INTEGER / 128)
            throw new DerError('OID arc too large');
        if ((byte & 0x80) === 0) {
            arcs.push(v);
            v = 0;
        }
        else if (i === b.length - 1) {
            throw new DerError('truncated OID');
        }
    }
    return arcs.join('.');
}
export function readBoolean(node) {
    expectTag(node, Tag.BOOLEAN, 'BOOLEAN');
    const b = content(node);
    if (b.length !== 1 || (b[0] !== 0 && b[0] !== 0xff))
        throw new DerError('BOOLEAN must be one byte 0x00 or 0xff');
    return b[0] === 0xff;
}
/** INTEGER as its raw two's-complement bytes (checked minimal). */
export function readIntegerBytes(node) {
    expectTag(node, Tag.INTEGER, 'INTEGER');
    const b = content(node);
    if (b.length === 0)
        throw new DerError('empty INTEGER');
    if (b.length > 1 && ((b[0] === 0 && !(b[1] & 0x80)) || (b[0] === 0xff && b[1] & 0x80))) {
        throw new DerError('non-minimal INTEGER');
    }
    return b;
}
export function readSmallInteger(node) {
    const b = readIntegerBytes(node);
    if (b[0] & 0x80)
        throw new DerError('negative INTEGER where a count was expected');
    if (b.length > 4)
        throw new DerError('INTEGER too large');
    let v = 0;
    for (const byte of b)
        v = v * 256 + byte;
    return v;
}
/** BIT STRING: returns the bytes and the number of unused trailing bits. */
export function readBitString(node) {
    expectTag(node, Tag.BIT_STRING, 'BIT STRING');
    const b = content(node);
    if (b.length === 0)
        throw new DerError('empty BIT STRING');
    const unusedBits = b[0];
    if (unusedBits > 7 || (b.length === 1 && unusedBits !== 0))
        throw new DerError('bad BIT STRING padding');
    return { bytes: b.subarray(1), unusedBits };
}
export function readTime(node) {
    const s = content(node).toString('ascii');
    let m;
    if (node.tag === Tag.UTC_TIME) {
        m = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s);
        if (!m)
            throw new DerError(`bad UTCTime "${s}"`);
        const yy = Number(m[1]);
        const year = yy >= 50 ? 1900 + yy : 2000 + yy;
        return new Date(Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])));
    }
    if (node.tag === Tag.GENERALIZED_TIME) {
        m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s);
        if (!m)
            throw new DerError(`bad GeneralizedTime "${s}"`);
        return new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])));
    }
    throw new DerError(`expected a time, found tag 0x${node.tag.toString(16)}`);
}
//# sourceMappingURL=der.js.map