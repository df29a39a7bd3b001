// @amime/protocol/client: the agent's end of the push protocol (config
// stream, registration, heartbeats) and its active health checks.
export {
  PushClient,
  DEFAULT_HEARTBEAT_MS,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DISCONNECT_REASONS,
  MAX_NACK_ERROR_LENGTH,
  MAX_QUEUED_FRAMES,
  SERVER_PATH_ID,
  type AppliedUpdate,
  type ConnectedInfo,
  type DisconnectInfo,
  type DisconnectReason,
  type HeldState,
  type ProtocolErrorInfo,
  type PushClientEvents,
  type PushClientOptions,
  type PushCredential,
  type RejectedUpdate,
} from './push-client.js';
export { Backoff, DEFAULT_BACKOFF, type BackoffOptions } from './backoff.js';
export {
  HealthChecker,
  DEFAULT_HEALTH_CHECK,
  DEFAULT_MAX_HEALTH_TARGETS,
  type HealthCheckDefaults,
  type HealthCheckTarget,
  type HealthCheckerOptions,
} from './health-check.js';
