// The process fixtures of the end-to-end tests (CA, control plane, agent),
// reused as they are. The workspace's boundary rule forbids importing the
// e2e project from anywhere; these re-exports are the bench's one exception.
// The lasting fix is to move the process fixtures into a `type:testing`
// library with its own alias, importable by tests and tools alike.
// eslint-disable-next-line @nx/enforce-module-boundaries
export { adminCredential, initCa, request, serveCa, workspace } from '@amime/e2e/ca/fixtures/ca-process.js';
// eslint-disable-next-line @nx/enforce-module-boundaries
export { serveControlPlane } from '@amime/e2e/control-plane/fixtures/cp-process.js';
// eslint-disable-next-line @nx/enforce-module-boundaries
export { freePort, runAgent, writeAgentConfig } from '@amime/e2e/agent/fixtures/agent-process.js';
