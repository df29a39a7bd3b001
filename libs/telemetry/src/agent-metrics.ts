// The agent's metrics, on its own registry. Labels are bounded: services and
// identities come from the mesh's config and verified peers, never from
// request data (no raw paths, no endpoint addresses).
import { Counter, Gauge, Histogram } from 'prom-client';
import type { ResourceType } from '@amime/protocol';
import { createProcessRegistry } from './process-registry.js';

/** What a certificate is to the agent: one of its SVIDs, or a CA certificate it relies on. */
export type CertificateKind = 'workload' | 'agent' | 'intermediate' | 'root';
export const CERTIFICATE_KINDS: readonly CertificateKind[] = ['workload', 'agent', 'intermediate', 'root'];

export interface CertificateExpiry {
  /** SPIFFE ID for an SVID; the subject for an intermediate or a root. */
  identity: string;
  kind: CertificateKind;
  notAfter: Date;
}

/** Values read at scrape time. */
export interface AgentMetricsSources {
  controlPlaneConnected(): boolean;
  /** Version of the config held, by resource type (`<...>-<store revision>`). */
  versions(): Partial<Record<ResourceType, string>>;
  certificates(): readonly CertificateExpiry[];
}

export const REQUEST_DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export function createAgentMetrics(sources: AgentMetricsSources) {
  const registry = createProcessRegistry('amime_agent_');
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
      for (const [type, version] of Object.entries(sources.versions())) {
        const m = /-(\d+)$/.exec(version ?? '');
        if (m) this.set({ type }, Number(m[1]));
      }
    },
  });
  new Gauge({
    name: 'amime_agent_certificate_expiry_timestamp_seconds',
    help: 'When each certificate the agent holds or trusts expires (Unix seconds), by kind (workload, agent, intermediate, root).',
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
      help: 'HTTP requests by direction, destination service, source identity, destination identity, response code and class.',
      labelNames: ['direction', 'service', 'source', 'destination', 'code', 'class'],
      registers,
    }),
    requestDuration: new Histogram({
      name: 'amime_agent_request_duration_seconds',
      help: 'HTTP request duration by direction and destination service.',
      labelNames: ['direction', 'service'],
      buckets: REQUEST_DURATION_BUCKETS,
      registers,
    }),
    connectionsOpened: new Counter({ name: 'amime_agent_tcp_connections_opened_total', help: 'TCP connections proxied, by direction and service.', labelNames: ['direction', 'service'], registers }),
    connectionsClosed: new Counter({ name: 'amime_agent_tcp_connections_closed_total', help: 'Proxied TCP connections closed, by direction and service.', labelNames: ['direction', 'service'], registers }),
    bytes: new Counter({ name: 'amime_agent_tcp_bytes_total', help: 'Bytes proxied, by direction, service and flow (sent to / received from the peer).', labelNames: ['direction', 'service', 'flow'], registers }),
    handshakeFailures: new Counter({ name: 'amime_agent_tls_handshake_failures_total', help: 'Refused or failed mTLS handshakes, by side and reason.', labelNames: ['side', 'reason'], registers }),
    authz: new Counter({ name: 'amime_agent_authorization_decisions_total', help: 'Inbound authorization decisions by service, result and deciding policy.', labelNames: ['service', 'result', 'policy'], registers }),
    retries: new Counter({ name: 'amime_agent_retries_total', help: 'Outbound request retries by service.', labelNames: ['service'], registers }),
    ejections: new Counter({ name: 'amime_agent_outlier_ejections_total', help: 'Endpoints ejected by outlier detection, by service.', labelNames: ['service'], registers }),
    rateLimited: new Counter({ name: 'amime_agent_rate_limited_total', help: 'Inbound requests or connections refused by the local rate limit.', labelNames: ['service'], registers }),
    configRejected: new Counter({ name: 'amime_agent_config_rejected_total', help: 'Pushed config the agent refused (NACKed), by resource type.', labelNames: ['type'], registers }),
    revokedClosed: new Counter({ name: 'amime_agent_revoked_connections_closed_total', help: 'Open connections closed because their peer was revoked.', registers }),
  };
}

export type AgentMetrics = ReturnType<typeof createAgentMetrics>;
