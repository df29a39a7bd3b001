// Request-target normalisation for authorization, after Istio's path
// normalisation guidance (DECODE_AND_MERGE_SLASHES, with encoded slashes
// refused by default) and RFC 3986 section 6.2.2.
//
// A policy on "/admin" must hold for every spelling of "/admin" a backend
// would resolve to the same resource, so the agent normalises the path once,
// matches policies against the result and forwards the result (the backend
// never sees a spelling the policy did not see). In order:
//
//   1. refuse: not origin-form, longer than the bound, raw control or non-ASCII
//      characters (anywhere in the target), and in the path: NUL (raw or %00),
//      malformed escapes (%zz, %4), encoded slashes (%2F %5C; unless `decode`);
//   2. decode escapes of unreserved characters (ALPHA DIGIT - . _ ~) exactly
//      once: "%61" is "a", "%2561" stays "%2561" (its "%25" is not unreserved,
//      so it is never turned into "%61" or "a"); every other escape stays
//      encoded, in upper-case hex; with `decode`, %2F and %5C become "/";
//   3. "\" becomes "/";
//   4. runs of "/" merge into one;
//   5. "." and ".." segments resolve (RFC 3986 remove_dot_segments; ".." at
//      the root stays at the root).
//
// The query is split off raw (it is forwarded, never matched); a fragment is
// dropped. A trailing "/" is kept: matching treats "/x/" as a variant of "/x".
// Nothing here throws: bad input is a typed refusal.

/** Upper bound on the request-target length, in characters (8 KiB). */
export const MAX_REQUEST_TARGET_LENGTH = 8192;

/** Stable refusal codes, usable as metric label values. */
export const PATH_REJECT_REASONS = [
  'not_origin_form',
  'too_long',
  'control_char',
  'non_ascii',
  'null_byte',
  'invalid_escape',
  'encoded_slash',
] as const;
export type PathRejectReason = (typeof PATH_REJECT_REASONS)[number];

export interface NormalizedPath {
  readonly ok: true;
  /** The normalised path: starts with "/", no query, no fragment. */
  readonly path: string;
  /** The raw query without its "?" ('' when none); not normalised, not matched. */
  readonly query: string;
}

export interface RejectedPath {
  readonly ok: false;
  readonly reason: PathRejectReason;
  readonly message: string;
}

export type NormalizePathResult = NormalizedPath | RejectedPath;

export interface NormalizePathOptions {
  /**
   * What to do with %2F, %2f, %5C and %5c in the path: 'refuse' (the default)
   * rejects the request; 'decode' turns them into "/" before slashes merge.
   */
  readonly encodedSlashes?: 'refuse' | 'decode';
  /** Upper bound on the target length; defaults to MAX_REQUEST_TARGET_LENGTH. */
  readonly maxLength?: number;
}

const REJECTIONS: Readonly<Record<PathRejectReason, RejectedPath>> = Object.freeze({
  not_origin_form: reject('not_origin_form', 'the request-target must be origin-form: "/path[?query]"'),
  too_long: reject('too_long', 'the request-target is longer than the configured bound'),
  control_char: reject('control_char', 'the request-target must not contain raw control characters, spaces or DEL'),
  non_ascii: reject('non_ascii', 'the request-target must be ASCII; percent-encode other characters'),
  null_byte: reject('null_byte', 'the path must not contain a NUL byte (raw or %00)'),
  invalid_escape: reject('invalid_escape', 'every "%" in the path must be followed by two hex digits'),
  encoded_slash: reject('encoded_slash', 'the path must not contain an encoded slash or backslash (%2F, %5C)'),
});

function reject(reason: PathRejectReason, message: string): RejectedPath {
  return Object.freeze({ ok: false, reason, message });
}

const SLASH = 0x2f;
const BACKSLASH = 0x5c;
const DOT = 0x2e;
const PERCENT = 0x25;
const QUESTION = 0x3f;
const HASH = 0x23;

