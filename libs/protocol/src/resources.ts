// Configuration resources in the Kubernetes shape:
//
//   { apiVersion: 'amime.dev/v1', kind, metadata: { name, namespace, labels?, version? }, spec }
//
// Operators apply Service, Route, AuthorizationPolicy and MeshConfig
// (`meshctl apply -f`, the admin API). The control plane also pushes
// Endpoint, TrustBundle and RevocationList resources, which it derives itself;
// `parseResources` refuses those kinds from operators.
//
// metadata.version is set by the server (the store revision). It is accepted
// from clients, so that `meshctl get -o yaml | meshctl apply -f -` round-trips,
// and then dropped by `parseResources`: the server never trusts it.

import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { isIP } from 'node:net';
import { parseSpiffeId, isWorkloadId, SpiffeIdError } from '@amime/identity';
import {
  INVALID,
  ValidationError,
  array,
  boolean,
  enumOf,
  exactlyOne,
  integer,
  joinPath,
  literal,
  object,
  optional,
  record,
  refine,
  string,
  taggedUnion,
  uniqueBy,
  withDefault,
  type Infer,
  type Issue,
  type Schema,
} from './validate.js';

export const API_VERSION = 'amime.dev/v1';
export const DEFAULT_NAMESPACE = 'default';

/** Kinds an operator may apply. */
export const CONFIG_KINDS = ['Service', 'Route', 'AuthorizationPolicy', 'MeshConfig'] as const;
/** Kinds the control plane derives and pushes. */
export const DERIVED_KINDS = ['Endpoint', 'TrustBundle', 'RevocationList'] as const;
/** Every kind on the push channel; the protocol's resource types. */
export const RESOURCE_TYPES = ['Service', 'Endpoint', 'Route', 'AuthorizationPolicy', 'MeshConfig', 'TrustBundle', 'RevocationList'] as const;
export type ConfigKind = (typeof CONFIG_KINDS)[number];
export type ResourceType = (typeof RESOURCE_TYPES)[number];

export const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'CONNECT', 'TRACE'] as const;
export const RETRY_ON = ['5xx', 'reset', 'connect-failure', 'gateway-error'] as const;

// ---------------------------------------------------------------- field schemas

export const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export const dns1123Name = string({
  minLength: 1,
  maxLength: 63,
  pattern: DNS1123_LABEL,
  patternName: 'a DNS-1123 label',
  fix: 'use at most 63 lowercase letters, digits and "-", starting and ending with a letter or digit',
});

const labelKey = string({
  minLength: 1,
  maxLength: 317,
  pattern: /^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/,
  patternName: 'a label key',
  fix: 'use [prefix/]name where name is at most 63 letters, digits, "-", "_" or "."',
});
const labelValue = string({
  maxLength: 63,
  pattern: /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/,
  patternName: 'a label value',
  fix: 'use at most 63 letters, digits, "-", "_" or ".", starting and ending with a letter or digit',
});

export const versionString = string({
  minLength: 1,
  maxLength: 64,
  pattern: /^[A-Za-z0-9._:-]+$/,
  patternName: 'a version (letters, digits, ".", "_", ":" or "-")',
});

const DURATION = /^(\d{1,10})(ms|s|m|h)$/;
const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Milliseconds in a duration string (`250ms`, `2s`, `5m`, `1h`); NaN when malformed. */
export function durationMs(text: string): number {
  const m = DURATION.exec(text);
  return m ? Number(m[1]) * UNIT_MS[m[2]!]! : Number.NaN;
}

