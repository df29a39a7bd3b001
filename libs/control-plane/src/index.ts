// @amime/control-plane: the control plane's server — resources over the store,
// the admin API, the registry, CA sync — wired together by startControlPlane,
// and the client operators' tools use.
export { startControlPlane, type ControlPlaneOptions, type RunningControlPlane } from './control-plane.js';
export { ResourceCache, type ResourceCacheOptions } from './resource-cache.js';
export { ResourceService } from './resource-service.js';
export { Registry, type RegistryDeps, type RegistryOptions } from './registry.js';
export { createControlPlaneMetrics, type ControlPlaneMetrics } from './metrics.js';
export { ControlPlaneCredential, CredentialError, CONTROL_PLANE_ID_PATH, type CredentialSnapshot, type ObtainOptions } from './credential.js';
export { CaSync, CaSyncError, type CaSyncOptions } from './ca-sync.js';
export { createAdminHandler, authenticateAdmin, type AgentStatus, type AdminApiDeps, type AnomalyApi } from './admin-api.js';
export { ControlPlaneClient, ControlPlaneClientError, type ControlPlaneClientOptions, type ApplyFormat } from './client.js';
export { certInventory, configDump, endpointViews, peerCertificates, type AgentConfigDump, type CertEntry, type CertInventory, type EndpointView, type PeerCertificates } from './operator-views.js';
export { loadAdminCredential, readUrlFile, AdminCredentialError, type AdminCredentialFiles } from './admin-credential.js';
export { ControlPlaneError, type ControlPlaneErrorCode } from './errors.js';
export { AnomalyService, ACCEPTED_EDGES_PREFIX, monitorSettingsOf, meshMonitorSpec, type AnomalyServiceOptions, type AcceptedEdge, type AnomalyMetrics } from './anomaly-service.js';
export { AnomalyStream, ANOMALY_STREAM_PATH, type AnomalyStreamOptions } from './anomaly-stream.js';
export { openTapStream, type TapFrame, type TapEndFrame, type TapDropped, type TapStreamRequest, type TapConnection } from './tap-client.js';
export { TapBroker, TAP_PATH, TAP_DEFAULTS, parseTapQuery, type TapBrokerOptions, type TapAgents, type TapSink, type TapRequest } from './tap-broker.js';
export { AnomalyClient, type AnomalyClientOptions, type AnomalyList } from './anomaly-client.js';
export { TrafficStream, type TrafficStreamOptions } from './traffic-stream.js';
export { TRAFFIC_PATH, TRAFFIC_STREAM_PATH, windowOf, type TrafficApi } from './traffic-api.js';
export { serveMetrics, prometheusTargets, metricsAddress, PROMETHEUS_SD_PATH, type TargetGroup, type ScrapeTargets, type MetricsServerOptions } from './metrics-server.js';
export { ReplicaDirectory, REPLICAS_PREFIX, REPLICA_DEFAULTS, randomReplicaId, type ReplicaDirectoryOptions, type ReplicaEntry } from './replica-directory.js';
export { SourceNodes, normalizeIp, type SourceNodesDeps } from './source-nodes.js';
export { ReportGate, type GateVerdict } from './report-gate.js';
