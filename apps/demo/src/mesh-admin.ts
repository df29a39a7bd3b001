// The orchestrator's side of the CA and the control plane: wait for both,
// assign the demo identities, make join tokens only for agents that have
// never joined (or whose stored SVID is from another CA), apply resources.
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { bundleFromPem, CaClient, fromPem, parseErrorBody, SvidHttpsClient, trustDomainFromPem } from '@amime/identity';
import { ASSIGNMENTS, dataDir, identity, NODES, type Node } from './topology.js';

export interface AdminCredential {
  certPem: string;
  keyPem: string;
  bundlePem: string;
  trustDomain: string;
}

export class DemoError extends Error {}

export function readAdminCredential(dir: string): AdminCredential | undefined {
  const files = ['cert.pem', 'key.pem', 'bundle.pem'].map((f) => join(dir, f));
  if (!files.every((f) => existsSync(f))) return undefined;
  const [certPem, keyPem, bundlePem] = files.map((f) => readFileSync(f, 'utf8')) as [string, string, string];
  const trustDomain = trustDomainFromPem(certPem);
  if (!trustDomain) throw new DemoError(`${files[0]} names no SPIFFE trust domain`);
  return { certPem, keyPem, bundlePem, trustDomain };
}

const readUrl = (file: string): string | undefined => (existsSync(file) ? readFileSync(file, 'utf8').trim() || undefined : undefined);

/** A minimal client for the control plane's admin API (apply, status), over the same verified mTLS as the CA client. */
export class ControlPlaneAdmin {
  readonly #https: SvidHttpsClient<Error>;

  constructor(
    readonly url: string,
    cred: AdminCredential,
  ) {
    this.#https = new SvidHttpsClient<Error>({
      url: new URL(url),
      serverName: 'the control plane',
      expectedServerId: `spiffe://${cred.trustDomain}/control-plane/controller`,
      bundle: bundleFromPem(cred.bundlePem, cred.trustDomain),
      secureContext: tls.createSecureContext({ ca: cred.bundlePem, cert: cred.certPem, key: cred.keyPem, minVersion: 'TLSv1.3' }),
      timeoutMs: 10_000,
      maxResponseBytes: 4 * 1024 * 1024,
      maxSockets: 2,
      errors: {
        transport: (reason, message) => Object.assign(new DemoError(message), { reason }),
        answer: (method, path, status, text) => new DemoError(`${method} ${path}: ${status} ${parseErrorBody(text)?.message ?? text.slice(0, 500)}`),
      },
    });
  }

  status(): Promise<unknown> {
    return this.#https.json('GET', '/v1/status');
  }

  apply(yaml: string): Promise<unknown> {
    return this.#https.json('POST', '/v1/resources', { type: 'application/yaml; charset=utf-8', body: Buffer.from(yaml, 'utf8') });
  }

  close(): void {
    this.#https.close();
  }
}

export interface Connected {
  cred: AdminCredential;
  ca: CaClient;
  caUrl: string;
  cp: ControlPlaneAdmin;
}

/**
 * Waits (bounded) until the admin credential exists and both the CA and the
 * control plane answer it. The URL files are read again on every attempt: a
 * file left by an earlier run may name a port nobody serves yet.
 */
export async function connect(o: { credentialsDir: string; caUrl?: string | undefined; controlPlaneUrl?: string | undefined; waitMs: number; signal: AbortSignal; log(msg: string): void }): Promise<Connected> {
  const deadline = Date.now() + o.waitMs;
  let last = 'no admin credential yet';
  let told = false;
  while (!o.signal.aborted) {
    const cred = readAdminCredential(o.credentialsDir);
    const caUrl = o.caUrl ?? readUrl(join(o.credentialsDir, 'ca-url'));
    const cpUrl = o.controlPlaneUrl ?? readUrl(join(o.credentialsDir, 'control-plane-url'));
    if (cred && caUrl && cpUrl) {
      const ca = new CaClient({ url: caUrl, bundlePem: cred.bundlePem, credential: cred });
      const cp = new ControlPlaneAdmin(cpUrl, cred);
      try {
        await ca.status();
        await cp.status();
        return { cred, ca, caUrl, cp };
      } catch (err) {
        last = (err as Error).message;
        ca.close();
        cp.close();
      }
    } else {
      last = !cred ? `no admin credential in ${o.credentialsDir} yet` : !caUrl ? 'no ca-url yet' : 'no control-plane-url yet';
    }
    if (Date.now() > deadline) throw new DemoError(`the CA and the control plane did not answer within ${o.waitMs / 1000} s: ${last}`);
    if (!told && Date.now() > deadline - o.waitMs + 3000) {
      told = true;
      o.log(`waiting for the CA and the control plane (${last})`);
    }
    await sleep(500, undefined, { signal: o.signal }).catch(() => undefined);
  }
  throw new DemoError('stopped while waiting for the CA and the control plane');
}

/**
 * True when the agent's data dir holds an SVID from this CA (one of the roots
 * it stored is still in the CA's bundle) that is still valid for a minute,
 * so it rejoins without a token. An expired SVID (the demo was stopped for
 * longer than its lifetime) is kept, and the node gets a token: the agent
 * rejoins with it. An SVID from a CA that no longer exists (var/ca was
 * removed) is wiped.
 */
export function hasUsableSvid(stateDir: string, node: Node, bundlePem: string, now = Date.now()): boolean {
  const dir = dataDir(stateDir, node);
  const cert = join(dir, 'identity', 'agent.crt');
  const stored = join(dir, 'identity', 'bundle.crt');
  if (!existsSync(cert)) return false;
  if (!validForAMinute(readFileSync(cert, 'utf8'), now)) return false;
  const current = new Set(fromPem(bundlePem, 'CERTIFICATE').map((d) => Buffer.from(d).toString('base64')));
  const mine = existsSync(stored) ? fromPem(readFileSync(stored, 'utf8'), 'CERTIFICATE').map((d) => Buffer.from(d).toString('base64')) : [];
  if (mine.some((r) => current.has(r))) return true;
  rmSync(dir, { recursive: true, force: true });
  return false;
}

function validForAMinute(certPem: string, now: number): boolean {
  try {
    return Date.parse(new X509Certificate(certPem).validTo) > now + 60_000;
  } catch {
    return false; // unreadable: a token makes it whole again
  }
}

/** Assigns every demo identity (idempotent) and returns a join token for each node that needs one. */
export async function prepareNodes(ca: CaClient, trustDomain: string, stateDir: string, bundlePem: string): Promise<Partial<Record<Node, string>>> {
  for (const node of NODES) {
    for (const service of ASSIGNMENTS[node]) await ca.assign(node, identity(trustDomain, service));
  }
  const tokens: Partial<Record<Node, string>> = {};
  for (const node of NODES) {
    if (!hasUsableSvid(stateDir, node, bundlePem)) tokens[node] = (await ca.createToken(node, 600)).token;
  }
  return tokens;
}
