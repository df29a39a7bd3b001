// SPIFFE IDs, parsed and formatted strictly per
// https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md
//
//   spiffe://<trust-domain>[/<segment>]*
//
// - scheme exactly "spiffe://" (lowercase);
// - trust domain: non-empty, at most 255 bytes, [a-z0-9._-] only (uppercase is
//   refused, never lowercased), no userinfo ("@"), no port (":");
// - path: optional; each segment non-empty, [a-zA-Z0-9._-] only, not "." or
//   "..", no trailing "/"; no percent-encoding ("%" is not allowed);
// - no query ("?"), no fragment ("#");
// - whole ID at most 2048 bytes (every accepted character is ASCII, so
//   characters and bytes agree).
//
// Parsing is a single pass over the string with a lookup table; the only
// allocations on success are two substrings and the frozen result. The
// validation core returns a fault instead of throwing, so `isSpiffeId` can be
// used where exceptions are unwelcome.
/** Stable rule names, usable as metric label values. */
export const SPIFFE_ID_RULES = [
    'empty',
    'too_long',
    'scheme',
    'trust_domain_empty',
    'trust_domain_too_long',
    'trust_domain_chars',
    'port',
    'userinfo',
    'query',
    'fragment',
    'path_empty_segment',
    'path_dot_segment',
    'path_trailing_slash',
    'path_chars',
    'path_missing',
];
export class SpiffeIdError extends Error {
    rule;
    code = 'AMIME_ERR_IDENTITY_SPIFFE_ID';
    constructor(rule, message) {
        super(message);
        this.rule = rule;
        this.name = 'SpiffeIdError';
    }
}
export const SPIFFE_SCHEME_PREFIX = 'spiffe://';
export const MAX_SPIFFE_ID_LENGTH = 2048;
export const MAX_TRUST_DOMAIN_LENGTH = 255;
/** What each rule requires; the second half of every error message. */
const RULE_HELP = {
    empty: 'the input is empty; expected spiffe://<trust-domain>[/<path>]',
    too_long: `a SPIFFE ID is at most ${MAX_SPIFFE_ID_LENGTH} bytes`,
    scheme: 'a SPIFFE ID must start with "spiffe://" (lowercase)',
    trust_domain_empty: 'the trust domain is empty',
    trust_domain_too_long: `a trust domain is at most ${MAX_TRUST_DOMAIN_LENGTH} bytes`,
    trust_domain_chars: 'a trust domain may contain only lowercase letters a-z, digits, ".", "-" and "_"',
    port: 'a trust domain must not carry a port (":")',
    userinfo: 'a trust domain must not carry userinfo ("@")',
    query: 'a SPIFFE ID must not carry a query ("?")',
    fragment: 'a SPIFFE ID must not carry a fragment ("#")',
    path_empty_segment: 'path segments must not be empty (no "//")',
    path_dot_segment: 'path segments must not be "." or ".."',
    path_trailing_slash: 'the path must not end with "/"',
    path_chars: 'path segments may contain only letters, digits, ".", "-" and "_" (no percent-encoding, no "/" inside a segment)',
    path_missing: 'expected a workload ID with a path, got a trust-domain-only ID',
};
// Character classes, indexed by char code (ASCII only; everything else is refused).
const TRUST_DOMAIN_CHAR = 1;
const SEGMENT_CHAR = 2;
const CHAR_CLASS = new Uint8Array(128);
for (const c of 'abcdefghijklmnopqrstuvwxyz0123456789.-_')
    CHAR_CLASS[c.charCodeAt(0)] = TRUST_DOMAIN_CHAR | SEGMENT_CHAR;
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZ')
    CHAR_CLASS[c.charCodeAt(0)] = SEGMENT_CHAR;
