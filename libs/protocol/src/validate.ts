// A tiny strict validator toolkit for everything that crosses an edge:
// configuration resources from operators and frames on the push channel.
//
// - Objects refuse unknown fields (with a did-you-mean hint) and name every
//   missing required field.
// - Every problem is collected, not just the first: `check` walks the whole
//   value and pushes `{ path, message, fix? }` issues, where `path` reads like
//   source (`spec.backends[1].weight`).
// - The output is a fresh value built from the schema (defaults applied,
//   unknown keys never copied), so a validated object never carries
//   `__proto__` tricks or stray fields inward.
// - Nothing here throws while checking; `validate` throws a single
//   `ValidationError` carrying all issues, `safeValidate` returns them.

export interface Issue {
  /** Where the problem is, e.g. `spec.backends[1].weight`; '' for the root. */
  readonly path: string;
  /** What is wrong, e.g. `must be an integer from 0 to 100`. */
  readonly message: string;
  /** How to fix it, when there is something more useful to say than the message. */
  readonly fix?: string;
  /** Index of the document the issue is in, for multi-document input. */
  readonly document?: number;
}

/** Returned by `Schema.check` after it pushed at least one issue. */
export const INVALID: unique symbol = Symbol('amime.protocol.invalid');
export type Invalid = typeof INVALID;

export interface Schema<T> {
  /** Short description of what is accepted, used in messages (`a string`, `one of a, b`). */
  readonly expected: string;
  /** Set by `optional()` and `withDefault()`: the field may be absent. */
  readonly optional?: boolean;
  /** Validates `value` at `path`; returns the clean value, or INVALID after pushing issues. */
  check(value: unknown, path: string, issues: Issue[]): T | Invalid;
}

export type Infer<S> = S extends Schema<infer T> ? T : never;

export const PROTOCOL_INVALID = 'AMIME_ERR_PROTOCOL_INVALID';

/** Thrown by `validate`; carries every issue, names the first one in its message. */
export class ValidationError extends Error {
  readonly code = PROTOCOL_INVALID;
  constructor(
    readonly issues: readonly Issue[],
    what = 'input',
  ) {
    super(formatIssues(issues, what));
    this.name = 'ValidationError';
  }
}

/** One line per issue: `document 2: spec.ports[0].port must be ... (fix: ...)`. */
export function formatIssue(issue: Issue): string {
  const where = issue.path === '' ? '(root)' : issue.path;
  const doc = issue.document === undefined ? '' : `document ${issue.document}: `;
  return `${doc}${where} ${issue.message}${issue.fix ? ` (fix: ${issue.fix})` : ''}`;
}

