// The agent's identity on disk: <dir>/identity/{agent.crt, agent.key,
// bundle.crt}. The directory is 0700, the key 0600, the certificates 0644;
// every write is crash-safe (temporary file, fsync, rename, fsync of the
// directory), and the key is replaced before the certificate, so a crash in
// between leaves a pair that readStoredAgent refuses rather than a
// certificate served with the wrong key.
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fromPem, importPrivateKeyPem, parseCertificate, type KeyPair, type ParsedCertificate } from '@amime/identity';
import { writeFileAtomicSync } from '../atomic-file.js';

export const IDENTITY_SUBDIR = 'identity';
export const AGENT_CERT_FILE = 'agent.crt';
export const AGENT_KEY_FILE = 'agent.key';
export const BUNDLE_FILE = 'bundle.crt';

export const DIR_MODE = 0o700;
export const KEY_MODE = 0o600;
export const CERT_MODE = 0o644;

export interface IdentityPaths {
  readonly dir: string;
  readonly cert: string;
  readonly key: string;
  readonly bundle: string;
}

export function identityPaths(agentDir: string): IdentityPaths {
  const dir = join(agentDir, IDENTITY_SUBDIR);
  return { dir, cert: join(dir, AGENT_CERT_FILE), key: join(dir, AGENT_KEY_FILE), bundle: join(dir, BUNDLE_FILE) };
}

/** Creates the directory 0700 (parents as needed), or tightens an existing one to 0700. */
export function ensurePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: DIR_MODE });
  if ((statSync(dir).mode & 0o777) !== DIR_MODE) chmodSync(dir, DIR_MODE);
}

export interface StoredAgent {
  /** Leaf then intermediate, as the CA returned it. */
  readonly certPem: string;
  readonly keyPem: string;
  readonly key: KeyPair;
  readonly leaf: ParsedCertificate;
  /** When the certificate file was written (start of life for the renewal schedule after a restart). */
  readonly writtenAt: number;
  /** The key file was readable by others and has been narrowed to 0600. */
  readonly keyModeFixed: boolean;
}

/** The leaf (first certificate) of a PEM chain. Throws on anything else. */
export function leafOf(chainPem: string): ParsedCertificate {
  const der = fromPem(chainPem, 'CERTIFICATE')[0];
  if (der === undefined) throw new Error('holds no CERTIFICATE block');
  return parseCertificate(der);
}

/**
 * The stored agent SVID for `spiffeId`: undefined when neither file exists;
 * throws an Error saying what is wrong when they exist but cannot be used
 * (one missing, unparsable, another identity, key and certificate not a pair).
 * Expiry is the caller's business.
 */
export function readStoredAgent(paths: IdentityPaths, spiffeId: string): StoredAgent | undefined {
  const hasCert = existsSync(paths.cert);
  const hasKey = existsSync(paths.key);
  if (!hasCert && !hasKey) return undefined;
  if (!hasCert || !hasKey) throw new Error(`incomplete: ${hasCert ? AGENT_KEY_FILE : AGENT_CERT_FILE} is missing`);
  let keyModeFixed = false;
  if ((statSync(paths.key).mode & 0o077) !== 0) {
    chmodSync(paths.key, KEY_MODE);
    keyModeFixed = true;
  }
  const certPem = readFileSync(paths.cert, 'utf8');
  const keyPem = readFileSync(paths.key, 'utf8');
  let leaf: ParsedCertificate;
  try {
    leaf = leafOf(certPem);
  } catch (err) {
    throw new Error(`${AGENT_CERT_FILE}: ${(err as Error).message}`);
  }
  const id = leaf.uris.find((u) => u.startsWith('spiffe://'));
  if (id !== spiffeId) throw new Error(`${AGENT_CERT_FILE} is the SVID of ${id ?? 'nothing (no spiffe:// URI SAN)'}, not ${spiffeId}`);
  let key: KeyPair;
  try {
    key = importPrivateKeyPem(keyPem);
  } catch (err) {
    throw new Error(`${AGENT_KEY_FILE}: ${(err as Error).message}`);
  }
  if (!key.spki.equals(leaf.spki)) throw new Error(`${AGENT_KEY_FILE} does not hold the key of ${AGENT_CERT_FILE}`);
  return { certPem, keyPem, key, leaf, writtenAt: statSync(paths.cert).mtimeMs, keyModeFixed };
}

/** Stores a new agent SVID: key first, then the certificate. */
export function writeStoredAgent(paths: IdentityPaths, certPem: string, keyPem: string): void {
  ensurePrivateDir(paths.dir);
  writeFileAtomicSync(paths.key, keyPem, KEY_MODE);
  writeFileAtomicSync(paths.cert, certPem, CERT_MODE);
}

/** The stored trust roots (PEM), or undefined. */
export function readStoredBundle(paths: IdentityPaths): string | undefined {
  return existsSync(paths.bundle) ? readFileSync(paths.bundle, 'utf8') : undefined;
}

export function writeStoredBundle(paths: IdentityPaths, pem: string): void {
  ensurePrivateDir(paths.dir);
  writeFileAtomicSync(paths.bundle, pem, CERT_MODE);
}
