// The revocation list the control plane pushes to every agent: certificate
// serials and whole SPIFFE IDs. Serials use the form ParsedCertificate.serialHex
// has (lowercase hex, whole bytes, no leading zero bytes), so a lookup is one
// Set.has with no conversion per connection.
import { parseSpiffeId } from './spiffe-id.js';
export class RevocationError extends Error {
    field;
    code = 'AMIME_ERR_IDENTITY_REVOCATION';
    constructor(field, message) {
        super(`${field}: ${message}`);
        this.field = field;
        this.name = 'RevocationError';
    }
}
/** Bound on entries of each kind; a list beyond it is refused, not truncated. */
export const MAX_REVOCATION_ENTRIES = 100_000;
/** RFC 5280 §4.1.2.2: serials are at most 20 octets. */
const MAX_SERIAL_BYTES = 20;
const HEX = /^[0-9a-fA-F]+$/;
/**
 * Normalizes a serial to the canonical form: accepts upper or lower case
 * hex, optional `:` separators and leading zeros; refuses anything else.
 */
export function normalizeSerial(serial, field = 'serial') {
    if (typeof serial !== 'string')
        throw new RevocationError(field, 'must be a hex string');
    let hex = serial.includes(':') ? serial.replaceAll(':', '') : serial;
    if (!HEX.test(hex))
        throw new RevocationError(field, `${JSON.stringify(serial)} is not hexadecimal`);
    hex = hex.toLowerCase();
    if (hex.length % 2 === 1)
        hex = '0' + hex;
    let i = 0;
    while (i < hex.length - 2 && hex[i] === '0' && hex[i + 1] === '0')
        i += 2;
    hex = hex.slice(i);
    if (hex.length / 2 > MAX_SERIAL_BYTES)
        throw new RevocationError(field, `longer than ${MAX_SERIAL_BYTES} bytes`);
    return hex;
}
export function createRevocationSet(opts) {
    const { version } = opts;
    if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 0) {
        throw new RevocationError('version', `must be a non-negative integer, got ${JSON.stringify(version)}`);
    }
    const serials = new Set();
    let i = 0;
    for (const s of opts.serials ?? []) {
        if (serials.size >= MAX_REVOCATION_ENTRIES)
            throw new RevocationError('serials', `more than ${MAX_REVOCATION_ENTRIES} entries`);
        serials.add(normalizeSerial(s, `serials[${i++}]`));
    }
    const spiffeIds = new Set();
    i = 0;
    for (const id of opts.spiffeIds ?? []) {
        const field = `spiffeIds[${i++}]`;
        if (spiffeIds.size >= MAX_REVOCATION_ENTRIES)
            throw new RevocationError('spiffeIds', `more than ${MAX_REVOCATION_ENTRIES} entries`);
        if (typeof id !== 'string')
            throw new RevocationError(field, 'must be a string');
        try {
            spiffeIds.add(parseSpiffeId(id).toString());
        }
        catch (e) {
            throw new RevocationError(field, e.message);
        }
    }
    return Object.freeze({ version, serials, spiffeIds });
}
export const EMPTY_REVOCATIONS = createRevocationSet({ version: 0 });
const FIELDS = new Set(['version', 'serials', 'spiffeIds']);
/** Parses `{version, serials, spiffeIds}` (object or JSON text), refusing unknown fields. */
export function parseRevocationSet(json) {
    let doc = json;
    if (typeof json === 'string') {
        try {
            doc = JSON.parse(json);
        }
        catch (e) {
            throw new RevocationError('$', `not JSON: ${e.message}`);
        }
    }
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc))
        throw new RevocationError('$', 'must be a JSON object');
    const o = doc;
    for (const k of Object.keys(o))
        if (!FIELDS.has(k))
            throw new RevocationError(k, 'unknown field');
    if (o['version'] === undefined)
        throw new RevocationError('version', 'is required');
    for (const k of ['serials', 'spiffeIds']) {
        if (!Array.isArray(o[k]))
            throw new RevocationError(k, 'must be an array of strings');
    }
    return createRevocationSet({
        version: o['version'],
        serials: o['serials'],
        spiffeIds: o['spiffeIds'],
    });
}
/** The JSON form, with entries sorted so equal sets serialize equally. */
export function revocationSetToJson(set) {
    return { version: set.version, serials: [...set.serials].sort(), spiffeIds: [...set.spiffeIds].sort() };
}
export function serializeRevocationSet(set) {
    return JSON.stringify(revocationSetToJson(set));
}
//# sourceMappingURL=revocation.js.map