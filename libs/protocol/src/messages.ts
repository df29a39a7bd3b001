// The push protocol's messages: JSON text frames over WebSocket (mTLS with the
// agent's SVID).
//
//   agent → control plane: hello, ack, nack, register, report, heartbeat, tapEvents
//   control plane → agent: snapshot, delta, error, heartbeat, tap, untap
//
// tap/untap/tapEvents (a live request stream, `meshctl tap`) are in tap-messages.ts.
//
// The agent says hello with its node name, the resource types it subscribes to
// and the versions it holds. The control plane answers each subscribed type
// with a snapshot, then deltas (upserts + removals by key); each carries a
// version and a nonce that the agent echoes in its ack (applied) or nack
// (refused, with the error; it keeps the previous config).
//
// Decoding never throws: the size is bounded before anything else, JSON.parse
// runs in a try, and the schema refuses unknown fields, so a malformed frame is
// answered with an error code and changes nothing.

import {
  RESOURCE_TYPES,
  RESOURCE_KEY,
  RESOURCE_SCHEMAS,
  DEFAULT_NAMESPACE,
  HEALTH_STATES,
  dns1123Name,
  ipAddress,
  labelMap,
  zoneName,
  versionString as version,
  spiffeIdString,
  type Resource,
  type ResourceType,
} from './resources.js';
import {
  INVALID,
  array,
  enumOf,
  formatIssue,
  integer,
  joinPath,
  literal,
  object,
  optional,
  record,
  refine,
  string,
  taggedUnion,
  withDefault,
  type Infer,
  type Issue,
  type Schema,
} from './validate.js';
import { tapEventsMessage, tapMessage, untapMessage, type TapEventsMessage, type TapMessage, type UntapMessage } from './tap-messages.js';

export const PROTOCOL_VERSION = 1;
/** Default frame bound; a full snapshot of a large mesh fits, a runaway peer does not. */
export const DEFAULT_MAX_FRAME_BYTES = 4 * 1024 * 1024;
export const MAX_RESOURCES_PER_FRAME = 10_000;
/** Bound on frames from agents (hello, ack, nack, register, heartbeat): both ends use it. */
export const MAX_CLIENT_FRAME_BYTES = 64 * 1024;

export const DECODE_ERROR_CODES = ['too_large', 'malformed_json', 'unknown_message_type', 'invalid_message'] as const;
export type DecodeErrorCode = (typeof DECODE_ERROR_CODES)[number];

const resourceType = enumOf(RESOURCE_TYPES);
const nonce = string({ minLength: 1, maxLength: 64, pattern: /^[A-Za-z0-9_-]+$/, patternName: 'a nonce (letters, digits, "_" or "-")' });
const errorText = string({ maxLength: 4096 });
/** "host:port" with an IPv4 address, a bracketed IPv6 address or a DNS name. */
const hostPort = refine(string({ minLength: 3, maxLength: 262, pattern: /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, patternName: 'host:port' }), (v, path, issues) => {
  const port = Number(v.slice(v.lastIndexOf(':') + 1));
  if (port < 1 || port > 65535) issues.push({ path, message: `port ${port} is out of range 1-65535` });
});

// ---------------------------------------------------------------- agent → control plane

const hello = object({
  type: literal('hello'),
  node: dns1123Name,
  protocol: literal(PROTOCOL_VERSION),
  /** Versions held, by resource type; a type absent here is held at no version. */
  versions: record(resourceType as Schema<string>, version, { maxKeys: RESOURCE_TYPES.length }) as Schema<Partial<Record<ResourceType, string>>>,
  /** Types subscribed to; all of them when absent. */
  subscribe: optional(array(resourceType, { minItems: 1, maxItems: RESOURCE_TYPES.length })),
  /** Where the agent serves /metrics (its admin listener), "host:port", for Prometheus discovery. */
  metrics: optional(hostPort),
});

const ack = object({ type: literal('ack'), nonce, resourceType, version });
const nack = object({ type: literal('nack'), nonce, resourceType, version, error: errorText });

/**
 * A local workload instance the agent fronts. `register` carries the agent's
 * whole current set (it replaces the previous one), so a lost or repeated
 * frame never leaves a stale instance behind. `health` is the result of the
 * agent's own active check; `address` is where peers reach the agent's
 * inbound listener for it.
 */
const instance = object({
  service: dns1123Name,
  namespace: withDefault(dns1123Name, DEFAULT_NAMESPACE),
  identity: spiffeIdString({ workload: true }),
  address: ipAddress,
  port: integer(1, 65535),
  zone: optional(zoneName),
  labels: optional(labelMap),
  health: withDefault(enumOf(HEALTH_STATES), 'healthy'),
});
export type Instance = Infer<typeof instance>;