const SLASH = 0x2f;
const DOT = 0x2e;
const COLON = 0x3a;
const AT = 0x40;
const QUESTION = 0x3f;
const HASH = 0x23;
const SCHEME_LENGTH = SPIFFE_SCHEME_PREFIX.length;
function isClass(code, mask) {
    return code < 128 && (CHAR_CLASS[code] & mask) !== 0;
}
function fault(rule, at) {
    return { rule, at };
}
/** Checks input[start, end) as a trust domain name. */
function checkTrustDomain(input, start, end) {
    if (end === start)
        return fault('trust_domain_empty', start);
    if (end - start > MAX_TRUST_DOMAIN_LENGTH)
        return fault('trust_domain_too_long', start + MAX_TRUST_DOMAIN_LENGTH);
    let userinfo = -1;
    let port = -1;
    let bad = -1;
    for (let i = start; i < end; i++) {
        const c = input.charCodeAt(i);
        if (isClass(c, TRUST_DOMAIN_CHAR))
            continue;
        if (c === AT) {
            if (userinfo < 0)
                userinfo = i;
        }
        else if (c === COLON) {
            if (port < 0)
                port = i;
        }
        else if (bad < 0) {
            bad = i;
        }
    }
    if (userinfo >= 0)
        return fault('userinfo', userinfo);
    if (port >= 0)
        return fault('port', port);
    if (bad >= 0)
        return fault('trust_domain_chars', bad);
    return undefined;
}
/** Checks a complete segment input[start, end) for emptiness and dot-segments. */
function checkSegmentShape(input, start, end) {
    const n = end - start;
    if (n === 0)
        return 'path_empty_segment';
    if (input.charCodeAt(start) === DOT && (n === 1 || (n === 2 && input.charCodeAt(start + 1) === DOT))) {
        return 'path_dot_segment';
    }
    return undefined;
}
/**
 * Validates a full SPIFFE ID. Returns the offset where the path starts (equal
 * to the input length when there is no path), or the first fault, scanning
 * left to right.
 */
function scanSpiffeId(input) {
    const length = input.length;
    if (length === 0)
        return fault('empty', -1);
    if (length > MAX_SPIFFE_ID_LENGTH)
        return fault('too_long', -1);
    if (!input.startsWith(SPIFFE_SCHEME_PREFIX))
        return fault('scheme', 0);
    let pathStart = SCHEME_LENGTH;
    while (pathStart < length) {
        const c = input.charCodeAt(pathStart);
        if (c === SLASH || c === QUESTION || c === HASH)
            break;
        pathStart++;
    }
    const tdFault = checkTrustDomain(input, SCHEME_LENGTH, pathStart);
    if (tdFault)
        return tdFault;
    // input[pathStart] is "/", "?", "#" or the end.
    let segmentStart = pathStart + 1;
    for (let i = pathStart; i < length; i++) {
        const c = input.charCodeAt(i);
        if (c === SLASH) {
            if (i > pathStart) {
                const rule = checkSegmentShape(input, segmentStart, i);
                if (rule)
                    return fault(rule, segmentStart);
            }
            segmentStart = i + 1;
        }
        else if (c === QUESTION) {
            return fault('query', i);
        }
        else if (c === HASH) {
            return fault('fragment', i);
        }
        else if (!isClass(c, SEGMENT_CHAR)) {
            return fault('path_chars', i);
        }
    }
    if (pathStart < length) {
        if (segmentStart === length)
            return fault('path_trailing_slash', length - 1);
        const rule = checkSegmentShape(input, segmentStart, length);
        if (rule)
            return fault(rule, segmentStart);
    }
    return pathStart;
}
/** Validates one path segment given on its own (as to formatSpiffeId). */
function checkSegment(segment) {
    for (let i = 0; i < segment.length; i++) {
        if (!isClass(segment.charCodeAt(i), SEGMENT_CHAR))
            return fault('path_chars', i);
    }
    const rule = checkSegmentShape(segment, 0, segment.length);
    return rule ? fault(rule, 0) : undefined;
}
const QUOTE_LIMIT = 100;
/**
 * JSON-quotes untrusted text for an error message: at most QUOTE_LIMIT
 * characters, and everything outside printable ASCII escaped, so the text can
 * neither break a log line nor smuggle terminal or bidi control characters.
 */
