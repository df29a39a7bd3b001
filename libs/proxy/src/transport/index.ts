// Transport between agents: SNI/ALPN naming, outbound mTLS to peer agents
// (raw, multiplexed and pooled HTTP/1.1), the inbound mTLS listener, and L4 splicing.
export { ALPN_TCP, ALPN_MUX, ALPN_HTTP1, INBOUND_ALPN_PROTOCOLS, SNI_SUFFIX, serviceSni, parseServiceSni, isDns1123Label, type ServiceTarget } from './sni.js';
export {
  TransportError, PeerConnectError, TransportConfigError, IdleTimeoutError, PEER_CONNECT_ERROR_CODES, type PeerConnectErrorCode,
} from './errors.js';
export { normalizeSerialHex, type PeerVerification, type VerifyPeerFn, type VerifiedPeer } from './peer-verification.js';
export { PeerConnector, type PeerConnectorOptions, type PeerConnectRequest, type PeerConnectorStats } from './peer-connector.js';
export { PeerHttpAgent, type PeerHttpAgentOptions, type PeerRoute, type PeerRequestOptions } from './peer-http-agent.js';
export { splice, type Splice, type SpliceOptions, type SpliceResult } from './pipe.js';
export {
  InboundServer, createInboundServer, type InboundServerOptions, type InboundConnection, type InboundServerStats,
} from './inbound-server.js';
export { MuxSession, MuxStream, MuxProtocolError, MUX_MAX_PAYLOAD, MUX_RESET_REASONS, type MuxResetReason, type MuxSessionOptions } from './mux.js';
export { bridge, type Bridge, type BridgeResult } from './mux-bridge.js';
export { MuxPool, type MuxPoolOptions, type MuxTarget } from './mux-pool.js';