/**
 * An SVID the agent holds (its own and each workload's), so that operators
 * see every certificate's expiry (`meshctl certs`); re-sent with the
 * instances whenever one renews. Informational: the control plane keeps only
 * identities of the agent's node and never trusts these for anything else.
 */
const isoTime = string({ minLength: 20, maxLength: 24, pattern: /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?Z$/, patternName: 'an ISO 8601 UTC time' });
const heldSvid = object({
  spiffeId: spiffeIdString({ workload: false }),
  serial: string({ minLength: 1, maxLength: 64, pattern: /^[0-9a-f]+$/, patternName: 'a lowercase hex serial' }),
  notBefore: isoTime,
  notAfter: isoTime,
});
export type HeldSvid = Infer<typeof heldSvid>;
export const MAX_HELD_SVIDS = 257;

const register = object({ type: literal('register'), instances: array(instance, { maxItems: 256 }), svids: optional(array(heldSvid, { maxItems: MAX_HELD_SVIDS })) });

/**
 * Traffic the agent's inbound side saw during the last interval, per edge
 * (verified source identity → local destination service, and the address the
 * caller connected from), for the control plane's communication-pattern
 * monitor. Counts are deltas over the interval. An agent with more edges
 * sends several reports for one interval (same `seq`).
 */
const count = integer(0, Number.MAX_SAFE_INTEGER);
/**
 * Upper bounds (inclusive, milliseconds) of the request-latency buckets in
 * edge reports; one more bucket counts what took longer than the last. Both
 * ends share them, so histograms from every agent merge by index.
 */
export const EDGE_LATENCY_BOUNDS_MS: readonly number[] = Object.freeze([1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]);
/** Buckets in an edge report's `latency`: one per bound, and the overflow. */
export const EDGE_LATENCY_BUCKETS = EDGE_LATENCY_BOUNDS_MS.length + 1;
const latencyBuckets = array(count, { minItems: EDGE_LATENCY_BUCKETS, maxItems: EDGE_LATENCY_BUCKETS });
const edgeCounts = object({
  source: spiffeIdString({ workload: false }),
  service: dns1123Name,
  namespace: withDefault(dns1123Name, DEFAULT_NAMESPACE),
  peerAddress: ipAddress,
  /** HTTP requests and TCP connections (streams). */
  requests: count,
  /** HTTP 5xx answers and failed streams. */
  errors: count,
  /** Refused by authorization. */
  denials: count,
  bytesIn: count,
  bytesOut: count,
  /**
   * HTTP request durations: counts per EDGE_LATENCY_BOUNDS_MS bucket (the
   * last is the overflow). Absent when the interval had no HTTP request on
   * the edge (TCP streams add none), and from agents older than the field.
   */
  latency: optional(latencyBuckets),
});
export type EdgeCounts = Infer<typeof edgeCounts>;
export const MAX_EDGES_PER_REPORT = 200;
const report = object({
  type: literal('report'),
  /** Increases by one per interval. */
  seq: integer(0, Number.MAX_SAFE_INTEGER),
  intervalMs: integer(1000, 600_000),
  edges: array(edgeCounts, { maxItems: MAX_EDGES_PER_REPORT }),
});
const heartbeat = object({ type: literal('heartbeat') });

export type HelloMessage = Infer<typeof hello>;
export type AckMessage = Infer<typeof ack>;
export type NackMessage = Infer<typeof nack>;
export type RegisterMessage = Infer<typeof register>;
export type HeartbeatMessage = Infer<typeof heartbeat>;
export type ReportMessage = Infer<typeof report>;
export type ClientMessage = HelloMessage | AckMessage | NackMessage | RegisterMessage | ReportMessage | HeartbeatMessage | TapEventsMessage;

export const clientMessage = taggedUnion('type', { hello, ack, nack, register, report, heartbeat, tapEvents: tapEventsMessage }) as Schema<ClientMessage>;

// ---------------------------------------------------------------- control plane → agent

const resourceList = array(taggedUnion('kind', RESOURCE_SCHEMAS) as Schema<Resource>, { maxItems: MAX_RESOURCES_PER_FRAME });
const resourceKey = string({
  minLength: 1,
  maxLength: 256,
  pattern: RESOURCE_KEY,
  patternName: 'a resource key /resources/<Kind>/<namespace>/<name>',
});

/** Every resource in a push frame must be of the frame's resourceType. */
function sameType<T extends { resourceType: ResourceType }>(
  schema: Schema<T>,
  items: (m: T) => { field: string; kinds: readonly string[] },
): Schema<T> {
  return refine(schema, (m, path, issues) => {
    const { field, kinds } = items(m);
    kinds.forEach((kind, i) => {
      if (kind !== m.resourceType) {
        issues.push({
          path: joinPath(joinPath(path, field), i),
          message: `is a ${kind}, but the frame carries ${m.resourceType}`,
          fix: 'send each resource type in its own frame',
        });
      }
    });
  });
}

