// The agent's metrics are defined in @amime/telemetry (catalog: docs/api/metrics.md);
// re-exported here for the modules that import them from './metrics.js'.
export { createAgentMetrics, RequestRecorder, codeClass, type AgentMetrics, type AgentMetricsSources } from '@amime/telemetry';
