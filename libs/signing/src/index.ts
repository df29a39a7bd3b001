// @amime/signing: the CA's issuing machinery (control plane only; the
// agent verifies with @amime/identity and can never import this).
export {
  issueSvid, createRootCa, createIntermediateCa, prepareIssuer, derEngine, PreparedIssuer, IssueError, ISSUE_ERROR_REASONS,
  type IssuerKey, type IssueSvidOptions, type IssuedCertificate, type SvidRequest, type SvidEngine,
  type SvidEngineFactory, type CreateRootCaOptions, type CreateIntermediateCaOptions, type IssueErrorReason,
} from './issue.js';
export {
  CertificateAuthority, type CaSigner, type CertificateAuthorityOptions, type SignCsrOptions, type SignedSvid,
} from './certificate-authority.js';