/** Hex digit value by char code (either case), -1 when not a hex digit. */
const HEX = new Int8Array(128).fill(-1);
/** Upper-case hex digit value by char code, -1 otherwise. */
const UPPER_HEX = new Int8Array(128).fill(-1);
for (let i = 0; i < 10; i++) HEX[0x30 + i] = UPPER_HEX[0x30 + i] = i;
for (let i = 0; i < 6; i++) {
  HEX[0x41 + i] = UPPER_HEX[0x41 + i] = 10 + i;
  HEX[0x61 + i] = 10 + i;
}
const HEX_DIGITS = '0123456789ABCDEF';

/** RFC 3986 unreserved: ALPHA / DIGIT / "-" / "." / "_" / "~". */
const UNRESERVED = new Uint8Array(128);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~') UNRESERVED[c.charCodeAt(0)] = 1;

function hexValue(code: number): number {
  return code < 128 ? HEX[code]! : -1;
}

/**
 * Normalises a raw HTTP request-target (origin-form) for policy matching and
 * forwarding. Never throws; anything unsafe or ambiguous is refused.
 */
export function normalizePath(target: string, opts?: NormalizePathOptions): NormalizePathResult {
  if (typeof target !== 'string') return REJECTIONS.not_origin_form;
  const length = target.length;
  if (length > (opts?.maxLength ?? MAX_REQUEST_TARGET_LENGTH)) return REJECTIONS.too_long;
  const first = length === 0 ? -1 : target.charCodeAt(0);
  // "\" first is accepted as "/" (Istio normalises "\da" to "/da"); "*", absolute-form and authority-form are not.
  if (first !== SLASH && first !== BACKSLASH) return REJECTIONS.not_origin_form;
  const decodeSlashes = opts?.encodedSlashes === 'decode';

  // One pass over the whole target: refuse bad characters everywhere, validate
  // escapes in the path, find where the path ends and whether it needs work.
  let pathEnd = -1;
  let queryEnd = length;
  let rewrite = false; // the path has "%", "\", "//" or "/."
  let prev = -1;
  for (let i = 0; i < length; i++) {
    const c = target.charCodeAt(i);
    if (c < 0x21 || c === 0x7f) return c === 0 ? REJECTIONS.null_byte : REJECTIONS.control_char;
    if (c > 0x7e) return REJECTIONS.non_ascii;
    if (pathEnd < 0) {
      if (c === QUESTION || c === HASH) {
        pathEnd = i;
        if (c === HASH) queryEnd = i;
      } else if (c === PERCENT) {
        const hi = i + 2 < length ? hexValue(target.charCodeAt(i + 1)) : -1;
        const lo = hi < 0 ? -1 : hexValue(target.charCodeAt(i + 2));
        if (lo < 0) return REJECTIONS.invalid_escape;
        const byte = (hi << 4) | lo;
        if (byte === 0) return REJECTIONS.null_byte;
        if ((byte === SLASH || byte === BACKSLASH) && !decodeSlashes) return REJECTIONS.encoded_slash;
        rewrite = true;
      } else if (c === BACKSLASH || (prev === SLASH && (c === SLASH || c === DOT))) {
        rewrite = true;
      }
      prev = c;
    } else if (c === HASH && queryEnd === length) {
      queryEnd = i;
    }
  }
  if (pathEnd < 0) pathEnd = length;
  const query = pathEnd < queryEnd && target.charCodeAt(pathEnd) === QUESTION ? target.slice(pathEnd + 1, queryEnd) : '';
  if (!rewrite) {
    return { ok: true, path: pathEnd === length ? target : target.slice(0, pathEnd), query };
  }
  return { ok: true, path: resolveSegments(decodeEscapes(target, pathEnd)), query };
}

/**
 * target[0, end) with unreserved escapes decoded, other escapes upper-cased,
 * and "\" (and, when the caller allowed them, %2F and %5C) turned into "/".
 * Escapes were validated by the caller.
 */
