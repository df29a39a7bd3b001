// @amime/proxy: the data plane machinery: L4 streams, mTLS connections to peer
// agents, HTTP/1.1 proxying with routing, retries and hygiene, and limits.
export * from './http/index.js';
export * from './transport/index.js';
export * from './limits/index.js';
