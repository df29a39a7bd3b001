// The admin credential directory meshctl authenticates with: cert.pem (SVID
// chain), key.pem (PKCS#8), bundle.pem (the CA's roots) and, when the CA runs
// on this host, ca-url. `ca init` / `meshctl init` write it; `admin renew` and
// the rotation steps replace its files atomically. A control plane started
// with this directory writes control-plane-url beside ca-url.
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { AdminCredentialError, loadAdminCredential, type AdminCredentialFiles } from '@amime/control-plane';
import { UsageError } from './errors.js';

export const DEFAULT_CREDENTIALS_DIR = 'var/ca/admin';

export type AdminCredential = AdminCredentialFiles;

/** --credentials, else AMIME_CREDENTIALS, else var/ca/admin under the working directory. */
export function credentialsDir(flag: string | undefined, env: NodeJS.ProcessEnv, cwd: string): string {
  return resolve(cwd, flag ?? env['AMIME_CREDENTIALS'] ?? DEFAULT_CREDENTIALS_DIR);
}

const SETUP_HINT = "pass --credentials DIR (or set AMIME_CREDENTIALS) to the admin directory `ca init` or 'meshctl init' wrote";

export function readCredential(dir: string): AdminCredential {
  // The reading itself is shared with the dashboard (@amime/control-plane); meshctl adds how to fix it.
  try {
    return loadAdminCredential(dir);
  } catch (err) {
    if (err instanceof AdminCredentialError) throw new UsageError(err.message, SETUP_HINT);
    throw err;
  }
}

/** The CA URL: --ca, else AMIME_CA_URL, else <credentials>/ca-url (written by `ca serve`). */
export function caUrl(flag: string | undefined, env: NodeJS.ProcessEnv, dir: string): string {
  let url = flag ?? env['AMIME_CA_URL'];
  let from = flag !== undefined ? '--ca' : 'AMIME_CA_URL';
  if (url === undefined && existsSync(join(dir, 'ca-url'))) {
    url = readFileSync(join(dir, 'ca-url'), 'utf8').trim();
    from = join(dir, 'ca-url');
  }
  if (url === undefined || url === '') {
    throw new UsageError('no CA URL', `pass --ca https://HOST:PORT, set AMIME_CA_URL, or point --credentials at the admin directory of a running CA (it writes ca-url there)`);
  }
  if (!/^https:\/\/[^/]+\/?$/.test(url)) throw new UsageError(`${from}: ${JSON.stringify(url)} is not https://HOST:PORT`);
  return url;
}

/**
 * The control plane's admin API URL: --control-plane, else
 * AMIME_CONTROL_PLANE_URL, else <credentials>/control-plane-url (written by
 * the control plane when it starts with this credential directory).
 */
export function controlPlaneUrl(flag: string | undefined, env: NodeJS.ProcessEnv, dir: string): string {
  let url = flag ?? env['AMIME_CONTROL_PLANE_URL'];
  let from = flag !== undefined ? '--control-plane' : 'AMIME_CONTROL_PLANE_URL';
  const file = join(dir, 'control-plane-url');
  if (url === undefined && existsSync(file)) {
    url = readFileSync(file, 'utf8').trim();
    from = file;
  }
  if (url === undefined || url === '') {
    throw new UsageError(
      'no control plane URL',
      'pass --control-plane https://HOST:PORT, set AMIME_CONTROL_PLANE_URL, or point --credentials at the admin directory a running control plane uses (it writes control-plane-url there)',
    );
  }
  if (!/^https:\/\/[^/]+\/?$/.test(url)) throw new UsageError(`${from}: ${JSON.stringify(url)} is not https://HOST:PORT`);
  return url;
}

/**
 * Replaces files in `dir` with crash-safe writes (temp file, fsync, rename,
 * fsync dir), mode 0600. Files are renamed in the given order, after all of
 * them are written, so the window in which a reader sees a new key beside an
 * old certificate is one rename long.
 */
export function replaceFiles(dir: string, files: Readonly<Record<string, string>>): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const staged: [string, string][] = [];
  try {
    for (const [name, text] of Object.entries(files)) {
      const path = join(dir, name);
      const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
      const fd = openSync(tmp, 'wx', 0o600);
      staged.push([tmp, path]);
      try {
        const buf = Buffer.from(text);
        let off = 0;
        while (off < buf.length) off += writeSync(fd, buf, off);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    }
  } catch (err) {
    for (const [tmp] of staged) rmSync(tmp, { force: true });
    throw err;
  }
  for (const [tmp, path] of staged) renameSync(tmp, path);
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
