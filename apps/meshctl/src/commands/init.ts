// `meshctl init`: create a CA and its first admin credential on this host,
// in-process through @amime/ca (the same code as `ca init`).
import { join, resolve } from 'node:path';
import { CliError, EXIT, UsageError } from '../errors.js';
import { keyValues } from '../output.js';
import { str, type Command } from './command.js';

const KEY_ALGORITHMS = ['ec-p256', 'rsa-2048'] as const;
type KeyAlgorithmName = (typeof KEY_ALGORITHMS)[number];

export const init: Command = {
  name: 'init',
  synopsis: '--trust-domain TD [--dir DIR] [--key-algorithm ec-p256|rsa-2048] [--admin-name NAME]',
  summary: 'create a CA in DIR (default var/ca) and its first admin credential (in --credentials if given, else DIR/admin)',
  options: {
    dir: { type: 'string' },
    'trust-domain': { type: 'string' },
    'key-algorithm': { type: 'string' },
    'admin-name': { type: 'string' },
  },
  async run(ctx) {
    const dir = resolve(ctx.cwd, str(ctx.values, 'dir') ?? 'var/ca');
    const trustDomain = str(ctx.values, 'trust-domain');
    if (!trustDomain) throw new UsageError('--trust-domain is required, e.g. --trust-domain mesh.example.org');
    const alg = str(ctx.values, 'key-algorithm') ?? 'ec-p256';
    if (!(KEY_ALGORITHMS as readonly string[]).includes(alg)) throw new UsageError(`--key-algorithm must be one of ${KEY_ALGORITHMS.join(', ')}, not ${JSON.stringify(alg)}`);
    const adminName = str(ctx.values, 'admin-name');
    const explicitCredentials = ctx.values['credentials'] !== undefined || ctx.env['AMIME_CREDENTIALS'] !== undefined;
    const adminDir = explicitCredentials ? ctx.credentialsDir : join(dir, 'admin');

    // The CA library writes an audit line per issued SVID; here that is only the admin's.
    process.env['AMIME_CA_QUIET'] ??= '1';
    const { initCa, CaError } = await import('@amime/ca');
    let made: Awaited<ReturnType<typeof initCa>>;
    try {
      made = await initCa(dir, { trustDomain, keyAlgorithm: alg as KeyAlgorithmName, adminDir, ...(adminName ? { adminName } : {}) });
    } catch (err) {
      const e = err as Error & { code?: string; rule?: string };
      if (e.code === 'AMIME_ERR_IDENTITY_SPIFFE_ID') throw new UsageError(`--trust-domain: ${e.message}`);
      if (e instanceof CaError && e.code === 'AMIME_ERR_CA_CONFLICT') {
        throw new CliError(e.message, EXIT.refused, `serve the existing CA with 'ca serve --dir ${dir}', or choose another --dir`);
      }
      throw err;
    }
    made.ca.close();
    const { admin } = made;
    const serve = `node --import tsx apps/ca/src/main.ts serve --dir ${dir}`;
    const meshctl = explicitCredentials || adminDir !== resolve(ctx.cwd, 'var/ca/admin') ? `meshctl --credentials ${adminDir} status` : 'meshctl status';
    return {
      data: { dir, trustDomain: made.ca.trustDomain, keyAlgorithm: alg, admin },
      human:
        keyValues([
          ['created CA', `${dir} (trust domain ${made.ca.trustDomain}, ${alg})`],
          ['admin', `${admin.spiffeId} in ${admin.dir} (valid until ${admin.notAfter})`],
        ]) +
        `next:\n  ${serve}\n  ${meshctl}${adminDir === join(dir, 'admin') ? '' : `   (add --ca https://HOST:PORT: the CA writes ca-url only into ${join(dir, 'admin')})`}\n`,
    };
  },
};
