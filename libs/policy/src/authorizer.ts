// Zero-trust authorization for the agent's inbound side: AuthorizationPolicy
// resources are compiled once per config push into per-target rule sets;
// `decide` runs per connection or request and allocates nothing unless an
// AUDIT policy matched.
//
// Semantics (deny by default, stricter than Istio):
//   - any matching DENY policy denies (and is named);
//   - else any matching ALLOW policy allows (and is named);
//   - else the request is denied `no_matching_allow`, also when the target has
//     no policy at all;
//   - AUDIT policies never change the decision; the matching ones are listed.
// Policies are evaluated in `ns/name` order, so the named policy does not
// depend on the order the resources arrived in.
//
// A rule matches when any `from` matches the caller AND every `to` field it
// gives matches (method in `methods`, path matches one of `paths`).
//
// Unknown request attributes. On a TCP connection there is no method and no
// path, and a method or path that is not in normal form (the caller skipped
// normalizePath, or a lower-case method) is treated the same way: unknown.
// A rule field that constrains an unknown attribute
//   - does NOT match in an ALLOW rule (an ALLOW "GET /api/*" must not open
//     the whole TCP port), and
//   - DOES match in DENY and AUDIT rules (Istio drops HTTP-only fields from
//     DENY rules on TCP: a DENY "from X to /admin" denies X's connections).
// Both err towards refusing.

import { DEFAULT_NAMESPACE, type AuthorizationPolicyResource } from '@amime/protocol';
import { parseTrustDomain, SpiffeIdError } from '@amime/identity';
import { isNormalizedPath, isValidMethod, normalizePath } from './normalize-path.js';

export type DecisionReason = 'allowed' | 'denied_by_policy' | 'no_matching_allow';

export interface Decision {
  readonly allowed: boolean;
  readonly reason: DecisionReason;
  /** 'namespace/name' of the policy that decided; absent for `no_matching_allow`. */
  readonly policy?: string;
  /** 'namespace/name' of every matching AUDIT policy, in name order. */
  readonly audit: readonly string[];
}

/** The service receiving the connection or request. */
export interface AuthorizeTarget {
  readonly service: string;
  readonly namespace: string;
}

export interface AuthorizeRequest {
  /** The caller's SPIFFE ID, from its verified mTLS certificate. */
  readonly source: string;
  /** HTTP method; undefined for a TCP connection. */
  readonly method?: string | undefined;
  /** Path from normalizePath (no query); undefined for a TCP connection. */
  readonly path?: string | undefined;
}

export interface AuthorizerOptions {
  /**
   * The mesh's trust domain ("example.org"). When given, a caller outside it
   * matches no rule at all (so it is denied), whatever the rule names.
   */
  readonly trustDomain?: string;
}

/** Something in a policy that compiled to less than it says; for logging once per push. */
export interface PolicyIssue {
  /** 'namespace/name' */
  readonly policy: string;
  readonly message: string;
}

export class PolicyError extends Error {
  readonly code = 'AMIME_ERR_POLICY_OPTIONS';
  constructor(message: string) {
    super(message);
    this.name = 'PolicyError';
  }
}

const EMPTY: readonly string[] = Object.freeze([]);

const NO_MATCHING_ALLOW: Decision = Object.freeze({ allowed: false, reason: 'no_matching_allow', audit: EMPTY });

/** Path matcher of one rule. */
interface PathMatcher {
  readonly any: boolean;
  /** Exact paths, each with and without a trailing "/". */
  readonly exact: ReadonlySet<string>;
  /** "/prefix/*": matches `base` itself and anything starting with `under` ("/prefix/"). */
  readonly prefixes: ReadonlyArray<{ readonly base: string; readonly under: string }>;
}

interface CompiledRule {
  readonly identities: ReadonlySet<string>;
  readonly namespaces: ReadonlySet<string>;
  /** undefined: any method. */
  readonly methods: ReadonlySet<string> | undefined;
  /** undefined: any path. */
  readonly paths: PathMatcher | undefined;
}

interface CompiledPolicy {
  /** 'namespace/name' */
  readonly id: string;
  readonly rules: readonly CompiledRule[];
  /** The decision this policy makes, without audit entries (ALLOW and DENY only). */
  readonly decision: Decision;
}

interface TargetPolicies {
  readonly deny: readonly CompiledPolicy[];
  readonly allow: readonly CompiledPolicy[];
  readonly audit: readonly CompiledPolicy[];
}

const kTargets = Symbol('targets');
const kTrustPrefix = Symbol('trustPrefix');

/**
 * Where the caller's namespace starts, or: NOT_TRUSTED (outside the trust
 * domain or not a SPIFFE ID: nothing matches), NOT_WORKLOAD (only exact
 * identity rules can match).
 */
const NOT_TRUSTED = -1;
const NOT_WORKLOAD = -2;
const SCHEME = 'spiffe://';

