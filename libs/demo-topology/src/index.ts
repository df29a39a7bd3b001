// @amime/demo-topology: the demo mesh as data (topology.ts), shared by the
// demo orchestrator (apps/demo) and the multi-host tests (test/multihost),
// and rendered for Docker Compose (compose.ts).
export * from './topology.js';
export { ADDRESSES as COMPOSE_ADDRESSES, TRUST_DOMAIN as COMPOSE_TRUST_DOMAIN, composeFiles } from './compose.js';