function quote(text) {
    const cut = text.length > QUOTE_LIMIT ? text.slice(0, QUOTE_LIMIT) : text;
    const quoted = JSON.stringify(cut).replace(/[^\x20-\x7e]/g, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`);
    return text.length > QUOTE_LIMIT ? `${quoted}... (${text.length} chars)` : quoted;
}
function toError(subject, input, f) {
    let where = '';
    if (f.rule === 'too_long')
        where = `, length ${input.length}`;
    else if (f.at >= 0)
        where = `, offset ${f.at}`;
    return new SpiffeIdError(f.rule, `${subject} ${quote(input)}: ${RULE_HELP[f.rule]} (rule ${f.rule}${where})`);
}
/** The value behind every SpiffeId this module returns: immutable and cheap. */
class ValidSpiffeId {
    trustDomain;
    path;
    #uri;
    constructor(uri, trustDomain, path) {
        this.trustDomain = trustDomain;
        this.path = path;
        this.#uri = uri;
        Object.freeze(this);
    }
    toString() {
        return this.#uri;
    }
    toJSON() {
        return this.#uri;
    }
    equals(other) {
        return this.trustDomain === other.trustDomain && this.path === other.path;
    }
}
/** Parses and validates a SPIFFE ID; throws SpiffeIdError naming the broken rule. */
export function parseSpiffeId(input) {
    const result = scanSpiffeId(input);
    if (typeof result !== 'number')
        throw toError('invalid SPIFFE ID', input, result);
    return new ValidSpiffeId(input, input.slice(SCHEME_LENGTH, result), input.slice(result));
}
/** True when `input` is a valid SPIFFE ID. Never throws. */
export function isSpiffeId(input) {
    return typeof input === 'string' && typeof scanSpiffeId(input) === 'number';
}
/**
 * Builds a SPIFFE ID from a trust domain and path segments, validating each.
 * Segments are taken verbatim: one containing "/" is refused (pass segments
 * separately), nothing is escaped.
 */
export function formatSpiffeId(trustDomain, ...segments) {
    const td = parseTrustDomain(trustDomain);
    let length = SCHEME_LENGTH + td.length;
    for (let i = 0; i < segments.length; i++) {
        const segment = segments[i];
        const f = checkSegment(segment);
        if (f)
            throw toError(`invalid SPIFFE ID path segment #${i}`, segment, f);
        length += 1 + segment.length;
    }
    const path = segments.length === 0 ? '' : `/${segments.join('/')}`;
    const uri = `${SPIFFE_SCHEME_PREFIX}${td}${path}`;
    if (length > MAX_SPIFFE_ID_LENGTH)
        throw toError('invalid SPIFFE ID', uri, fault('too_long', -1));
    return new ValidSpiffeId(uri, td, path);
}
/**
 * Validates a trust domain name and returns it. Accepts the bare name
 * ("example.org") or the trust-domain-only ID form ("spiffe://example.org");
 * an ID with a path is refused, as is any other scheme.
 */
export function parseTrustDomain(input) {
    const subject = 'invalid trust domain';
    if (input.startsWith(SPIFFE_SCHEME_PREFIX)) {
        const result = scanSpiffeId(input);
        if (typeof result !== 'number')
            throw toError(subject, input, result);
        if (result !== input.length)
            throw toError(subject, input, fault('trust_domain_chars', result));
        return input.slice(SCHEME_LENGTH);
    }
    if (input.includes('://'))
        throw toError(subject, input, fault('scheme', 0));
    const f = checkTrustDomain(input, 0, input.length);
    if (f)
        throw toError(subject, input, f);
    return input;
}
/** True when the ID names a workload (has a path), not just a trust domain. */
export function isWorkloadId(id) {
    return id.path !== '';
}
/** Returns the ID if it names a workload; throws SpiffeIdError('path_missing') otherwise. */
export function requireWorkloadId(id) {
    if (id.path === '')
        throw toError('not a workload SPIFFE ID', id.toString(), fault('path_missing', -1));
    return id;
}
/** True when both IDs name the same identity (IDs are compared exactly; nothing is normalized). */
export function sameSpiffeId(a, b) {
    return a.trustDomain === b.trustDomain && a.path === b.path;
}
/** True when both IDs belong to the same trust domain. */
export function sameTrustDomain(a, b) {
    return a.trustDomain === b.trustDomain;
}
/** True when the ID belongs to the given (bare, already validated) trust domain name. */
export function memberOf(id, trustDomain) {
    return id.trustDomain === trustDomain;
}
//# sourceMappingURL=spiffe-id.js.map