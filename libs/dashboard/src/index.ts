// @amime/dashboard: the web dashboard's server (static page, read-only API over the control plane's admin API, live updates over WebSocket).
export { startDashboardServer, DEFAULT_DASHBOARD_PORT, DEFAULT_STATIC_DIR, type DashboardServerOptions, type RunningDashboard } from './server.js';
export { MeshView, type MeshViewOptions, type Section, type Sections, type SectionName, type ConnectionState, type ViewEvent } from './mesh-view.js';
export { AdminApiSource, isNotAvailable, type MeshSource } from './mesh-source.js';
export { connectControlPlane, ConnectError, type ConnectOptions } from './connect.js';
export { parseDashboardOptions, isExposed, DASHBOARD_USAGE, DashboardUsageError, type DashboardOptions } from './options.js';
export { buildGraph, layout, type Graph, type GraphNode, type GraphEdge, type GraphInput } from './graph.js';
export { certRows, policyRows, routeRows, type CertRow, type PolicyRow, type RouteRow } from './views.js';
export type { TrafficSnapshot, TrafficEdge, EndpointInstance, CertsAnswer, CertEntry, ResourceLike } from './mesh-types.js';
