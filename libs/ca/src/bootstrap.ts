// `ca init`: create the CA and the first admin credential (an admin SVID whose
// key is made here and written 0600 beside the bundle), so that meshctl can
// authenticate over mTLS from the first command on.
import { join } from 'node:path';
import { createCsr, exportPrivateKeyPem, generateKeyPair } from '@amime/identity';
import { CertificateAuthorityService, type Clock, type InitOptions } from './authority.js';
import { writeFileAtomicSync } from '@amime/store';

export interface AdminCredential {
  dir: string;
  spiffeId: string;
  notAfter: string;
}

export async function writeAdminCredential(ca: CertificateAuthorityService, dir: string, name?: string): Promise<AdminCredential> {
  const key = generateKeyPair('ec-p256');
  const id = `spiffe://${ca.trustDomain}/admin/${name ?? ca.state.admins[0]!.split('/').pop()}`;
  const svid = await ca.issueAdmin(createCsr(key, id), name);
  writeFileAtomicSync(join(dir, 'key.pem'), exportPrivateKeyPem(key.privateKey), 0o600);
  writeFileAtomicSync(join(dir, 'cert.pem'), svid.chainPem, 0o600);
  writeFileAtomicSync(join(dir, 'bundle.pem'), ca.bundlePem(), 0o600);
  return { dir, spiffeId: svid.spiffeId, notAfter: svid.notAfter.toISOString() };
}

export async function initCa(
  dir: string,
  opts: InitOptions & { adminDir?: string },
  clock?: Clock,
): Promise<{ ca: CertificateAuthorityService; admin: AdminCredential }> {
  const ca = CertificateAuthorityService.init(dir, opts, clock);
  const admin = await writeAdminCredential(ca, opts.adminDir ?? join(dir, 'admin'));
  return { ca, admin };
}