export class Authorizer {
  /** Problems found while compiling; the policies still apply as documented on each. */
  readonly issues: readonly PolicyIssue[];
  private readonly [kTargets]: ReadonlyMap<string, ReadonlyMap<string, TargetPolicies>>;
  /** "spiffe://<td>/" or undefined when any trust domain is accepted. */
  private readonly [kTrustPrefix]: string | undefined;

  private constructor(targets: Map<string, Map<string, TargetPolicies>>, trustPrefix: string | undefined, issues: PolicyIssue[]) {
    this[kTargets] = targets;
    this[kTrustPrefix] = trustPrefix;
    this.issues = Object.freeze(issues);
  }

  /**
   * Compiles validated AuthorizationPolicy resources (from parseResources or
   * the push channel). Throws PolicyError only for a malformed `trustDomain`.
   */
  static compile(policies: readonly AuthorizationPolicyResource[], opts: AuthorizerOptions = {}): Authorizer {
    let trustDomain: string | undefined;
    if (opts.trustDomain !== undefined) {
      try {
        trustDomain = parseTrustDomain(opts.trustDomain);
      } catch (err) {
        const detail = err instanceof SpiffeIdError ? err.message : String(err);
        throw new PolicyError(`trustDomain: ${detail}; pass the bare trust domain name, e.g. "example.org"`);
      }
    }
    const trustPrefix = trustDomain === undefined ? undefined : `${SCHEME}${trustDomain}/`;
    const issues: PolicyIssue[] = [];

    const sorted = policies
      .map((p) => ({ p, id: `${p.metadata.namespace ?? DEFAULT_NAMESPACE}/${p.metadata.name}` }))
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));

    const building = new Map<string, Map<string, { deny: CompiledPolicy[]; allow: CompiledPolicy[]; audit: CompiledPolicy[] }>>();
    for (const { p, id } of sorted) {
      const namespace = p.metadata.namespace ?? DEFAULT_NAMESPACE;
      const { action, target, rules } = p.spec;
      const compiled: CompiledPolicy = {
        id,
        rules: rules.map((rule, i) => compileRule(rule, `rules[${i}]`, id, trustPrefix, issues)),
        decision:
          action === 'ALLOW'
            ? Object.freeze({ allowed: true, reason: 'allowed', policy: id, audit: EMPTY })
            : Object.freeze({ allowed: false, reason: 'denied_by_policy', policy: id, audit: EMPTY }),
      };
      let services = building.get(namespace);
      if (!services) building.set(namespace, (services = new Map()));
      let sets = services.get(target);
      if (!sets) services.set(target, (sets = { deny: [], allow: [], audit: [] }));
      (action === 'ALLOW' ? sets.allow : action === 'DENY' ? sets.deny : sets.audit).push(compiled);
    }
    return new Authorizer(building, trustPrefix, issues);
  }

  /** Decides one inbound connection (no method, no path) or HTTP request. Never throws. */
  decide(target: AuthorizeTarget, req: AuthorizeRequest): Decision {
    const sets = this[kTargets].get(target.namespace)?.get(target.service);
    if (sets === undefined) return NO_MATCHING_ALLOW;

    const source = req.source;
    const nsStart = callerNamespaceStart(source, this[kTrustPrefix]);
    if (nsStart === NOT_TRUSTED) return NO_MATCHING_ALLOW; // no rule can match: no DENY, no ALLOW, no AUDIT
    // The namespace of a workload ID, or '' (no namespace rule names '').
    const callerNs = nsStart >= 0 ? source.slice(nsStart, source.indexOf('/', nsStart)) : '';
    const method = req.method !== undefined && isValidMethod(req.method) ? req.method : undefined;
    const path = req.path !== undefined && isNormalizedPath(req.path) ? req.path : undefined;

    let decision: Decision = NO_MATCHING_ALLOW;
    const deny = firstMatch(sets.deny, source, callerNs, method, path, true);
    if (deny !== undefined) decision = deny.decision;
    else {
      const allow = firstMatch(sets.allow, source, callerNs, method, path, false);
      if (allow !== undefined) decision = allow.decision;
    }

    let audit: string[] | undefined;
    for (const policy of sets.audit) {
      if (policyMatches(policy, source, callerNs, method, path, true)) (audit ??= []).push(policy.id);
    }
    if (audit === undefined) return decision;
    return Object.freeze({ ...decision, audit: Object.freeze(audit) });
  }
}

function firstMatch(
  policies: readonly CompiledPolicy[],
  source: string,
  callerNs: string,
  method: string | undefined,
  path: string | undefined,
  unknownMatches: boolean,
): CompiledPolicy | undefined {
  for (const policy of policies) {
    if (policyMatches(policy, source, callerNs, method, path, unknownMatches)) return policy;
  }
  return undefined;
}

