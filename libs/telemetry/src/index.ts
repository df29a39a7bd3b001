// @amime/telemetry: every Prometheus metric amime exports, one module for all
// apps (prom-client). Names are amime_<app>_<what>_<unit> in base units,
// counters end in _total; each app has its own registry (never prom-client's
// global one) with the process metrics under its prefix. Label values come
// from config, verified identities and fixed sets, never from request data.
// Catalog: docs/api/metrics.md.
export { createProcessRegistry, isProcessMetric, type MetricsPrefix } from './process-registry.js';
export {
  createAgentMetrics, CERTIFICATE_KINDS, REQUEST_DURATION_BUCKETS,
  type AgentMetrics, type AgentMetricsSources, type CertificateExpiry, type CertificateKind,
} from './agent-metrics.js';
export { RequestRecorder, codeClass } from './request-recorder.js';
export {
  createControlPlaneMetrics, ANOMALY_KINDS, PUSH_LATENCY_BUCKETS,
  type ControlPlaneMetrics, type ControlPlaneMetricsSources, type AnomalyKind,
} from './control-plane-metrics.js';
export { createCaMetrics, CA_REQUEST_DURATION_BUCKETS, type CaMetrics, type CaMetricsSources } from './ca-metrics.js';
