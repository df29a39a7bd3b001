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
export { createAdminHandler, type AgentStatus, type AdminApiDeps } from './admin-api.js';
export { ControlPlaneClient, ControlPlaneClientError, type ControlPlaneClientOptions, type ApplyFormat } from './client.js';
export { ControlPlaneError, type ControlPlaneErrorCode } from './errors.js';