export function formatIssues(issues: readonly Issue[], what = 'input'): string {
  if (issues.length === 0) return `invalid ${what}`;
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more problem${issues.length > 2 ? 's' : ''})` : '';
  return `invalid ${what}: ${formatIssue(issues[0]!)}${more}`;
}

export type SafeResult<T> = { ok: true; value: T } | { ok: false; issues: Issue[] };

export function safeValidate<T>(schema: Schema<T>, value: unknown, path = ''): SafeResult<T> {
  const issues: Issue[] = [];
  const out = schema.check(value, path, issues);
  if (out === INVALID || issues.length > 0) {
    if (issues.length === 0) issues.push({ path, message: `must be ${schema.expected}` });
    return { ok: false, issues };
  }
  return { ok: true, value: out };
}

/** Validates or throws a ValidationError naming every problem. */
export function validate<T>(schema: Schema<T>, value: unknown, what = 'input'): T {
  const r = safeValidate(schema, value);
  if (!r.ok) throw new ValidationError(r.issues, what);
  return r.value;
}

export function joinPath(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  return path === '' ? key : `${path}.${key}`;
}

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

function mismatch(path: string, expected: string, value: unknown, issues: Issue[]): Invalid {
  issues.push({ path, message: `must be ${expected}, got ${typeName(value)}` });
  return INVALID;
}

// ---------------------------------------------------------------- scalars

export interface StringOptions {
  minLength?: number;
  maxLength?: number;
  pattern?: RegExp;
  /** Said when the pattern fails: `a DNS-1123 label (lowercase letters, digits and "-")`. */
  patternName?: string;
  /** How to fix a pattern failure. */
  fix?: string;
  /** Extra check; returns a message (and optional fix) when the string is refused. */
  refine?: (s: string) => { message: string; fix?: string } | undefined;
}

export function string(opts: StringOptions = {}): Schema<string> {
  const { minLength = 0, maxLength = 4096, pattern, patternName, fix, refine } = opts;
  const expected = patternName ?? 'a string';
  return {
    expected,
    check(value, path, issues) {
      if (typeof value !== 'string') return mismatch(path, expected, value, issues);
      if (value.length < minLength) {
        issues.push({ path, message: minLength === 1 ? 'must not be empty' : `must be at least ${minLength} characters` });
        return INVALID;
      }
      if (value.length > maxLength) {
        issues.push({ path, message: `must be at most ${maxLength} characters, got ${value.length}` });
        return INVALID;
      }
      if (pattern && !pattern.test(value)) {
        issues.push({ path, message: `must be ${expected}, got ${JSON.stringify(value)}`, ...(fix ? { fix } : {}) });
        return INVALID;
      }
      if (refine) {
        const bad = refine(value);
        if (bad) {
          issues.push({ path, ...bad });
          return INVALID;
        }
      }
      return value;
    },
  };
}

export function integer(min: number, max: number): Schema<number> {
  const expected = `an integer from ${min} to ${max}`;
  return {
    expected,
    check(value, path, issues) {
      if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
        issues.push({ path, message: `must be ${expected}, got ${typeof value === 'number' ? value : typeName(value)}` });
        return INVALID;
      }
      return value;
    },
  };
}

export function boolean(): Schema<boolean> {
  return {
    expected: 'a boolean',
    check: (value, path, issues) => (typeof value === 'boolean' ? value : mismatch(path, 'a boolean', value, issues)),
  };
}

export function literal<const T extends string | number | boolean>(expectedValue: T): Schema<T> {
  const expected = JSON.stringify(expectedValue);
  return {
    expected,
    check(value, path, issues) {
      if (value !== expectedValue) {
        issues.push({ path, message: `must be ${expected}, got ${JSON.stringify(value) ?? typeName(value)}` });
        return INVALID;
      }
      return expectedValue;
    },
  };
}

export function enumOf<const T extends string>(values: readonly T[]): Schema<T> {
  const set = new Set<string>(values);
  const expected = `one of ${values.join(', ')}`;
  return {
    expected,
    check(value, path, issues) {
      if (typeof value !== 'string' || !set.has(value)) {
        const hint = typeof value === 'string' ? suggest(value, values) : undefined;
        issues.push({
          path,
          message: `must be ${expected}, got ${typeof value === 'string' ? JSON.stringify(value) : typeName(value)}`,
          ...(hint ? { fix: `did you mean ${JSON.stringify(hint)}?` } : {}),
        });
        return INVALID;
      }
      return value as T;
    },
  };
}

// ---------------------------------------------------------------- modifiers

/** A field that may be absent; absent stays absent in the output. */
export type OptionalSchema<T> = Schema<T | undefined> & { readonly optional: true };

export function optional<T>(schema: Schema<T>): OptionalSchema<T> {
  return { expected: schema.expected, optional: true, check: (v, p, i) => (v === undefined ? undefined : schema.check(v, p, i)) };
}

/** Optional field that takes `fallback` when absent (so always present in the output). */
export function withDefault<T>(schema: Schema<T>, fallback: T): Schema<T> {
  return {
    expected: schema.expected,
    optional: true,
    check: (v, p, i) => (v === undefined ? structuredClone(fallback) : schema.check(v, p, i)),
  };
}

/** Adds a whole-value check that runs only when the inner schema accepted the value. */
export function refine<T>(schema: Schema<T>, check: (value: T, path: string, issues: Issue[]) => void): Schema<T> {
  return {
    expected: schema.expected,
    ...(schema.optional ? { optional: true } : {}),
    check(value, path, issues) {
      const out = schema.check(value, path, issues);
      if (out === INVALID) return INVALID;
      const before = issues.length;
      check(out, path, issues);
      return issues.length === before ? out : INVALID;
    },
  };
}

// ---------------------------------------------------------------- containers

export interface ArrayOptions {
  minItems?: number;
  maxItems: number;
}

export function array<T>(item: Schema<T>, opts: ArrayOptions): Schema<T[]> {
  const { minItems = 0, maxItems } = opts;
  const expected = `an array of ${item.expected}`;
  return {
    expected,
    check(value, path, issues) {
      if (!Array.isArray(value)) return mismatch(path, expected, value, issues);
      if (value.length < minItems) {
        issues.push({ path, message: minItems === 1 ? 'must not be empty' : `must have at least ${minItems} items` });
        return INVALID;
      }
      if (value.length > maxItems) {
        issues.push({ path, message: `must have at most ${maxItems} items, got ${value.length}` });
        return INVALID;
      }
      const out: T[] = [];
      let bad = false;
      for (let i = 0; i < value.length; i++) {
        const r = item.check(value[i], joinPath(path, i), issues);
        if (r === INVALID) bad = true;
        else out.push(r);
      }
      return bad ? INVALID : out;
    },
  };
}

/** A JSON object with keys checked by `key` and values by `value`. */
export function record<V>(key: Schema<string>, value: Schema<V>, opts: { maxKeys: number }): Schema<Record<string, V>> {
  const expected = 'an object';
  return {
    expected,
    check(input, path, issues) {
      if (!isPlainObject(input)) return mismatch(path, expected, input, issues);
      const keys = Object.keys(input);
      if (keys.length > opts.maxKeys) {
        issues.push({ path, message: `must have at most ${opts.maxKeys} keys, got ${keys.length}` });
        return INVALID;
      }
      const out: Record<string, V> = Object.create(null);
      let bad = false;
      for (const k of keys) {
        const kp = joinPath(path, k);
        const rk = key.check(k, kp, issues);
        const rv = value.check(input[k], kp, issues);
        if (rk === INVALID || rv === INVALID) bad = true;
        else out[k] = rv;
      }
      return bad ? INVALID : { ...out };
    },
  };
}

type Shape = Record<string, Schema<unknown>>;
type OptionalKeys<S extends Shape> = { [K in keyof S]: S[K] extends { readonly optional: true } ? K : never }[keyof S];
type Simplify<T> = { [K in keyof T]: T[K] } & {};
export type InferObject<S extends Shape> = Simplify<
  { [K in Exclude<keyof S, OptionalKeys<S>>]: Infer<S[K]> } & { [K in OptionalKeys<S>]?: Exclude<Infer<S[K]>, undefined> }
>;

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * A JSON object with exactly the fields of `shape`: unknown fields and missing
 * required fields are issues. Absent optional fields stay absent in the output.
 */
export function object<S extends Shape>(shape: S, expected = 'an object'): Schema<InferObject<S>> {
  const keys = Object.keys(shape);
  const known = new Set(keys);
  return {
    expected,
    check(value, path, issues) {
      if (!isPlainObject(value)) return mismatch(path, expected, value, issues);
      let bad = false;
      for (const k of Object.keys(value)) {
        if (known.has(k)) continue;
        const hint = suggest(k, keys);
        issues.push({
          path: joinPath(path, k),
          message: 'is not a known field',
          fix: hint ? `did you mean ${JSON.stringify(hint)}?` : `remove it; allowed fields: ${keys.join(', ') || '(none)'}`,
        });
        bad = true;
      }
      const out: Record<string, unknown> = {};
      for (const k of keys) {
        const field = shape[k]!;
        const v = Object.prototype.hasOwnProperty.call(value, k) ? value[k] : undefined;
        if (v === undefined && !field.optional) {
          issues.push({ path: joinPath(path, k), message: 'is required', fix: `add ${k}: ${field.expected}` });
          bad = true;
          continue;
        }
        const r = field.check(v, joinPath(path, k), issues);
        if (r === INVALID) bad = true;
        else if (r !== undefined) out[k] = r;
      }
      return bad ? INVALID : (out as InferObject<S>);
    },
  };
}

/**
 * One of several object schemas chosen by a string field (`type`, `kind`).
 * An unknown tag is one issue at `<path>.<tag>`; the chosen schema reports the rest.
 */
export function taggedUnion<K extends string, M extends Record<string, Schema<unknown>>>(
  tag: K,
  variants: M,
): Schema<Infer<M[keyof M]>> {
  const names = Object.keys(variants);
  const expected = `an object with ${tag} one of ${names.join(', ')}`;
  return {
    expected,
    check(value, path, issues) {
      if (!isPlainObject(value)) return mismatch(path, expected, value, issues);
      const t = value[tag];
      const variant = typeof t === 'string' && Object.prototype.hasOwnProperty.call(variants, t) ? variants[t] : undefined;
      if (!variant) {
        const hint = typeof t === 'string' ? suggest(t, names) : undefined;
        issues.push({
          path: joinPath(path, tag),
          message: t === undefined ? 'is required' : `must be one of ${names.join(', ')}, got ${JSON.stringify(t) ?? typeName(t)}`,
          fix: hint ? `did you mean ${JSON.stringify(hint)}?` : `set ${tag} to one of ${names.join(', ')}`,
        });
        return INVALID;
      }
      return variant.check(value, path, issues) as Infer<M[keyof M]> | Invalid;
    },
  };
}

/** Requires exactly one of `keys` to be present on an (already validated) object. */
export function exactlyOne<T extends object>(schema: Schema<T>, keys: readonly (keyof T & string)[]): Schema<T> {
  return refine(schema, (value, path, issues) => {
    const present = keys.filter((k) => value[k] !== undefined);
    if (present.length !== 1) {
      issues.push({
        path,
        message: present.length === 0 ? `must set one of ${keys.join(', ')}` : `must set only one of ${keys.join(', ')}, got ${present.join(' and ')}`,
        fix: `keep exactly one of ${keys.join(', ')}`,
      });
    }
  });
}

/** Pushes an issue for every item whose `keyOf` repeats an earlier one. */
export function uniqueBy<T>(items: readonly T[], keyOf: (item: T) => string | number, path: string, field: string, issues: Issue[]): void {
  const seen = new Map<string | number, number>();
  items.forEach((item, i) => {
    const k = keyOf(item);
    const first = seen.get(k);
    if (first === undefined) seen.set(k, i);
    else
      issues.push({
        path: joinPath(joinPath(path, i), field),
        message: `duplicates ${path}[${first}].${field} (${JSON.stringify(k)})`,
        fix: `give each item a distinct ${field}`,
      });
  });
}

// ---------------------------------------------------------------- hints

/** The candidate within edit distance 2 of `input` (or equal ignoring case), if any: a likely typo. */
export function suggest(input: string, candidates: readonly string[]): string | undefined {
  if (input.length > 64) return undefined;
  let best: string | undefined;
  let bestDistance = 3;
  for (const c of candidates) {
    if (c.toLowerCase() === input.toLowerCase()) return c;
    const d = editDistance(input, c, bestDistance);
    // Half the letters changed is a different word, not a typo.
    if (d < bestDistance && d * 2 <= Math.max(input.length, c.length)) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string, cap: number): number {
  if (Math.abs(a.length - b.length) >= cap) return cap;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}
