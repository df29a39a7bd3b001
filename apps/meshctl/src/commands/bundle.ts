// `meshctl bundle show`: the CA's trust bundle, for people or for peers.
import { X509Certificate } from 'node:crypto';
import { fromPem } from '@amime/identity';
import { UsageError } from '../errors.js';
import { keyValues, table, when } from '../output.js';
import { str, type Command } from './command.js';

export interface RootSummary {
  subject: string;
  fingerprint: string;
  notBefore: string;
  notAfter: string;
}

export function summarizeRoots(pem: string): RootSummary[] {
  return fromPem(pem, 'CERTIFICATE').map((der) => {
    const c = new X509Certificate(der);
    return { subject: c.subject.replace(/\n/g, ', '), fingerprint: c.fingerprint256, notBefore: new Date(c.validFrom).toISOString(), notAfter: new Date(c.validTo).toISOString() };
  });
}

export const bundleShow: Command = {
  name: 'bundle show',
  synopsis: '[--format pem|spiffe]',
  summary: 'the trust bundle: a summary, PEM roots (for node:tls, curl, openssl), or the SPIFFE bundle document (JWKS)',
  options: { format: { type: 'string' } },
  async run(ctx) {
    const format = str(ctx.values, 'format');
    if (format !== undefined && format !== 'pem' && format !== 'spiffe') throw new UsageError(`--format must be pem or spiffe, not ${JSON.stringify(format)}`);
    const client = ctx.client();
    if (format === 'pem') return { raw: await client.bundlePem() };
    const doc = await client.bundle();
    if (format === 'spiffe') return { data: doc, human: JSON.stringify(doc, null, 2) };
    const roots = summarizeRoots(await client.bundlePem());
    return {
      data: { trustDomain: client.trustDomain, sequence: doc.spiffe_sequence, refreshHintSeconds: doc.spiffe_refresh_hint, roots },
      human:
        keyValues([
          ['trust domain', client.trustDomain],
          ['sequence', String(doc.spiffe_sequence)],
          ['refresh hint', `${doc.spiffe_refresh_hint}s`],
        ]) +
        '\n' +
        table(['subject', 'sha-256 fingerprint', 'not after'], roots.map((r) => [r.subject, r.fingerprint, when(r.notAfter)])),
    };
  },
};
