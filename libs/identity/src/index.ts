// @amime/identity: SPIFFE IDs, keys, CSRs, X.509-SVIDs, chain verification,
// trust bundles, revocation sets and the TLS glue both planes use.
export * from './spiffe-id.js';
export { DerError } from './der.js';
// Low-level encoding pieces for @amime/signing (the CA's issuer), kept out of the main names.
export * as der from './der.js';
export { parseCertificate, serialToHex, type ParsedCertificate, type Extension } from './parse-certificate.js';
export { OID, KeyUsageBit } from './oids.js';
export { toPem, fromPem, fromPemSingle, certsToPem, PemError } from './pem.js';
export {
  generateKeyPair, keyAlgorithmOf, inspectSpki, publicKeyFromSpki, signatureAlgorithmFor, type SpkiInfo, keyPairFromPrivateKey, exportPrivateKeyPem, importPrivateKeyPem, spkiOf,
  KeyError, KEY_ALGORITHMS, type KeyAlgorithm, type AcceptedKeyAlgorithm, type KeyPair, type KeyErrorReason,
} from './keys.js';
export {
  createCsr, parseCsr, uriGeneralNames, CsrError, CSR_REJECT_REASONS, DEFAULT_MAX_CSR_BYTES,
  type ParsedCsr, type ParseCsrOptions, type CsrRejectReason,
} from './csr.js';
export {
  verifySvid, SVID_REJECT_REASONS, MAX_CHAIN_LENGTH,
  type SvidRejectReason, type SvidVerification, type SvidAccepted, type SvidRejected, type VerifySvidOptions,
} from './verify-svid.js';
export {
  createTrustBundle, parseSpiffeBundle, toSpiffeBundle, bundleToPem, bundleFromPem, bundleFingerprint, TrustBundleError,
  DEFAULT_REFRESH_HINT_SECONDS, MAX_BUNDLE_ROOTS, MAX_BUNDLE_JSON_BYTES,
  type TrustBundle, type CreateTrustBundleOptions, type SpiffeBundleDocument, type SpiffeBundleKey,
} from './trust-bundle.js';
export {
  createRevocationSet, parseRevocationSet, serializeRevocationSet, revocationSetToJson, normalizeSerial, RevocationError,
  EMPTY_REVOCATIONS, MAX_REVOCATION_ENTRIES,
  type RevocationSet, type RevocationSetJson, type CreateRevocationSetOptions,
} from './revocation.js';
export { svidTlsOptions, verifyPeer, peerChain, SVID_CIPHERS, type SvidTlsConfig, type SvidTlsOptions, type VerifyPeerOptions } from './tls.js';
export {
  SvidHttpsClient, parseErrorBody, SVID_HTTPS_TRANSPORT_REASONS,
  type SvidHttpsOptions, type SvidHttpsErrors, type SvidHttpsBody, type SvidHttpsErrorBody, type SvidHttpsTransportReason,
} from './svid-https.js';
export { CaClient, CaClientError, CA_CLIENT_TRANSPORT_REASONS, trustDomainFromPem, type CaClientOptions, type CaCredential, type CaClientTransportReason, type JoinResult, type SvidResult, type RevocationList, type Assignments, type JoinToken, type Assignment, type RevokeTarget, type RevokeResult, type RotationStep, type RotationStatus, type CaStatus } from './ca-client.js';