const snapshot = sameType(
  object({ type: literal('snapshot'), resourceType, version, nonce, resources: resourceList }),
  (m) => ({ field: 'resources', kinds: m.resources.map((r) => r.kind) }),
);

const delta = sameType(
  sameType(
    object({
      type: literal('delta'),
      resourceType,
      version,
      nonce,
      upserts: resourceList,
      removals: array(resourceKey, { maxItems: MAX_RESOURCES_PER_FRAME }),
    }),
    (m) => ({ field: 'upserts', kinds: m.upserts.map((r) => r.kind) }),
  ),
  (m) => ({ field: 'removals', kinds: m.removals.map((k) => k.split('/')[2]!) }),
);

const error = object({
  type: literal('error'),
  code: string({ minLength: 1, maxLength: 64, pattern: /^[a-z][a-z0-9_]*$/, patternName: 'an error code (lowercase snake_case)' }),
  message: errorText,
  /** The nonce of the ack/nack this error answers, when it answers one. */
  nonce: optional(nonce),
});

export type SnapshotMessage = Infer<typeof snapshot>;
export type DeltaMessage = Infer<typeof delta>;
export type ErrorMessage = Infer<typeof error>;
export type ServerMessage = SnapshotMessage | DeltaMessage | ErrorMessage | HeartbeatMessage | TapMessage | UntapMessage;

export const serverMessage = taggedUnion('type', { snapshot, delta, error, heartbeat, tap: tapMessage, untap: untapMessage }) as Schema<ServerMessage>;

export const CLIENT_MESSAGE_TYPES = ['hello', 'ack', 'nack', 'register', 'report', 'heartbeat', 'tapEvents'] as const;
export const SERVER_MESSAGE_TYPES = ['snapshot', 'delta', 'error', 'heartbeat', 'tap', 'untap'] as const;

// ---------------------------------------------------------------- decoding

export interface DecodeOptions {
  /** Frames larger than this many bytes are refused unparsed. Default 4 MiB. */
  maxBytes?: number;
}

export type DecodeResult<M> =
  | { ok: true; message: M }
  | { ok: false; code: DecodeErrorCode; message: string; issues?: readonly Issue[] };

const utf8 = new TextDecoder('utf-8', { fatal: true });

export function decodeClientMessage(raw: Buffer | string, opts: DecodeOptions = {}): DecodeResult<ClientMessage> {
  return decode(raw, opts, clientMessage, CLIENT_MESSAGE_TYPES);
}

export function decodeServerMessage(raw: Buffer | string, opts: DecodeOptions = {}): DecodeResult<ServerMessage> {
  return decode(raw, opts, serverMessage, SERVER_MESSAGE_TYPES);
}

/** JSON text of a message; encode only messages built from these types. */
export function encodeMessage(message: ClientMessage | ServerMessage): string {
  return JSON.stringify(message);
}

function decode<M>(raw: Buffer | string, opts: DecodeOptions, schema: Schema<M>, types: readonly string[]): DecodeResult<M> {
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_FRAME_BYTES;
  const size = typeof raw === 'string' ? (raw.length > maxBytes ? raw.length : Buffer.byteLength(raw, 'utf8')) : raw.length;
  if (size > maxBytes) {
    return { ok: false, code: 'too_large', message: `frame is ${size} bytes, more than the limit of ${maxBytes}` };
  }
  let value: unknown;
  try {
    value = JSON.parse(typeof raw === 'string' ? raw : utf8.decode(raw));
  } catch (err) {
    return { ok: false, code: 'malformed_json', message: `frame is not valid UTF-8 JSON: ${(err as Error).message}` };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return { ok: false, code: 'malformed_json', message: 'frame must be a JSON object with a "type" field' };
  }
  const type = (value as Record<string, unknown>)['type'];
  if (typeof type !== 'string' || !types.includes(type)) {
    return {
      ok: false,
      code: 'unknown_message_type',
      message: `type must be one of ${types.join(', ')}, got ${JSON.stringify(type) ?? 'nothing'}`,
    };
  }
  const issues: Issue[] = [];
  let out: M | typeof INVALID;
  try {
    out = schema.check(value, '', issues);
  } catch (err) {
    // The schemas do not throw; this is a guard so that decoding never does.
    return { ok: false, code: 'invalid_message', message: `${type} message refused: ${(err as Error).message}` };
  }
  if (out === INVALID || issues.length > 0) {
    const more = issues.length > 1 ? ` (and ${issues.length - 1} more)` : '';
    return { ok: false, code: 'invalid_message', message: `${type} message: ${issues[0] ? formatIssue(issues[0]) : 'invalid'}${more}`, issues };
  }
  return { ok: true, message: out };
}
