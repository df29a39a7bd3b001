// @amime/ca: the certificate authority's rules, state and HTTPS API.
export { CertificateAuthorityService, DEFAULT_TTLS, validateNodeName, type InitOptions, type IssuedSvid, type Clock } from './authority.js';
export { startCaServer, MAX_BODY_BYTES, type CaServerOptions, type RunningCaServer } from './http-api.js';
export { CaError, type CaErrorCode } from './errors.js';
export { createCaMetrics, type CaMetrics } from './metrics.js';
export { initCa, writeAdminCredential, type AdminCredential } from './bootstrap.js';
