// @amime/identity: SPIFFE IDs, keys, CSRs, X.509-SVIDs, chain verification,
// trust bundles, revocation sets and the TLS glue both planes use.
export * from './spiffe-id.js';
export { DerError } from './der.js';
// Low-level encoding pieces for @amime/signing (the CA's issuer), kept out of the main names.
export * as der from './der.js';
export { parseCertificate, serialToHex } from './parse-certificate.js';
export { OID, KeyUsageBit } from './oids.js';
export { toPem, fromPem, fromPemSingle, certsToPem, PemError } from './pem.js';
export { generateKeyPair, keyAlgorithmOf, inspectSpki, publicKeyFromSpki, signatureAlgorithmFor, keyPairFromPrivateKey, exportPrivateKeyPem, importPrivateKeyPem, spkiOf, KeyError, KEY_ALGORITHMS, } from './keys.js';
export { createCsr, parseCsr, uriGeneralNames, CsrError, CSR_REJECT_REASONS, DEFAULT_MAX_CSR_BYTES, } from './csr.js';
export { verifySvid, SVID_REJECT_REASONS, MAX_CHAIN_LENGTH, } from './verify-svid.js';
export { createTrustBundle, parseSpiffeBundle, toSpiffeBundle, bundleToPem, bundleFromPem, bundleFingerprint, TrustBundleError, DEFAULT_REFRESH_HINT_SECONDS, MAX_BUNDLE_ROOTS, MAX_BUNDLE_JSON_BYTES, } from './trust-bundle.js';
export { createRevocationSet, parseRevocationSet, serializeRevocationSet, revocationSetToJson, normalizeSerial, RevocationError, EMPTY_REVOCATIONS, MAX_REVOCATION_ENTRIES, } from './revocation.js';
export { svidTlsOptions, verifyPeer, peerChain, SVID_CIPHERS } from './tls.js';
export { CaClient, CaClientError, CA_CLIENT_TRANSPORT_REASONS, trustDomainFromPem } from './ca-client.js';
//# sourceMappingURL=index.js.map