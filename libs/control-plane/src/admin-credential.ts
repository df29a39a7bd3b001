// The operator's admin credential directory, as `ca init` writes it: cert.pem
// (SVID chain), key.pem (PKCS#8), bundle.pem (the CA's roots), and the URL
// files the CA (ca-url) and the control plane (control-plane-url) write beside
// them when they start with it. For tools that read it (the dashboard,
// meshctl; the demo orchestrator keeps its own copy for now).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fromPem, parseCertificate, parseSpiffeId } from '@amime/identity';

export interface AdminCredentialFiles {
  dir: string;
  certPem: string;
  keyPem: string;
  bundlePem: string;
  /** The SPIFFE ID in cert.pem's leaf. */
  spiffeId: string;
  trustDomain: string;
  notAfter: Date;
}

/** Why the directory is not (yet) a usable credential; `missing` means a file is absent, which a waiting caller may retry. */
export class AdminCredentialError extends Error {
  constructor(
    message: string,
    readonly missing: boolean,
  ) {
    super(message);
    this.name = 'AdminCredentialError';
  }
}

/** Reads and checks the credential in `dir`; throws AdminCredentialError naming the file at fault. */
export function loadAdminCredential(dir: string): AdminCredentialFiles {
  const read = (file: string): string => {
    const path = join(dir, file);
    if (!existsSync(path)) throw new AdminCredentialError(`no admin credential: ${path} does not exist`, true);
    return readFileSync(path, 'utf8');
  };
  const certPem = read('cert.pem');
  const keyPem = read('key.pem');
  const bundlePem = read('bundle.pem');
  try {
    const leaf = parseCertificate(fromPem(certPem, 'CERTIFICATE')[0]!);
    const spiffeId = leaf.uris.find((u) => u.startsWith('spiffe://')) ?? '';
    const { trustDomain } = parseSpiffeId(spiffeId);
    return { dir, certPem, keyPem, bundlePem, spiffeId, trustDomain, notAfter: leaf.notAfter };
  } catch (err) {
    throw new AdminCredentialError(`${join(dir, 'cert.pem')} holds no X.509-SVID: ${(err as Error).message}`, false);
  }
}

/** The trimmed content of `<dir>/<file>` (ca-url, control-plane-url), or undefined when absent or empty. */
export function readUrlFile(dir: string, file: 'ca-url' | 'control-plane-url'): string | undefined {
  const path = join(dir, file);
  if (!existsSync(path)) return undefined;
  return readFileSync(path, 'utf8').trim() || undefined;
}