function decodeEscapes(target: string, end: number): string {
  let out = '';
  let from = 0;
  for (let i = 0; i < end; i++) {
    const c = target.charCodeAt(i);
    if (c === BACKSLASH) {
      out += target.slice(from, i) + '/';
      from = i + 1;
    } else if (c === PERCENT) {
      const byte = (hexValue(target.charCodeAt(i + 1)) << 4) | hexValue(target.charCodeAt(i + 2));
      let replacement: string;
      if (byte === SLASH || byte === BACKSLASH) replacement = '/';
      else if (byte < 128 && UNRESERVED[byte] === 1) replacement = String.fromCharCode(byte);
      else replacement = '%' + HEX_DIGITS[byte >> 4]! + HEX_DIGITS[byte & 15]!;
      out += target.slice(from, i) + replacement;
      i += 2;
      from = i + 1;
    }
  }
  return out + target.slice(from, end);
}

/** Merges "/" runs and resolves "." and ".." segments of a path that starts with "/". */
function resolveSegments(path: string): string {
  const parts = path.split('/'); // parts[0] is '' (the leading "/")
  const out: string[] = [];
  const last = parts.length - 1;
  let trailingSlash = false;
  for (let i = 1; i <= last; i++) {
    const segment = parts[i]!;
    if (segment === '' || segment === '.') {
      // an empty segment is a merged "/"; at the end it (or "."), keeps a trailing "/"
      if (i === last) trailingSlash = true;
    } else if (segment === '..') {
      out.pop(); // at the root: stays at the root
      if (i === last) trailingSlash = true;
    } else {
      out.push(segment);
    }
  }
  if (out.length === 0) return '/';
  const joined = '/' + out.join('/');
  return trailingSlash ? joined + '/' : joined;
}

/**
 * True when `path` is already what normalizePath would return for it: starts
 * with "/", no query or fragment, no "\" or "//", no "." or ".." segment, only
 * printable ASCII, escapes well-formed in upper case and never of an
 * unreserved character, NUL, "/" or "\". Allocates nothing.
 */
export function isNormalizedPath(path: string, maxLength: number = MAX_REQUEST_TARGET_LENGTH): boolean {
  if (typeof path !== 'string') return false;
  const length = path.length;
  if (length === 0 || length > maxLength || path.charCodeAt(0) !== SLASH) return false;
  for (let i = 0; i < length; i++) {
    const c = path.charCodeAt(i);
    if (c < 0x21 || c > 0x7e || c === BACKSLASH || c === QUESTION || c === HASH) return false;
    if (c === SLASH) {
      const next = i + 1 < length ? path.charCodeAt(i + 1) : -1;
      if (next === SLASH) return false;
      if (next === DOT) {
        const after = i + 2 < length ? path.charCodeAt(i + 2) : -1;
        if (after === -1 || after === SLASH) return false; // "/."
        if (after === DOT) {
          const third = i + 3 < length ? path.charCodeAt(i + 3) : -1;
          if (third === -1 || third === SLASH) return false; // "/.."
        }
      }
    } else if (c === PERCENT) {
      if (i + 2 >= length) return false;
      const a = path.charCodeAt(i + 1);
      const b = path.charCodeAt(i + 2);
      const hi = a < 128 ? UPPER_HEX[a]! : -1;
      const lo = b < 128 ? UPPER_HEX[b]! : -1;
      if (hi < 0 || lo < 0) return false;
      const byte = (hi << 4) | lo;
      if (byte === 0 || byte === SLASH || byte === BACKSLASH || (byte < 128 && UNRESERVED[byte] === 1)) return false;
      i += 2;
    }
  }
  return true;
}

/** Longest method accepted; real methods are far shorter. */
const MAX_METHOD_LENGTH = 32;
/** RFC 9110 tchar without lower-case letters. */
const METHOD_CHAR = new Uint8Array(128);
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~") METHOD_CHAR[c.charCodeAt(0)] = 1;

/**
 * True when `method` is an HTTP token in upper case only ("GET", "PROPFIND").
 * Lower- and mixed-case methods are refused so a policy on "DELETE" cannot be
 * sidestepped with "delete" reaching a case-insensitive backend.
 */
export function isValidMethod(method: string): boolean {
  if (typeof method !== 'string') return false;
  const length = method.length;
  if (length === 0 || length > MAX_METHOD_LENGTH) return false;
  for (let i = 0; i < length; i++) {
    const c = method.charCodeAt(i);
    if (c >= 128 || METHOD_CHAR[c] !== 1) return false;
  }
  return true;
}
