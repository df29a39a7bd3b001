// The control plane's metrics are defined in @amime/telemetry (catalog:
// docs/api/metrics.md); this binds them to the protocol's resource types.
import { RESOURCE_TYPES } from '@amime/protocol';
import { createControlPlaneMetrics as defineControlPlaneMetrics, type ControlPlaneMetrics, type ControlPlaneMetricsSources } from '@amime/telemetry';

export type { ControlPlaneMetrics };
export type MetricsSources = Omit<ControlPlaneMetricsSources, 'resourceTypes'>;

export function createControlPlaneMetrics(sources: MetricsSources): ControlPlaneMetrics {
  const m = defineControlPlaneMetrics({ resourceTypes: RESOURCE_TYPES, ...sources });
  // Every series from the start: a counter first seen at 1 shows no increase to rate() or alerts.
  for (const type of RESOURCE_TYPES) {
    m.nacks.inc({ type }, 0);
    m.acks.inc({ type }, 0);
  }
  return m;
}