function policyMatches(
  policy: CompiledPolicy,
  source: string,
  callerNs: string,
  method: string | undefined,
  path: string | undefined,
  unknownMatches: boolean,
): boolean {
  for (const rule of policy.rules) {
    if (!rule.identities.has(source) && !rule.namespaces.has(callerNs)) continue;
    if (rule.methods !== undefined && (method === undefined ? !unknownMatches : !rule.methods.has(method))) continue;
    if (rule.paths !== undefined && (path === undefined ? !unknownMatches : !pathMatches(rule.paths, path))) continue;
    return true;
  }
  return false;
}

function pathMatches(m: PathMatcher, path: string): boolean {
  if (m.any || m.exact.has(path)) return true;
  for (const { base, under } of m.prefixes) {
    if (path === base || path.startsWith(under)) return true;
  }
  return false;
}

/**
 * For "spiffe://<td>/ns/<ns>/sa/<sa>" (in the trust domain, when one is set),
 * the index where <ns> starts; NOT_WORKLOAD for another SPIFFE ID in the trust
 * domain; NOT_TRUSTED otherwise. Allocates nothing.
 */
function callerNamespaceStart(source: string, trustPrefix: string | undefined): number {
  if (typeof source !== 'string') return NOT_TRUSTED;
  let pathStart: number;
  if (trustPrefix !== undefined) {
    if (!source.startsWith(trustPrefix)) return source.length === trustPrefix.length - 1 && trustPrefix.startsWith(source) ? NOT_WORKLOAD : NOT_TRUSTED;
    pathStart = trustPrefix.length - 1;
  } else {
    if (!source.startsWith(SCHEME)) return NOT_TRUSTED;
    pathStart = source.indexOf('/', SCHEME.length);
    if (pathStart <= SCHEME.length) return pathStart < 0 ? NOT_WORKLOAD : NOT_TRUSTED; // trust-domain-only ID, or empty trust domain
  }
  if (!source.startsWith('/ns/', pathStart)) return NOT_WORKLOAD;
  const nsStart = pathStart + 4;
  const nsEnd = source.indexOf('/', nsStart);
  if (nsEnd <= nsStart || !source.startsWith('/sa/', nsEnd)) return NOT_WORKLOAD;
  const saStart = nsEnd + 4;
  if (saStart >= source.length || source.indexOf('/', saStart) >= 0) return NOT_WORKLOAD;
  return nsStart;
}

type PolicyRule = AuthorizationPolicyResource['spec']['rules'][number];

function compileRule(rule: PolicyRule, at: string, id: string, trustPrefix: string | undefined, issues: PolicyIssue[]): CompiledRule {
  const identities = new Set<string>();
  const namespaces = new Set<string>();
  for (const from of rule.from) {
    if (from.identity !== undefined) {
      if (trustPrefix !== undefined && !from.identity.startsWith(trustPrefix)) {
        issues.push({ policy: id, message: `${at}.from: identity ${JSON.stringify(from.identity)} is outside trust domain ${JSON.stringify(trustPrefix.slice(SCHEME.length, -1))} and never matches` });
      }
      identities.add(from.identity);
    } else if (from.namespace !== undefined && from.namespace !== '') {
      namespaces.add(from.namespace);
    }
  }
  const to = rule.to;
  return {
    identities,
    namespaces,
    methods: to?.methods === undefined ? undefined : new Set(to.methods),
    paths: to?.paths === undefined ? undefined : compilePaths(to.paths, `${at}.to.paths`, id, issues),
  };
}

/**
 * Policy paths are normalised like request paths (so "/%61dmin/" and "/admin"
 * are one path); encoded slashes in a policy are decoded, the only reading
 * that can match a normalised request. A path that cannot be normalised is
 * dropped and reported: no normalised request could match it anyway.
 */
function compilePaths(paths: readonly string[], at: string, id: string, issues: PolicyIssue[]): PathMatcher {
  let any = false;
  const exact = new Set<string>();
  const prefixes: Array<{ base: string; under: string }> = [];
  for (const raw of paths) {
    const wildcard = raw.endsWith('/*');
    const n = normalizePath(wildcard ? raw.slice(0, -1) : raw, { encodedSlashes: 'decode' });
    if (!n.ok || raw.includes('?') || raw.includes('#')) {
      const why = n.ok ? 'a policy path has no query or fragment' : n.message;
      issues.push({ policy: id, message: `${at}: ${JSON.stringify(raw)} is dropped: ${why}` });
      continue;
    }
    const base = n.path.endsWith('/') ? n.path.slice(0, -1) : n.path; // '' for the root
    if (wildcard) {
      if (base === '') any = true;
      else prefixes.push({ base, under: `${base}/` });
    } else {
      exact.add(base === '' ? '/' : base);
      exact.add(`${base}/`);
    }
  }
  return { any, exact, prefixes };
}
