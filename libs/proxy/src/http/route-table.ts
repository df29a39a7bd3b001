// Routes compiled once per config push into per-service tables; per request only
// `match` (string compares and pre-compiled, anchored regexes) and `pickBackend`
// (a scan of at most 16 cumulative weights) run, and neither allocates.
import type { IncomingHttpHeaders } from 'node:http';
import { durationMs, type RouteResource } from '@amime/protocol';

export interface ServiceRef {
  readonly name: string;
  readonly namespace: string;
}

/** Bits of CompiledRule.retryOn. */
export const RETRY_ON_5XX = 1;
export const RETRY_ON_RESET = 2;
export const RETRY_ON_CONNECT_FAILURE = 4;
/** 502, 503 and 504 responses, and per-try timeouts. */
export const RETRY_ON_GATEWAY_ERROR = 8;
/**
 * Without a retries policy (no Route, or a rule without `retries`), a request whose connection
 * to the peer never came up is tried on another endpoint this many times, as Istio's default
 * retry policy does: the request was never sent, so even a POST is safe to send elsewhere.
 */
export const DEFAULT_CONNECT_RETRIES = 2;

/** When a rule sets retries without `on`: failures where the request most likely did no work upstream. */
export const DEFAULT_RETRY_ON = RETRY_ON_GATEWAY_ERROR | RETRY_ON_CONNECT_FAILURE | RETRY_ON_RESET;

const RETRY_BITS: Readonly<Record<string, number>> = {
  '5xx': RETRY_ON_5XX,
  reset: RETRY_ON_RESET,
  'connect-failure': RETRY_ON_CONNECT_FAILURE,
  'gateway-error': RETRY_ON_GATEWAY_ERROR,
};

export interface CompiledBackend {
  readonly service: ServiceRef;
  readonly subset: string | undefined;
  readonly weight: number;
}

export interface CompiledFault {
  readonly delayMs: number;
  /** 0..100; 0 = no delay. */
  readonly delayPercent: number;
  readonly abortStatus: number;
  /** 0..100; 0 = no abort. */
  readonly abortPercent: number;
}

export interface CompiledMirror {
  readonly service: ServiceRef;
  readonly percent: number;
}

export interface CompiledRule {
  /** The Route's metadata.name; '' for the default rule. */
  readonly route: string;
  /** Index of the rule in its Route; -1 for the default rule. */
  readonly index: number;
  readonly backends: readonly CompiledBackend[];
  /** Whole request, all attempts included; 0 = none. */
  readonly timeoutMs: number;
  /** Retries after the first attempt (the Route's retries.attempts); 0 = none. */
  readonly retries: number;
  /** Per attempt, until the response head; 0 = none. */
  readonly perTryTimeoutMs: number;
  /** RETRY_ON_* bits. */
  readonly retryOn: number;
  readonly mirror: CompiledMirror | undefined;
  readonly fault: CompiledFault | undefined;
  /** A backend by weight; `random` returns [0, 1). Weight-0 backends are never picked. */
  pickBackend(random: () => number): CompiledBackend;
}

export interface RouteTable {
  readonly service: ServiceRef;
  /** All rules in match order; empty when no Route targets the service (then `match` returns the default rule). */
  readonly rules: readonly CompiledRule[];
  /**
   * The first rule whose match accepts the request; the default rule (the service
   * itself, weight 100, no retries, no timeout) when no Route targets the service;
   * undefined when Routes exist but none of their rules match (answer 404).
   * `path` is the request path without the query.
   */
  match(method: string, path: string, headers: IncomingHttpHeaders): CompiledRule | undefined;
}

type PathMatcher = (path: string) => boolean;
type HeaderMatcher = (value: string) => boolean;

interface HeaderCondition {
  readonly name: string;
  readonly test: HeaderMatcher;
}

class Rule implements CompiledRule {
  private readonly cumulative: Float64Array;
  private readonly total: number;

  constructor(
    readonly route: string,
    readonly index: number,
    readonly backends: readonly CompiledBackend[],
    readonly timeoutMs: number,
    readonly retries: number,
    readonly perTryTimeoutMs: number,
    readonly retryOn: number,
    readonly mirror: CompiledMirror | undefined,
    readonly fault: CompiledFault | undefined,
    readonly method: string | undefined,
    private readonly path: PathMatcher | undefined,
    private readonly headers: readonly HeaderCondition[],
  ) {
    this.cumulative = new Float64Array(backends.length);
    let sum = 0;
    for (let i = 0; i < backends.length; i++) this.cumulative[i] = sum += backends[i]!.weight;
    this.total = sum;
  }

  matches(method: string, path: string, headers: IncomingHttpHeaders): boolean {
    if (this.method !== undefined && this.method !== method) return false;
    if (this.path !== undefined && !this.path(path)) return false;
    for (let i = 0; i < this.headers.length; i++) {
      const h = this.headers[i]!;
      const v = headers[h.name];
      if (v === undefined) return false;
      if (!h.test(typeof v === 'string' ? v : v.join(', '))) return false;
    }
    return true;
  }

