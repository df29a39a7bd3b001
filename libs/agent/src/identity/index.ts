// The agent's identities: its own SVID (joined once with a token, then
// renewed with itself and kept on disk), one SVID per assigned workload, the
// trust roots and revocation list, and TLS contexts built once per rotation.
export { IdentityManager, stderrIdentityLogger, type IdentityManagerOptions, type IdentityEvents, type IdentityKind, type CertificateInfo, type SvidCredential, type IdentityLogger, type IdentityLogLevel } from './identity-manager.js';
export { IdentityError, IDENTITY_ERROR_REASONS, type IdentityErrorReason } from './errors.js';
export { systemClock, type Clock } from './clock.js';
export { DEFAULT_RENEWAL_POLICY, renewalTime, retryAfterFailure, type RenewalPolicy, type Retry } from './renewal-schedule.js';
export { identityPaths, AGENT_CERT_FILE, AGENT_KEY_FILE, BUNDLE_FILE, type IdentityPaths } from './svid-files.js';
