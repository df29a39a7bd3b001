// The access log: one JSON line per HTTP request and per TCP stream, written
// by pino (asynchronously through sonic-boom, which coalesces lines while a
// write is in flight, so a slow disk never blocks the data plane; past 16 MiB
// waiting it drops lines rather than growing memory without bound).
//
// Every value goes through JSON string escaping: a path, header-derived id or
// identity cannot end the line or add a field. Values the agent did not make
// (paths, request ids) are also bounded in length.
import type { Logger } from 'pino';

export interface AccessRecord {
  /** 'http' or 'tcp'. */
  protocol: 'http' | 'tcp';
  direction: 'inbound' | 'outbound';
  /** Destination service, "namespace/name". */
  service: string;
  /** Caller SPIFFE ID (outbound: the local workload). */
  source: string;
  /** Callee SPIFFE ID (inbound: the local workload; outbound: the endpoint's identity). */
  destination: string | undefined;
  requestId?: string;
  traceId?: string;
  spanId?: string;
  parentSpanId?: string | undefined;
  /** The trace's sampled flag (not logged; decides span export). */
  sampled?: boolean;
  route?: string;
  /** The peer agent (outbound) or the local app (inbound), host:port. */
  upstream?: string | undefined;
  method?: string;
  /** The Host header (taps only; not logged). */
  authority?: string | undefined;
  path?: string;
  status?: number;
  durationMs: number;
  retries?: number;
  bytesReceived: number;
  bytesSent: number;
  /** x-amime-error value or stream reset reason; absent when the exchange passed through whole. */
  error?: string | undefined;
}

export interface AccessLog {
  log(r: AccessRecord): void;
  /** Flushes and closes the destination. */
  close(): Promise<void>;
}

const MAX_FIELD = 2048;
const clip = (s: string | undefined): string | undefined => (s === undefined || s.length <= MAX_FIELD ? s : `${s.slice(0, MAX_FIELD)}…`);

/** Opens the access log at `path` ("stdout", "stderr" or a file, appended). pino is loaded only when a log is configured. */
export async function openAccessLog(path: string): Promise<AccessLog> {
  const { default: pino } = await import('pino');
  const dest = pino.destination({ dest: path === 'stdout' ? 1 : path === 'stderr' ? 2 : path, sync: false, mkdir: true, maxLength: 16 * 1024 * 1024 });
  // Opened before anything logs: pino flushes synchronously at exit, which throws on a destination not open yet.
  await new Promise<void>((resolve, reject) => {
    dest.once('ready', () => resolve());
    dest.once('error', reject);
  });
  const logger: Logger = pino({ base: undefined, timestamp: pino.stdTimeFunctions.isoTime, messageKey: 'msg', formatters: { level: (label) => ({ level: label }) } }, dest);
  return {
    log: (r) =>
      logger.info({
        kind: 'access',
        protocol: r.protocol,
        direction: r.direction,
        request_id: clip(r.requestId),
        trace_id: r.traceId,
        span_id: r.spanId,
        parent_span_id: r.parentSpanId,
        source: r.source,
        destination: r.destination,
        service: r.service,
        route: r.route,
        upstream: r.upstream,
        method: r.method,
        path: clip(r.path),
        status: r.status,
        duration_ms: Math.round(r.durationMs * 1000) / 1000,
        retries: r.retries,
        bytes_received: r.bytesReceived,
        bytes_sent: r.bytesSent,
        error: r.error,
      }),
    close: () =>
      new Promise<void>((resolve) => {
        dest.flush?.();
        dest.once('close', () => resolve());
        dest.once('error', () => resolve());
        dest.end();
      }),
  };
}
