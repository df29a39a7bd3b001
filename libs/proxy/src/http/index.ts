// @amime/proxy http: HTTP/1.1 routing and proxying for the agent (outbound to peer
// agents, inbound to the local app) and the hygiene every agent HTTP server shares.
export { SOURCE_IDENTITY_HEADER, ERROR_HEADER, MIRROR_HEADER, isHopByHop, forwardableHeaders } from './headers.js';
export {
  MAX_HEADER_SIZE,
  serverOptions,
  createProxyServer,
  checkRequest,
  splitTarget,
  respondError,
  respondErrorOnSocket,
  type HttpServerLimits,
  type RequestRefusal,
} from './server-options.js';
export {
  compileRoutes,
  defaultRule,
  RETRY_ON_5XX,
  RETRY_ON_RESET,
  RETRY_ON_CONNECT_FAILURE,
  RETRY_ON_GATEWAY_ERROR,
  DEFAULT_RETRY_ON,
  DEFAULT_CONNECT_RETRIES,
  type ServiceRef,
  type RouteTable,
  type CompiledRule,
  type CompiledBackend,
  type CompiledFault,
  type CompiledMirror,
} from './route-table.js';
export { RetryBudget, RetryBudgetError, type RetryBudgetOptions, type RetryBudgetLike } from './retry-budget.js';
export { MAX_REPLAY_BODY_BYTES } from './body.js';
export { TRACEPARENT_HEADER, REQUEST_ID_HEADER, parseTraceparent, traceFor, formatTraceparent, requestIdFor, type TraceContext } from './trace.js';
export {
  createOutboundHandler,
  type OutboundDeps,
  type OutboundHandler,
  type OutboundResult,
  type EndpointLease,
  type PeerEndpoint,
  type RequestLimiter,
} from './outbound-http.js';
export { createInboundHandler, type InboundDeps, type InboundHandler, type InboundResult, type AuthorizeResult, type LocalApp } from './inbound-http.js';
