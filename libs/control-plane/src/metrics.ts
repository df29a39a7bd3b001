// The control plane's Prometheus metrics (prom-client). Names follow
// Prometheus conventions: _total counters, _seconds histograms, base units.

import { Counter, Gauge, Histogram, collectDefaultMetrics, Registry } from 'prom-client';
import { RESOURCE_TYPES, type ResourceType } from '@amime/protocol';

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
}

export interface MetricsSources {
  /** Current store revision of each type (the number in its version). */
  revision(type: ResourceType): number;
  count(type: ResourceType): number;
  agents(): number;
  endpointsByHealth(): { healthy: number; unhealthy: number };
}

export function createControlPlaneMetrics(sources: MetricsSources): ControlPlaneMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'amime_cp_' });
  const agentsConnected = new Gauge({
    name: 'amime_cp_agents_connected',
    help: 'Agents with an open push session (after hello).',
    registers: [registry],
    collect() {
      this.set(sources.agents());
    },
  });
  new Gauge({
    name: 'amime_cp_resource_version',
    help: 'Store revision of the latest change of each resource type (the number in its version).',
    labelNames: ['type'],
    registers: [registry],
    collect() {
      for (const t of RESOURCE_TYPES) this.set({ type: t }, sources.revision(t));
    },
  });
  new Gauge({
    name: 'amime_cp_resources',
    help: 'Resources held, by type.',
    labelNames: ['type'],
    registers: [registry],
    collect() {
      for (const t of RESOURCE_TYPES) this.set({ type: t }, sources.count(t));
    },
  });
  new Gauge({
    name: 'amime_cp_endpoints',
    help: 'Registered endpoints by health.',
    labelNames: ['health'],
    registers: [registry],
    collect() {
      const h = sources.endpointsByHealth();
      this.set({ health: 'healthy' }, h.healthy);
      this.set({ health: 'unhealthy' }, h.unhealthy);
    },
  });
  return {
    registry,
    agentsConnected,
    pushLatency: new Histogram({
      name: 'amime_cp_push_latency_seconds',
      help: 'From a change being observed to the agent ACKing a push that includes it.',
      labelNames: ['type'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    pushes: new Counter({ name: 'amime_cp_pushes_total', help: 'Push frames sent, by type and kind (snapshot|delta).', labelNames: ['type', 'kind'], registers: [registry] }),
    nacks: new Counter({ name: 'amime_cp_nacks_total', help: 'Pushes an agent refused, by type.', labelNames: ['type'], registers: [registry] }),
    acks: new Counter({ name: 'amime_cp_acks_total', help: 'Pushes an agent applied, by type.', labelNames: ['type'], registers: [registry] }),
    refused: new Counter({ name: 'amime_cp_push_refused_total', help: 'Refused push connections and frames, by reason.', labelNames: ['reason'], registers: [registry] }),
    adminRequests: new Counter({ name: 'amime_cp_admin_requests_total', help: 'Admin API requests by route and status code.', labelNames: ['route', 'code'], registers: [registry] }),
    adminDuration: new Histogram({ name: 'amime_cp_admin_request_duration_seconds', help: 'Admin API request duration.', registers: [registry] }),
  };
}
