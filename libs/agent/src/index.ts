// @amime/agent: the node agent: identity manager, config client, outbound and
// inbound proxies, health checks and registration, admin port.
export { startAgent, type StartAgentOptions, type RunningAgent, type AgentLog } from './agent.js';
export { loadAgentConfig, parseAgentConfig, agentConfigSchema, AgentConfigError, type AgentConfig, type WorkloadConfig } from './config/agent-config.js';
export { LastGoodConfig, type HeldConfig } from './config/last-good.js';
export { MeshState, serviceKey } from './mesh/mesh-state.js';
export { MeshRuntime } from './mesh/mesh-runtime.js';
export * from './identity/index.js';
export { AGENT_NODE_FLAGS } from './node-flags.js';
