// @amime/protocol/server: the control plane's end of the push protocol.
export {
  PushServer,
  PUSH_PATH,
  DEFAULT_MAX_CLIENT_FRAME_BYTES,
  CLOSE_POLICY,
  CLOSE_REPLACED,
  CLOSE_REVOKED,
  type PushServerHooks,
  type PushServerOptions,
  type PushSession,
  type PushSessionStatus,
  type PushTypeStatus,
  type ResourceView,
} from './push-server.js';
