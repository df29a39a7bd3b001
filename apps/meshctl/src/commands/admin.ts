// `meshctl admin renew`: a new key and SVID for our own admin identity,
// verified against the CA's current bundle before the files are replaced.
import { createCsr, fromPem, generateKeyPair, importPrivateKeyPem, bundleFromPem, exportPrivateKeyPem, parseCertificate, verifySvid, type KeyAlgorithm } from '@amime/identity';
import { replaceFiles } from '../credentials.js';
import { CliError, EXIT } from '../errors.js';
import { keyValues, when } from '../output.js';
import type { Command, CommandContext } from './command.js';

export interface Renewed {
  spiffeId: string;
  serial: string;
  notAfter: string;
  dir: string;
}

/** Renews the admin credential in place and switches the client to it. */
export async function renewAdmin(ctx: CommandContext): Promise<Renewed> {
  const client = ctx.client();
  const cred = ctx.credential();
  let algorithm: KeyAlgorithm = 'ec-p256';
  try {
    const current = importPrivateKeyPem(cred.keyPem).algorithm;
    if (current === 'ec-p256' || current === 'rsa-2048') algorithm = current;
  } catch {
    // an unreadable key file: the new key is P-256
  }
  const key = generateKeyPair(algorithm);
  const bundlePem = await client.bundlePem();
  const out = await client.svid(createCsr(key, cred.spiffeId), cred.spiffeId);
  // Trust the answer only if it is an SVID for us, for this key, under the CA's bundle.
  const chain = fromPem(out.svid, 'CERTIFICATE');
  const check = verifySvid(chain, { bundle: bundleFromPem(bundlePem, cred.trustDomain) });
  if (!check.ok || check.spiffeId !== cred.spiffeId || !parseCertificate(chain[0]!).spki.equals(key.spki)) {
    const why = check.ok ? 'it names another identity or key' : `${check.reason}: ${check.message}`;
    throw new CliError(`the CA returned an SVID that does not verify (${why}); the credential was not replaced`, EXIT.unreachable);
  }
  const keyPem = exportPrivateKeyPem(key.privateKey);
  replaceFiles(cred.dir, { 'key.pem': keyPem, 'cert.pem': out.svid, 'bundle.pem': bundlePem });
  Object.assign(cred, { certPem: out.svid, keyPem, bundlePem, notAfter: check.leaf.notAfter });
  client.updateTrust(bundlePem);
  client.updateCredential({ certPem: out.svid, keyPem });
  return { spiffeId: out.spiffeId, serial: out.serial, notAfter: out.notAfter, dir: cred.dir };
}

export const adminRenew: Command = {
  name: 'admin renew',
  synopsis: '',
  summary: 'a new key and SVID for the admin identity in --credentials (key.pem, cert.pem, bundle.pem replaced atomically)',
  async run(ctx) {
    const r = await renewAdmin(ctx);
    return {
      data: r,
      human: keyValues([
        ['renewed', r.spiffeId],
        ['serial', r.serial],
        ['valid until', when(r.notAfter)],
        ['files', `${r.dir}/{key,cert,bundle}.pem`],
      ]),
    };
  },
};