  pickBackend(random: () => number): CompiledBackend {
    const r = random() * this.total;
    const c = this.cumulative;
    for (let i = 0; i < c.length; i++) if (r < c[i]!) return this.backends[i]!;
    // random() returned 1 or rounding: the last backend with a weight
    for (let i = c.length - 1; i > 0; i--) if (this.backends[i]!.weight > 0) return this.backends[i]!;
    return this.backends[0]!;
  }
}

class Table implements RouteTable {
  constructor(
    readonly service: ServiceRef,
    readonly rules: readonly Rule[],
    private readonly fallback: Rule | undefined,
  ) {}

  match(method: string, path: string, headers: IncomingHttpHeaders): CompiledRule | undefined {
    const rules = this.rules;
    for (let i = 0; i < rules.length; i++) if (rules[i]!.matches(method, path, headers)) return rules[i];
    return this.fallback;
  }
}

/** Full-match regex, compiled with the `u` flag as the schema validated it. */
function anchored(source: string): RegExp {
  return new RegExp(`^(?:${source})$`, 'u');
}

/**
 * Gateway-API-style prefix: "/api" matches "/api", "/api/" and "/api/x" but not
 * "/apix"; a prefix ending in "/" (and "/" itself) matches any path starting with it.
 */
function prefixMatcher(prefix: string): PathMatcher {
  if (prefix.endsWith('/')) return (p) => p.startsWith(prefix);
  const n = prefix.length;
  return (p) => p.startsWith(prefix) && (p.length === n || p.charCodeAt(n) === 0x2f);
}

type RouteRule = RouteResource['spec']['rules'][number];

function compileRule(route: RouteResource, index: number, r: RouteRule): Rule {
  const namespace = route.metadata.namespace;
  const pm = r.match?.path;
  let path: PathMatcher | undefined;
  if (pm?.exact !== undefined) {
    const exact = pm.exact;
    path = (p) => p === exact;
  } else if (pm?.prefix !== undefined) {
    path = prefixMatcher(pm.prefix);
  } else if (pm?.regex !== undefined) {
    const re = anchored(pm.regex);
    path = (p) => re.test(p);
  }
  const headers: HeaderCondition[] = (r.match?.headers ?? []).map((h) => {
    const name = h.name.toLowerCase();
    if (h.exact !== undefined) {
      const exact = h.exact;
      return { name, test: (v: string) => v === exact };
    }
    if (h.prefix !== undefined) {
      const prefix = h.prefix;
      return { name, test: (v: string) => v.startsWith(prefix) };
    }
    const re = anchored(h.regex!);
    return { name, test: (v: string) => re.test(v) };
  });
  const backends = r.backends.map((b) => ({ service: { name: b.service, namespace }, subset: b.subset, weight: b.weight }));
  let retryOn = r.retries ? DEFAULT_RETRY_ON : RETRY_ON_CONNECT_FAILURE;
  if (r.retries?.on) {
    retryOn = 0;
    for (const o of r.retries.on) retryOn |= RETRY_BITS[o]!;
  }
  const fault = r.fault
    ? {
        delayMs: r.fault.delay ? durationMs(r.fault.delay.fixed) : 0,
        delayPercent: r.fault.delay?.percent ?? 0,
        abortStatus: r.fault.abort?.status ?? 0,
        abortPercent: r.fault.abort?.percent ?? 0,
      }
    : undefined;
  return new Rule(
    route.metadata.name,
    index,
    backends,
    r.timeout ? durationMs(r.timeout) : 0,
    r.retries ? r.retries.attempts : DEFAULT_CONNECT_RETRIES,
    r.retries?.perTryTimeout ? durationMs(r.retries.perTryTimeout) : 0,
    retryOn,
    r.mirror ? { service: { name: r.mirror.service, namespace }, percent: r.mirror.percent } : undefined,
    fault,
    r.match?.method,
    path,
    headers,
  );
}

/** The rule used when no Route targets a service: all traffic to the service itself. */
export function defaultRule(service: ServiceRef): CompiledRule {
  return new Rule('', -1, [{ service, subset: undefined, weight: 100 }], 0, DEFAULT_CONNECT_RETRIES, 0, RETRY_ON_CONNECT_FAILURE, undefined, undefined, undefined, undefined, []);
}

/**
 * Compiles the Routes (already validated by the protocol schema) that target `service`
 * into its table. Routes in the service's namespace whose spec.service names it apply,
 * ordered by metadata.name, their rules in order; others are ignored.
 */
export function compileRoutes(service: ServiceRef, routes: readonly RouteResource[]): RouteTable {
  const mine = routes
    .filter((r) => r.spec.service === service.name && r.metadata.namespace === service.namespace)
    .sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0));
  const rules: Rule[] = [];
  for (const route of mine) route.spec.rules.forEach((r, i) => rules.push(compileRule(route, i, r)));
  return new Table(service, rules, rules.length === 0 ? (defaultRule(service) as Rule) : undefined);
}
