// Live request tap (`meshctl tap`) on the push channel:
//
//   control plane → agent: tap {id, service, namespace, maxEventsPerSecond, durationMs}, untap {id}
//   agent → control plane: tapEvents {id, events, dropped?, error?}
//
// An event is one HTTP request or one TCP stream the agent proxied, to or
// from the tapped service. It carries metadata only: no header besides the
// authority, no body, and the path without its query string (tokens live
// there). Every field is bounded, so a full frame of the most events stays
// under the agent frame bound; the control plane checks the rest (tap ids it
// sent, the node field naming the sender).
import { DEFAULT_NAMESPACE, dns1123Name, spiffeIdString } from './resources.js';
import { array, enumOf, integer, literal, object, optional, string, withDefault, type Infer, type Issue, type Schema, INVALID } from './validate.js';

/** Events in one tapEvents frame. */
export const MAX_TAP_EVENTS_PER_FRAME = 50;
/** Longest path in an event (the agent clips longer ones). */
export const MAX_TAP_PATH_LENGTH = 256;
export const MAX_TAP_AUTHORITY_LENGTH = 256;
/** A tap's per-agent event rate: from 1 to this. */
export const MAX_TAP_EVENTS_PER_SECOND = 1000;
export const MIN_TAP_DURATION_MS = 1000;
export const MAX_TAP_DURATION_MS = 600_000;

export const tapId = string({ minLength: 1, maxLength: 64, pattern: /^[A-Za-z0-9_-]+$/, patternName: 'a tap id (letters, digits, "_" or "-")' });

// C0 and C1 controls and DEL: nothing a terminal would act on reaches the operator's screen.
// eslint-disable-next-line no-control-regex -- finding control characters is the point
const PRINTABLE = /^[^\u0000-\u001f\u007f-\u009f]*$/;
const count = integer(0, Number.MAX_SAFE_INTEGER);

/** A finite number from `min` to `max` (durations are fractional milliseconds). */
function finite(min: number, max: number): Schema<number> {
  const expected = `a number from ${min} to ${max}`;
  return {
    expected,
    check(value: unknown, path: string, issues: Issue[]) {
      if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
        issues.push({ path, message: `must be ${expected}, got ${typeof value === 'number' ? value : value === null ? 'null' : typeof value}` });
        return INVALID;
      }
      return value;
    },
  };
}

const tapEvent = object({
  /** When the request or stream started, ISO 8601 UTC. */
  time: string({ minLength: 20, maxLength: 30, pattern: /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$/, patternName: 'an ISO 8601 UTC time' }),
  direction: enumOf(['inbound', 'outbound'] as const),
  protocol: enumOf(['http', 'tcp'] as const),
  /** The reporting agent's node; the control plane requires it to be the sender's. */
  node: dns1123Name,
  /** The caller's verified SPIFFE ID (inbound), or the local workload's (outbound); absent when the caller presented none. */
  source: optional(spiffeIdString({ workload: false })),
  service: dns1123Name,
  namespace: withDefault(dns1123Name, DEFAULT_NAMESPACE),
  /** The callee's SPIFFE ID (inbound: the local workload; outbound: the endpoint picked). */
  destination: optional(spiffeIdString({ workload: false })),
  method: optional(string({ minLength: 1, maxLength: 32, pattern: /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, patternName: 'an HTTP method token' })),
  authority: optional(string({ maxLength: MAX_TAP_AUTHORITY_LENGTH, pattern: PRINTABLE, patternName: 'printable text' })),
  /** Never a query string: a "?" is refused. */
  // eslint-disable-next-line no-control-regex -- finding control characters is the point
  path: optional(string({ maxLength: MAX_TAP_PATH_LENGTH, pattern: /^[^?\u0000-\u001f\u007f-\u009f]*$/, patternName: 'a path without query string or control characters', fix: 'strip everything from "?" on' })),
  status: optional(integer(0, 999)),
  durationMs: finite(0, 86_400_000),
  route: optional(string({ maxLength: 256, pattern: PRINTABLE, patternName: 'printable text' })),
  /** The peer agent (outbound) or the local app (inbound), host:port. */
  upstream: optional(string({ maxLength: 262, pattern: PRINTABLE, patternName: 'printable text' })),
  retries: optional(integer(0, 1000)),
  /** Why the agent answered itself (denied, rate_limited, ...) or the exchange broke; absent when it passed through whole. */
  error: optional(string({ minLength: 1, maxLength: 128, pattern: /^[A-Za-z0-9_.:-]+$/, patternName: 'a cause (letters, digits, "_", ".", ":" or "-")' })),
  traceId: optional(string({ minLength: 32, maxLength: 32, pattern: /^[0-9a-f]{32}$/, patternName: 'a W3C trace id (32 lowercase hex digits)' })),
  bytesIn: optional(count),
  bytesOut: optional(count),
});
export type TapEvent = Infer<typeof tapEvent>;
export const tapEventSchema: Schema<TapEvent> = tapEvent;

export const TAP_ERROR_CODES = ['too_many_taps', 'tap_failed'] as const;

export const tapEventsMessage = object({
  type: literal('tapEvents'),
  id: tapId,
  events: array(tapEvent, { maxItems: MAX_TAP_EVENTS_PER_FRAME }),
  /** Events the agent's rate limit dropped since its previous frame for this tap. */
  dropped: optional(count),
  /** The agent refused or ended the tap (no more frames follow for it). */
  error: optional(object({ code: enumOf(TAP_ERROR_CODES), message: string({ maxLength: 512 }) })),
});

export const tapMessage = object({
  type: literal('tap'),
  id: tapId,
  service: dns1123Name,
  namespace: withDefault(dns1123Name, DEFAULT_NAMESPACE),
  maxEventsPerSecond: integer(1, MAX_TAP_EVENTS_PER_SECOND),
  /** The agent ends the tap by itself after this long, so a lost untap never leaks one. */
  durationMs: integer(MIN_TAP_DURATION_MS, MAX_TAP_DURATION_MS),
});

export const untapMessage = object({ type: literal('untap'), id: tapId });

export type TapMessage = Infer<typeof tapMessage>;
export type UntapMessage = Infer<typeof untapMessage>;
export type TapEventsMessage = Infer<typeof tapEventsMessage>;