function formatMs(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/** A duration string from `minMs` to `maxMs`. */
export function duration(minMs: number, maxMs: number): Schema<string> {
  const range = `from ${formatMs(minMs)} to ${formatMs(maxMs)}`;
  return string({
    minLength: 1,
    maxLength: 16,
    refine(s) {
      const ms = durationMs(s);
      if (Number.isNaN(ms)) return { message: `must be a duration like "250ms", "2s", "5m" or "1h", got ${JSON.stringify(s)}`, fix: 'use an integer followed by ms, s, m or h' };
      if (ms < minMs || ms > maxMs) return { message: `must be a duration ${range}, got ${JSON.stringify(s)}` };
      return undefined;
    },
  });
}

/** A SPIFFE ID; with `workload`, of the form spiffe://<td>/ns/<ns>/sa/<sa>. */
export function spiffeIdString(opts: { workload: boolean }): Schema<string> {
  return string({
    minLength: 1,
    maxLength: 2048,
    refine(s) {
      try {
        const id = parseSpiffeId(s);
        if (opts.workload && !(isWorkloadId(id) && WORKLOAD_PATH.test(id.path))) {
          return { message: `must be a workload SPIFFE ID, got ${JSON.stringify(s)}`, fix: 'use spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>' };
        }
        return undefined;
      } catch (err) {
        const detail = err instanceof SpiffeIdError ? err.message : String(err);
        return { message: `must be a SPIFFE ID: ${detail}`, fix: 'use spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>' };
      }
    },
  });
}
const WORKLOAD_PATH = /^\/ns\/[^/]+\/sa\/[^/]+$/;

/** Namespace of a workload SPIFFE ID (`/ns/<ns>/sa/<sa>`); undefined for other IDs. */
export function namespaceOfId(id: string): string | undefined {
  const m = /^spiffe:\/\/[^/]+\/ns\/([^/]+)\/sa\/[^/]+$/.exec(id);
  return m?.[1];
}

export const MAX_REGEX_LENGTH = 256;

/** A quantified group that itself contains a quantifier: `(a+)+`, `(.*)*`, `(x{2,})+`. */
const NESTED_QUANTIFIER = /\([^()]*(?:[+*}]|\?(?!:))[^()]*\)(?:[+*]|\{\d+,)/;

/**
 * A regular expression that compiles with the `u` flag (consumers compile it
 * the same way), at most MAX_REGEX_LENGTH characters, without nested
 * quantifiers: a cheap guard against the classic catastrophic-backtracking
 * shapes, not a proof of linear time.
 */
export const regexString = string({
  minLength: 1,
  maxLength: MAX_REGEX_LENGTH,
  refine(s) {
    if (NESTED_QUANTIFIER.test(s)) {
      return { message: `must not repeat a group that itself repeats, got ${JSON.stringify(s)}`, fix: 'rewrite without nested repetition, e.g. (ab)+ or a+ instead of (a+)+' };
    }
    try {
      new RegExp(s, 'u');
      return undefined;
    } catch (err) {
      return { message: `must be a valid regular expression: ${(err as Error).message}` };
    }
  },
});

export const ipAddress = string({
  minLength: 1,
  maxLength: 45,
  refine: (s) => (isIP(s) === 0 ? { message: `must be an IPv4 or IPv6 address, got ${JSON.stringify(s)}` } : undefined),
});

const port = integer(1, 65535);
const percent = integer(0, 100);
export const labelMap = record(labelKey, labelValue, { maxKeys: 64 });
const labels = optional(labelMap);

/** A failure-domain name (`us-east-1a`, `rack-3`): letters, digits, ".", "_", "-". */
export const zoneName = string({
  minLength: 1,
  maxLength: 63,
  pattern: /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/,
  patternName: 'a zone name',
});

export const HEALTH_STATES = ['healthy', 'unhealthy'] as const;
export type HealthState = (typeof HEALTH_STATES)[number];

const metadata = object({
  name: dns1123Name,
  namespace: withDefault(dns1123Name, DEFAULT_NAMESPACE),
  labels,
  version: optional(versionString),
});
export type Metadata = Infer<typeof metadata>;

// ---------------------------------------------------------------- Service

const servicePort = object({
  name: dns1123Name,
  port,
  protocol: enumOf(['tcp', 'http'] as const),
});

export const LOAD_BALANCING_ALGORITHMS = ['p2c-ewma', 'round-robin', 'least-request', 'ring-hash'] as const;
export type LoadBalancingAlgorithm = (typeof LOAD_BALANCING_ALGORITHMS)[number];

const headerName = string({ minLength: 1, maxLength: 128, pattern: /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, patternName: 'an HTTP header name' });
const cookieName = string({ minLength: 1, maxLength: 128, pattern: /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, patternName: 'a cookie name' });

const outlierSettings = object({
  consecutiveFailures: integer(1, 1000),
  baseEjectionTime: duration(1, 3_600_000),
  maxEjectionPercent: percent,
});

/**
 * How callers reach this service (Istio's DestinationRule, folded into the Service):
 * balancing, hash key, connection limits, outlier detection, subsets by label,
 * zone failover and the inbound rate limit per source identity.
 */
const trafficPolicy = object({
  loadBalancing: optional(
    object({
      algorithm: enumOf(LOAD_BALANCING_ALGORITHMS),
      /** For ring-hash: the request header or cookie whose value picks the endpoint. */
      hash: optional(exactlyOne(object({ header: optional(headerName), cookie: optional(cookieName) }), ['header', 'cookie'])),
    }),
  ),
  connectionPool: optional(
    object({
      /** Connections from one agent to all of this service's endpoints. */
      maxConnections: optional(integer(1, 100_000)),
      /** Requests waiting for a connection or a retry slot; more are refused with 503. */
      maxPendingRequests: optional(integer(0, 100_000)),
      /** Requests in flight from one agent to this service. */
      maxRequests: optional(integer(1, 100_000)),
    }),
  ),
  outlier: optional(outlierSettings),
  /** Prefer endpoints in the caller's zone while any there is healthy. Default true. */
  zoneFailover: optional(boolean()),
  /** Named groups of endpoints by their metadata.labels, for Route backends' `subset`. */
  subsets: optional(
    refine(array(object({ name: dns1123Name, labels: labelMap }), { minItems: 1, maxItems: 32 }), (subsets, path, issues) =>
      uniqueBy(subsets, (x) => x.name, path, 'name', issues),
    ),
  ),
  /** Inbound: requests (HTTP) or connections (TCP) per second per source identity. */
  rateLimit: optional(object({ requestsPerSecond: integer(1, 1_000_000), burst: optional(integer(1, 1_000_000)) })),
});
export type TrafficPolicy = Infer<typeof trafficPolicy>;

export const serviceSpec = object({
  identity: spiffeIdString({ workload: true }),
  ports: refine(array(servicePort, { minItems: 1, maxItems: 64 }), (ports, path, issues) => {
    uniqueBy(ports, (p) => p.name, path, 'name', issues);
    uniqueBy(ports, (p) => p.port, path, 'port', issues);
  }),
  trafficPolicy: optional(trafficPolicy),
});
export type ServiceSpec = Infer<typeof serviceSpec>;

// ---------------------------------------------------------------- Route

const pathMatch = exactlyOne(
  object({
    exact: optional(string({ minLength: 1, maxLength: 1024, pattern: /^\/\S*$/, patternName: 'a path starting with "/"' })),
    prefix: optional(string({ minLength: 1, maxLength: 1024, pattern: /^\/\S*$/, patternName: 'a path starting with "/"' })),
    regex: optional(regexString),
  }),
  ['exact', 'prefix', 'regex'],
);

const headerMatch = exactlyOne(
  object({
    name: string({ minLength: 1, maxLength: 128, pattern: /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, patternName: 'an HTTP header name' }),
    exact: optional(string({ maxLength: 4096 })),
    prefix: optional(string({ maxLength: 4096 })),
    regex: optional(regexString),
  }),
  ['exact', 'prefix', 'regex'],
);

const backend = object({
  service: dns1123Name,
  subset: optional(dns1123Name),
  weight: percent,
});

const routeRule = object({
  match: optional(
    object({
      path: optional(pathMatch),
      headers: optional(array(headerMatch, { maxItems: 16 })),
      method: optional(enumOf(HTTP_METHODS)),
    }),
  ),
  backends: refine(array(backend, { minItems: 1, maxItems: 16 }), (backends, path, issues) => {
    if (backends.reduce((sum, b) => sum + b.weight, 0) === 0) {
      issues.push({ path, message: 'must have weights that sum to more than 0', fix: 'give at least one backend a weight above 0' });
    }
  }),
  timeout: optional(duration(1, 3_600_000)),
  retries: optional(
    object({
      attempts: integer(0, 10),
      perTryTimeout: optional(duration(1, 3_600_000)),
      on: optional(
        refine(array(enumOf(RETRY_ON), { minItems: 1, maxItems: RETRY_ON.length }), (on, path, issues) =>
          on.forEach((o, i) => {
            if (on.indexOf(o) !== i) issues.push({ path: joinPath(path, i), message: `repeats ${JSON.stringify(o)}`, fix: 'list each condition once' });
          }),
        ),
      ),
    }),
  ),
  mirror: optional(object({ service: dns1123Name, percent })),
  /** Fault injection for testing resilience: delay and/or abort a share of requests. */
  fault: optional(
    object({
      delay: optional(object({ fixed: duration(1, 3_600_000), percent })),
      abort: optional(object({ status: integer(200, 599), percent })),
    }),
  ),
});

export const routeSpec = object({
  service: dns1123Name,
  rules: array(routeRule, { minItems: 1, maxItems: 64 }),
});
export type RouteSpec = Infer<typeof routeSpec>;

// ---------------------------------------------------------------- AuthorizationPolicy

const source = exactlyOne(
  object({
    identity: optional(spiffeIdString({ workload: false })),
    namespace: optional(dns1123Name),
  }),
  ['identity', 'namespace'],
);

/** '/exact', '/prefix/*' or '/*': '*' only as a whole last segment. */
const policyPath = string({
  minLength: 1,
  maxLength: 1024,
  pattern: /^\/[^\s*?#]*(?<=\/)\*$|^\/[^\s*?#]*$/,
  patternName: 'a path "/exact" or "/prefix/*"',
  fix: 'start with "/"; use "*" only as the whole last segment',
});

export const authorizationPolicySpec = object({
  action: enumOf(['ALLOW', 'DENY', 'AUDIT'] as const),
  target: dns1123Name,
  rules: array(
    object({
      from: array(source, { minItems: 1, maxItems: 64 }),
      to: optional(
        object({
          methods: optional(array(enumOf(HTTP_METHODS), { minItems: 1, maxItems: HTTP_METHODS.length })),
          paths: optional(array(policyPath, { minItems: 1, maxItems: 64 })),
        }),
      ),
    }),
    { minItems: 1, maxItems: 64 },
  ),
});
export type AuthorizationPolicySpec = Infer<typeof authorizationPolicySpec>;

// ---------------------------------------------------------------- MeshConfig

export const MESH_CONFIG_DEFAULTS = {
  mtls: 'STRICT',
  loadBalancing: 'p2c-ewma',
  outlier: { consecutiveFailures: 5, baseEjectionTime: '30s', maxEjectionPercent: 50 },
  certTtls: { workload: '1h', agent: '1h' },
  retryBudget: { percent: 20, minRetriesPerSecond: 10 },
} as const;

const certTtl = duration(5 * 60_000, 30 * 24 * 3_600_000);

export const MONITOR_DEFAULTS = { learningWindow: '10m', sensitivity: 'medium', reportInterval: '10s' } as const;
export const MONITOR_SENSITIVITY_LEVELS = ['low', 'medium', 'high'] as const;
/** low | medium | high, or k itself: flag beyond mean ± k·σ (1 to 20). */
const monitorSensitivity: Schema<(typeof MONITOR_SENSITIVITY_LEVELS)[number] | number> = {
  expected: 'low, medium, high or a number from 1 to 20',
  check(value, path, issues) {
    if (typeof value === 'number' && Number.isFinite(value) && value >= 1 && value <= 20) return value;
    if (typeof value === 'string' && (MONITOR_SENSITIVITY_LEVELS as readonly string[]).includes(value)) return value as (typeof MONITOR_SENSITIVITY_LEVELS)[number];
    issues.push({ path, message: `must be low, medium, high or a number from 1 to 20 (σ multiples), got ${JSON.stringify(value) ?? 'nothing'}` });
    return INVALID;
  },
};
/** The control plane's communication-pattern monitor (docs/design/monitor.md). */
const monitorSettings = object({
  /** Nothing is flagged for this long after the control plane starts; baselines learn. */
  learningWindow: withDefault(duration(0, 7 * 24 * 3_600_000), MONITOR_DEFAULTS.learningWindow),
  sensitivity: withDefault(monitorSensitivity, MONITOR_DEFAULTS.sensitivity),
  /** How often agents report edge traffic. */
  reportInterval: withDefault(duration(1000, 600_000), MONITOR_DEFAULTS.reportInterval),
});
export type MonitorSettingsSpec = Infer<typeof monitorSettings>;

export const meshConfigSpec = object({
  mtls: withDefault(enumOf(['STRICT', 'PERMISSIVE'] as const), MESH_CONFIG_DEFAULTS.mtls),
  loadBalancing: withDefault(enumOf(LOAD_BALANCING_ALGORITHMS), MESH_CONFIG_DEFAULTS.loadBalancing),
  outlier: withDefault(outlierSettings, { ...MESH_CONFIG_DEFAULTS.outlier }),
  /** Retries may add at most this share of requests, plus a floor per second (Linkerd's retry budget). */
  retryBudget: withDefault(object({ percent, minRetriesPerSecond: integer(0, 100_000) }), { ...MESH_CONFIG_DEFAULTS.retryBudget }),
  certTtls: withDefault(object({ workload: certTtl, agent: certTtl }), { ...MESH_CONFIG_DEFAULTS.certTtls }),
  /** Absent: the monitor runs with MONITOR_DEFAULTS. */
  monitor: optional(monitorSettings),
});
export type MeshConfigSpec = Infer<typeof meshConfigSpec>;

// ---------------------------------------------------------------- derived kinds


/**
 * One registered instance. metadata.labels carries the instance's labels;
 * `health` is `unhealthy` when the agent's active check fails or the agent's
 * heartbeat lapsed (then `reason` says which); balancers skip unhealthy ones.
 */
export const endpointSpec = object({
  service: dns1123Name,
  node: dns1123Name,
  address: ipAddress,
  port,
  identity: spiffeIdString({ workload: true }),
  zone: optional(zoneName),
  weight: withDefault(integer(1, 1000), 100),
  health: withDefault(enumOf(HEALTH_STATES), 'healthy'),
  reason: optional(enumOf(['check_failed', 'heartbeat_lapsed'] as const)),
});
export type EndpointSpec = Infer<typeof endpointSpec>;

const pemCertificate = string({
  minLength: 1,
  maxLength: 16_384,
  pattern: /^-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----\r?\n?$/,
  patternName: 'one PEM certificate',
});

export const trustBundleSpec = object({
  trustDomain: string({ minLength: 1, maxLength: 255, pattern: /^[a-z0-9._-]+$/, patternName: 'a trust domain' }),
  roots: array(pemCertificate, { minItems: 1, maxItems: 16 }),
});
export type TrustBundleSpec = Infer<typeof trustBundleSpec>;

export const revocationListSpec = object({
  /** The CA's list version: agents also fetch the list from the CA directly, and keep whichever is newer. */
  version: optional(integer(0, Number.MAX_SAFE_INTEGER)),
  serials: array(string({ minLength: 1, maxLength: 64, pattern: /^[0-9a-f]+$/, patternName: 'a lowercase hex serial' }), { maxItems: 100_000 }),
  identities: withDefault(array(spiffeIdString({ workload: false }), { maxItems: 10_000 }), []),
});
export type RevocationListSpec = Infer<typeof revocationListSpec>;

// ---------------------------------------------------------------- resources

function resource<K extends string, S>(kind: K, spec: Schema<S>) {
  return object({ apiVersion: literal(API_VERSION), kind: literal(kind), metadata, spec });
}

const service = refine(resource('Service', serviceSpec), (r, path, issues) => {
  const ns = namespaceOfId(r.spec.identity);
  if (ns !== undefined && ns !== r.metadata.namespace) {
    issues.push({
      path: joinPath(path, 'spec.identity'),
      message: `names namespace ${JSON.stringify(ns)} but the Service is in namespace ${JSON.stringify(r.metadata.namespace)}`,
      fix: `use .../ns/${r.metadata.namespace}/sa/<service-account> or set metadata.namespace: ${ns}`,
    });
  }
});

export const RESOURCE_SCHEMAS = {
  Service: service,
  Route: resource('Route', routeSpec),
  AuthorizationPolicy: resource('AuthorizationPolicy', authorizationPolicySpec),
  MeshConfig: resource('MeshConfig', meshConfigSpec),
  Endpoint: resource('Endpoint', endpointSpec),
  TrustBundle: resource('TrustBundle', trustBundleSpec),
  RevocationList: resource('RevocationList', revocationListSpec),
} as const;

export type ServiceResource = Infer<typeof RESOURCE_SCHEMAS.Service>;
export type RouteResource = Infer<typeof RESOURCE_SCHEMAS.Route>;
export type AuthorizationPolicyResource = Infer<typeof RESOURCE_SCHEMAS.AuthorizationPolicy>;
export type MeshConfigResource = Infer<typeof RESOURCE_SCHEMAS.MeshConfig>;
export type EndpointResource = Infer<typeof RESOURCE_SCHEMAS.Endpoint>;
export type TrustBundleResource = Infer<typeof RESOURCE_SCHEMAS.TrustBundle>;
export type RevocationListResource = Infer<typeof RESOURCE_SCHEMAS.RevocationList>;
export type ConfigResource = ServiceResource | RouteResource | AuthorizationPolicyResource | MeshConfigResource;
export type Resource = ConfigResource | EndpointResource | TrustBundleResource | RevocationListResource;

/** Any operator-applied resource, chosen by `kind`. */
export const configResource = taggedUnion('kind', {
  Service: RESOURCE_SCHEMAS.Service,
  Route: RESOURCE_SCHEMAS.Route,
  AuthorizationPolicy: RESOURCE_SCHEMAS.AuthorizationPolicy,
  MeshConfig: RESOURCE_SCHEMAS.MeshConfig,
}) as Schema<ConfigResource>;

/** Any resource on the push channel, chosen by `kind`. */
export const anyResource = taggedUnion('kind', RESOURCE_SCHEMAS) as Schema<Resource>;

/**
 * The Endpoint name of an instance: `<service>-<10 hex of sha256(node,address,port)>`,
 * stable across re-registrations and within the 63-character limit.
 */
export function endpointName(service: string, node: string, address: string, port: number): string {
  const digest = createHash('sha256').update(`${node}\0${address}\0${port}`).digest('hex').slice(0, 10);
  return `${service.slice(0, 52).replace(/-+$/, '')}-${digest}`;
}

/** Store and wire key: `/resources/<Kind>/<namespace>/<name>`. */
export function resourceKey(r: { kind: string; metadata: { name: string; namespace?: string } }): string {
  return `/resources/${r.kind}/${r.metadata.namespace ?? DEFAULT_NAMESPACE}/${r.metadata.name}`;
}

export const RESOURCE_KEY = /^\/resources\/(Service|Endpoint|Route|AuthorizationPolicy|MeshConfig|TrustBundle|RevocationList)\/([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)\/([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)$/;

// ---------------------------------------------------------------- parsing

export interface ParseResourcesOptions {
  /** Refuse input larger than this many bytes (UTF-8). Default 1 MiB. */
  maxBytes?: number;
  /** Refuse more documents than this. Default 1000. */
  maxDocuments?: number;
}

export const DEFAULT_MAX_RESOURCE_BYTES = 1024 * 1024;
export const DEFAULT_MAX_DOCUMENTS = 1000;

/**
 * Parses and validates operator input: multi-document YAML, or JSON (one
 * object or an array of them). Throws a ValidationError naming every problem
 * with its document index (0-based) and field path. YAML aliases are refused
 * outright (no alias bombs), and so are duplicate keys and derived kinds.
 * metadata.version is dropped (see the file comment); namespace defaults to
 * "default"; the same resource twice in one input is refused.
 */
export function parseResources(text: string, format: 'yaml' | 'json', opts: ParseResourcesOptions = {}): ConfigResource[] {
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_RESOURCE_BYTES;
  const maxDocuments = opts.maxDocuments ?? DEFAULT_MAX_DOCUMENTS;
  if (text.length > maxBytes || Buffer.byteLength(text, 'utf8') > maxBytes) {
    throw new ValidationError([{ path: '', message: `is larger than ${maxBytes} bytes`, fix: 'split the input into several files' }], 'resources');
  }
  const docs = format === 'json' ? jsonDocuments(text) : yamlDocuments(text, maxDocuments);
  if (docs.length > maxDocuments) {
    throw new ValidationError([{ path: '', message: `has ${docs.length} documents, more than ${maxDocuments}`, fix: 'split the input into several files' }], 'resources');
  }
  const issues: Issue[] = [];
  const out: ConfigResource[] = [];
  const seen = new Map<string, number>();
  docs.forEach(({ document, value: doc }) => {
    const local: Issue[] = [];
    const r = configResource.check(doc, '', local);
    for (const i of local) issues.push({ ...i, document });
    if (r === INVALID || local.length > 0) return;
    delete (r.metadata as { version?: string }).version;
    const key = resourceKey(r);
    const first = seen.get(key);
    if (first !== undefined) {
      issues.push({ document, path: 'metadata.name', message: `repeats ${key} from document ${first}`, fix: 'apply each resource once' });
      return;
    }
    seen.set(key, document);
    out.push(r);
  });
  if (issues.length > 0) throw new ValidationError(issues, 'resources');
  return out;
}

interface Document {
  readonly document: number;
  readonly value: unknown;
}

function jsonDocuments(text: string): Document[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ValidationError([{ path: '', message: `is not valid JSON: ${(err as Error).message}` }], 'resources');
  }
  return (Array.isArray(value) ? value : [value]).map((v: unknown, document) => ({ document, value: v }));
}

// yaml is required on first use, not imported: the agent loads this module for
// the schemas only and would otherwise hold the parser in memory for nothing.
let yaml: typeof import('yaml') | undefined;
const loadYaml = () => (yaml ??= createRequire(import.meta.url)('yaml') as typeof import('yaml'));

function yamlDocuments(text: string, maxDocuments: number): Document[] {
  const docs = loadYaml().parseAllDocuments(text, { schema: 'core', merge: false, uniqueKeys: true, prettyErrors: false });
  const list = Array.isArray(docs) ? docs : [];
  if (!Array.isArray(docs)) {
    // An empty stream parses to an EmptyStream; nothing to apply.
    return [];
  }
  if (list.length > maxDocuments) {
    throw new ValidationError([{ path: '', message: `has ${list.length} documents, more than ${maxDocuments}`, fix: 'split the input into several files' }], 'resources');
  }
  const issues: Issue[] = [];
  const values: Document[] = [];
  list.forEach((doc, document) => {
    const problem = doc.errors[0];
    if (problem) {
      issues.push({ document, path: '', message: `is not valid YAML: ${problem.message}` });
      return;
    }
    try {
      // maxAliasCount 0 refuses every alias: resources never need them, and
      // they are how "billion laughs" inputs expand.
      const value = doc.toJS({ maxAliasCount: 0 });
      // An empty document (a stray "---") is skipped, keeping the indices of the others.
      if (value !== null && value !== undefined) values.push({ document, value });
    } catch (err) {
      issues.push({ document, path: '', message: `is not accepted YAML: ${(err as Error).message}`, fix: 'write the values out instead of using anchors and aliases' });
    }
  });
  if (issues.length > 0) throw new ValidationError(issues, 'resources');
  return values;
}
