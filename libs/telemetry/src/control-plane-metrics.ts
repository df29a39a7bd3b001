// The control plane's metrics, on its own registry. Labels are bounded by
// resource types, push kinds, refusal reasons, admin routes (the route
// pattern, never the raw path) and anomaly kinds.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { ResourceType } from '@amime/protocol';
import { createProcessRegistry } from './process-registry.js';

/** What the traffic monitor reports (amime_cp_anomalies_total{kind}); every kind is exported from start, at 0. */
export const ANOMALY_KINDS = ['new_edge', 'denial_spike', 'error_spike', 'volume_deviation', 'new_node'] as const;
export type AnomalyKind = (typeof ANOMALY_KINDS)[number];

export interface ControlPlaneMetrics {
  registry: Registry;
  agentsConnected: Gauge;
  pushLatency: Histogram<'type'>;
  pushes: Counter<'type' | 'kind'>;
  nacks: Counter<'type'>;
  acks: Counter<'type'>;
  refused: Counter<'reason'>;
  adminRequests: Counter<'route' | 'code'>;
  adminDuration: Histogram;
  /** Anomalies the traffic monitor raised, by kind (one of ANOMALY_KINDS). */
  anomalies: Counter<'kind'>;
  /** Edges (source → destination) the traffic monitor tracks now. */
  monitorEdges: Gauge;
}

/** Values read at scrape time. */
export interface ControlPlaneMetricsSources {
  /** The resource types to report (RESOURCE_TYPES). */
  resourceTypes: readonly ResourceType[];
  /** Current store revision of each type (the number in its version). */
  revision(type: ResourceType): number;
  count(type: ResourceType): number;
  agents(): number;
  endpointsByHealth(): { healthy: number; unhealthy: number };
}

export const PUSH_LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export function createControlPlaneMetrics(sources: ControlPlaneMetricsSources): ControlPlaneMetrics {
  const registry = createProcessRegistry('amime_cp_');
  const registers = [registry];
  const agentsConnected = new Gauge({
    name: 'amime_cp_agents_connected',
    help: 'Agents with an open push session (after hello).',
    registers,
    collect() {
      this.set(sources.agents());
    },
  });
  new Gauge({
    name: 'amime_cp_resource_version',
    help: 'Store revision of the latest change of each resource type (the number in its version).',
    labelNames: ['type'],
    registers,
    collect() {
      for (const t of sources.resourceTypes) this.set({ type: t }, sources.revision(t));
    },
  });
  new Gauge({
    name: 'amime_cp_resources',
    help: 'Resources held, by type.',
    labelNames: ['type'],
    registers,
    collect() {
      for (const t of sources.resourceTypes) this.set({ type: t }, sources.count(t));
    },
  });
  new Gauge({
    name: 'amime_cp_endpoints',
    help: 'Registered endpoints by health.',
    labelNames: ['health'],
    registers,
    collect() {
      const h = sources.endpointsByHealth();
      this.set({ health: 'healthy' }, h.healthy);
      this.set({ health: 'unhealthy' }, h.unhealthy);
    },
  });
  const anomalies = new Counter({ name: 'amime_cp_anomalies_total', help: 'Anomalies raised by the traffic monitor, by kind.', labelNames: ['kind'], registers });
  for (const kind of ANOMALY_KINDS) anomalies.inc({ kind }, 0);
  return {
    registry,
    agentsConnected,
    pushLatency: new Histogram({
      name: 'amime_cp_push_latency_seconds',
      help: 'From a change being observed to the agent ACKing a push that includes it.',
      labelNames: ['type'],
      buckets: PUSH_LATENCY_BUCKETS,
      registers,
    }),
    pushes: new Counter({ name: 'amime_cp_pushes_total', help: 'Push frames sent, by type and kind (snapshot|delta).', labelNames: ['type', 'kind'], registers }),
    nacks: new Counter({ name: 'amime_cp_nacks_total', help: 'Pushes an agent refused, by type.', labelNames: ['type'], registers }),
    acks: new Counter({ name: 'amime_cp_acks_total', help: 'Pushes an agent applied, by type.', labelNames: ['type'], registers }),
    refused: new Counter({ name: 'amime_cp_push_refused_total', help: 'Refused push connections and frames, by reason.', labelNames: ['reason'], registers }),
    adminRequests: new Counter({ name: 'amime_cp_admin_requests_total', help: 'Admin API requests by route and status code.', labelNames: ['route', 'code'], registers }),
    adminDuration: new Histogram({ name: 'amime_cp_admin_request_duration_seconds', help: 'Admin API request duration.', registers }),
    anomalies,
    monitorEdges: new Gauge({ name: 'amime_cp_monitor_edges', help: 'Edges (source to destination) the traffic monitor tracks.', registers }),
  };
}
