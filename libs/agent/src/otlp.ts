// Span export over OTLP/HTTP with JSON encoding (POST <endpoint>/v1/traces),
// for agents whose config names a collector. One span per hop: CLIENT for
// the caller's agent, SERVER for the callee's, with the W3C ids the data
// plane already propagates (so an app's own spans join the same trace).
//
// Export never slows the data plane: spans queue in memory (bounded; the
// oldest are dropped when full), leave in batches every second or at 512,
// over node:http (not fetch: undici would add ~8 MB resident memory), with
// a timeout; a failed batch is dropped and counted, not retried forever.
import http from 'node:http';
import https from 'node:https';
import type { AccessRecord } from './access-log.js';

export interface HopSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string | undefined;
  kind: 'client' | 'server';
  name: string;
  /** Wall-clock end (ms since epoch) and duration. */
  endMs: number;
  durationMs: number;
  error: boolean;
  attributes: Record<string, string | number | undefined>;
}

export interface OtlpExporterOptions {
  /** Collector base URL, e.g. http://127.0.0.1:4318 (spans go to <url>/v1/traces). */
  endpoint: string;
  /** Resource attributes, e.g. service.name, host.name. */
  resource: Record<string, string>;
  maxQueue?: number;
  batchSize?: number;
  flushIntervalMs?: number;
  timeoutMs?: number;
}

export interface OtlpStats {
  exported: number;
  dropped: number;
  failedBatches: number;
}

type AnyValue = { stringValue: string } | { intValue: string } | { doubleValue: number };
const attr = (key: string, v: string | number): { key: string; value: AnyValue } => ({
  key,
  value: typeof v === 'string' ? { stringValue: v } : Number.isInteger(v) ? { intValue: String(v) } : { doubleValue: v },
});
const nanos = (ms: number): string => (BigInt(Math.round(ms * 1000)) * 1000n).toString();

export class OtlpExporter {
  readonly stats: OtlpStats = { exported: 0, dropped: 0, failedBatches: 0 };
  readonly #url: URL;
  readonly #resource: { attributes: { key: string; value: AnyValue }[] };
  readonly #maxQueue: number;
  readonly #batch: number;
  readonly #timeoutMs: number;
  readonly #timer: NodeJS.Timeout;
  #queue: HopSpan[] = [];
  #inFlight: Promise<void> | undefined;

  constructor(opts: OtlpExporterOptions) {
    const base = new URL(opts.endpoint);
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new TypeError(`otlpEndpoint must be http(s), got ${base.protocol}`);
    this.#url = new URL(`${base.pathname.replace(/\/$/, '')}/v1/traces`, base);
    this.#resource = { attributes: Object.entries(opts.resource).map(([k, v]) => attr(k, v)) };
    this.#maxQueue = opts.maxQueue ?? 2048;
    this.#batch = opts.batchSize ?? 512;
    this.#timeoutMs = opts.timeoutMs ?? 5000;
    this.#timer = setInterval(() => void this.flush(), opts.flushIntervalMs ?? 1000);
    this.#timer.unref();
  }

  add(span: HopSpan): void {
    if (this.#queue.length >= this.#maxQueue) {
      this.#queue.shift();
      this.stats.dropped++;
    }
    this.#queue.push(span);
    if (this.#queue.length >= this.#batch && this.#inFlight === undefined) void this.flush();
  }

  /** Sends what is queued (one batch at a time). */
  async flush(): Promise<void> {
    while (this.#inFlight !== undefined) await this.#inFlight;
    if (this.#queue.length === 0) return;
    const spans = this.#queue.splice(0, this.#batch);
    this.#inFlight = this.#post(spans).finally(() => (this.#inFlight = undefined));
    await this.#inFlight;
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.flush();
  }

  #body(spans: HopSpan[]): string {
    return JSON.stringify({
      resourceSpans: [
        {
          resource: this.#resource,
          scopeSpans: [
            {
              scope: { name: 'amime-agent' },
              spans: spans.map((s) => ({
                traceId: s.traceId,
                spanId: s.spanId,
                ...(s.parentSpanId !== undefined && { parentSpanId: s.parentSpanId }),
                name: s.name,
                kind: s.kind === 'server' ? 2 : 3,
                startTimeUnixNano: nanos(s.endMs - s.durationMs),
                endTimeUnixNano: nanos(s.endMs),
                attributes: Object.entries(s.attributes).flatMap(([k, v]) => (v === undefined ? [] : [attr(k, v)])),
                status: { code: s.error ? 2 : 0 },
              })),
            },
          ],
        },
      ],
    });
  }

  #post(spans: HopSpan[]): Promise<void> {
    const body = this.#body(spans);
    const mod = this.#url.protocol === 'https:' ? https : http;
    return new Promise<void>((resolve) => {
      const req = mod.request(this.#url, { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }, timeout: this.#timeoutMs }, (res) => {
        res.resume();
        res.on('end', () => {
          if ((res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 300) this.stats.exported += spans.length;
          else {
            this.stats.failedBatches++;
            this.stats.dropped += spans.length;
          }
          resolve();
        });
        res.on('error', () => resolve());
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', () => {
        this.stats.failedBatches++;
        this.stats.dropped += spans.length;
        resolve();
      });
      req.end(body);
    });
  }
}

/** The span of one HTTP hop, from its access record; undefined for TCP streams and unsampled traces. */
export function spanOf(r: AccessRecord, endMs = Date.now()): HopSpan | undefined {
  if (r.protocol !== 'http' || r.sampled !== true || r.traceId === undefined || r.spanId === undefined) return undefined;
  return {
    traceId: r.traceId,
    spanId: r.spanId,
    parentSpanId: r.parentSpanId,
    kind: r.direction === 'outbound' ? 'client' : 'server',
    name: `${r.method ?? 'HTTP'} ${r.service}`,
    endMs,
    durationMs: r.durationMs,
    error: (r.status ?? 0) >= 500 || r.error !== undefined,
    attributes: {
      'http.request.method': r.method,
      'url.path': r.path,
      'http.response.status_code': r.status,
      'amime.service': r.service,
      'amime.source': r.source,
      'amime.destination': r.destination,
      'amime.route': r.route || undefined,
      'amime.upstream': r.upstream,
      'amime.retries': r.retries,
      'amime.error': r.error,
    },
  };
}
