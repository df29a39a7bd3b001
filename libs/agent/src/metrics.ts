// The agent's Prometheus metrics (prom-client), on its own registry. Names follow
// Prometheus conventions (_total counters, _seconds, base units); labels are
// bounded: services and identities come from the mesh's config, never from
// request data (no raw paths, no addresses).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { RESOURCE_TYPES, type ResourceType } from '@amime/protocol';

export interface AgentMetricsSources {
  controlPlaneConnected(): boolean;
  versions(): Partial<Record<ResourceType, string>>;
  certificates(): { identity: string; kind: string; notAfter: Date }[];
}

export function createAgentMetrics(sources: AgentMetricsSources) {
  const registry = new Registry();
  // The default set minus the gauges named *_total that promtool refuses.
  collectDefaultMetrics({ register: registry, prefix: 'amime_agent_' });
  for (const bad of ['amime_agent_nodejs_active_handles_total', 'amime_agent_nodejs_active_requests_total', 'amime_agent_nodejs_active_resources_total']) {
    registry.removeSingleMetric(bad);
  }
  const registers = [registry];
  new Gauge({
    name: 'amime_agent_control_plane_connected',
    help: '1 while the push channel to the control plane is up.',
    registers,
    collect() {
      this.set(sources.controlPlaneConnected() ? 1 : 0);
    },
  });
  new Gauge({
    name: 'amime_agent_config_revision',
    help: 'Store revision of the config held, by resource type (the number in its version).',
    labelNames: ['type'],
    registers,
    collect() {
      const v = sources.versions();
      for (const t of RESOURCE_TYPES) {
        const m = /-(\d+)$/.exec(v[t] ?? '');
        if (m) this.set({ type: t }, Number(m[1]));
      }
    },
  });
  new Gauge({
    name: 'amime_agent_certificate_expiry_timestamp_seconds',
    help: 'When each SVID the agent holds expires (Unix seconds).',
    labelNames: ['identity', 'kind'],
    registers,
    collect() {
      this.reset();
      for (const c of sources.certificates()) this.set({ identity: c.identity, kind: c.kind }, Math.floor(c.notAfter.getTime() / 1000));
    },
  });
  return {
    registry,
    requests: new Counter({
      name: 'amime_agent_requests_total',
      help: 'HTTP requests by direction, destination service, source identity, response code and class.',
      labelNames: ['direction', 'service', 'source', 'code', 'class'],
      registers,
    }),
    requestDuration: new Histogram({
      name: 'amime_agent_request_duration_seconds',
      help: 'HTTP request duration by direction and destination service.',
      labelNames: ['direction', 'service'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    connectionsOpened: new Counter({ name: 'amime_agent_tcp_connections_opened_total', help: 'TCP connections proxied, by direction and service.', labelNames: ['direction', 'service'], registers }),
    connectionsClosed: new Counter({ name: 'amime_agent_tcp_connections_closed_total', help: 'Proxied TCP connections closed, by direction and service.', labelNames: ['direction', 'service'], registers }),
    bytes: new Counter({ name: 'amime_agent_tcp_bytes_total', help: 'Bytes proxied, by direction, service and flow (sent to / received from the peer).', labelNames: ['direction', 'service', 'flow'], registers }),
    handshakeFailures: new Counter({ name: 'amime_agent_tls_handshake_failures_total', help: 'Refused or failed mTLS handshakes, by side and reason.', labelNames: ['side', 'reason'], registers }),
    authz: new Counter({ name: 'amime_agent_authorization_decisions_total', help: 'Inbound authorization decisions by result and deciding policy.', labelNames: ['service', 'result', 'policy'], registers }),
    retries: new Counter({ name: 'amime_agent_retries_total', help: 'Outbound request retries by service.', labelNames: ['service'], registers }),
    rateLimited: new Counter({ name: 'amime_agent_rate_limited_total', help: 'Inbound requests or connections refused by the local rate limit.', labelNames: ['service'], registers }),
    configRejected: new Counter({ name: 'amime_agent_config_rejected_total', help: 'Pushed config the agent refused (NACKed), by resource type.', labelNames: ['type'], registers }),
    revokedClosed: new Counter({ name: 'amime_agent_revoked_connections_closed_total', help: 'Open connections closed because their peer was revoked.', registers }),
  };
}

export type AgentMetrics = ReturnType<typeof createAgentMetrics>;

/**
 * Per-request recording without per-request label objects: children are resolved
 * once per (service, peer, status) and reused (label values come from config and
 * verified identities, so the set is bounded by the mesh).
 */
export class RequestRecorder {
  readonly #counts = new Map<string, { inc(): void }>();
  readonly #durations = new Map<string, { observe(v: number): void }>();
  constructor(
    private readonly metrics: AgentMetrics,
    private readonly direction: 'inbound' | 'outbound',
  ) {}

  record(service: string, peer: string, status: number, durationMs: number): void {
    const k = `${service}\0${peer}\0${status}`;
    let c = this.#counts.get(k);
    if (!c) this.#counts.set(k, (c = this.metrics.requests.labels({ direction: this.direction, service, source: peer, code: String(status), class: codeClass(status) })));
    c.inc();
    let d = this.#durations.get(service);
    if (!d) this.#durations.set(service, (d = this.metrics.requestDuration.labels({ direction: this.direction, service })));
    d.observe(durationMs / 1000);
  }
}

export function codeClass(status: number): string {
  return status >= 100 && status < 600 ? `${Math.floor(status / 100)}xx` : 'other';
}
