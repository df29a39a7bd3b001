// Test-only: a stand-in for the CA's HTTPS API (docs/api/ca.md), just the
// routes the agent calls: POST /v1/join (one-time join tokens bound to a
// node), POST /v1/svid (mTLS with an agent SVID: its own ID, or a workload ID
// assigned to its node), GET /v1/bundle?format=pem and GET /v1/revocations.
// The real CA (libs/ca) is control-plane code the agent may not import.
//
// SVIDs are issued with @amime/identity/testing from the CSR's public key,
// valid from (fake) now - 60 s to now + ttlMs. Client SVIDs are verified with
// verifySvid at the fake clock's time, not OpenSSL's: OpenSSL uses real time
// and would call an SVID issued at a fake future time not yet valid. Every
// request body is recorded, so specs can check that only CSRs were sent.
import { webcrypto } from 'node:crypto';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { CsrError, createTrustBundle, parseCsr, peerChain, verifySvid, type ParsedCsr, type RevocationList, type TrustBundle } from '@amime/identity';
import { createIntermediate, createLeaf, createRoot, toPemChain, type TestCert, type TestKeyPair } from '@amime/identity/testing';

export interface FakeCaRequest {
  method: string;
  path: string;
  body: string;
  /** The client SVID's SPIFFE ID when it was accepted. */
  clientId: string | undefined;
}

interface Token {
  node: string;
  expiresAt: number;
  used: boolean;
}

class Refusal extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

const BACKDATE_MS = 60_000;

/** The CSR's public key as a WebCrypto key, in the shape the cert factory signs for. */
async function subjectKeyOf(csr: ParsedCsr): Promise<TestKeyPair> {
  const ec = csr.keyAlgorithm === 'ec-p256';
  const alg = ec ? { name: 'ECDSA', namedCurve: 'P-256' } : { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  const publicKey = await webcrypto.subtle.importKey('spki', csr.spki, alg, true, ['verify']);
  // The factory reads only the public half of a subject key; there is no private half here.
  return { kind: ec ? 'ec' : 'rsa', cryptoKeys: { publicKey, privateKey: publicKey }, privateKey: undefined!, privateKeyPem: '' } as unknown as TestKeyPair;
}

export class FakeCa {
  readonly trustDomain: string;
  readonly url: string;
  /** Lifetime of issued SVIDs. */
  ttlMs: number;
  /** Answer this many coming POST /v1/svid with 500. */
  failSvid = 0;
  revocationList: RevocationList = { version: 0, serials: [], spiffeIds: [] };
  readonly requests: FakeCaRequest[] = [];
  readonly #clock: { now(): number };
  readonly #server: https.Server;
  readonly #tokens = new Map<string, Token>();
  readonly #assignments = new Map<string, Set<string>>();
  #roots: TestCert[];
  #bundle: TrustBundle;
  #intermediate: TestCert;
  #tokenSeq = 0;

  private constructor(td: string, clock: { now(): number }, ttlMs: number, root: TestCert, intermediate: TestCert, server: https.Server, url: string) {
    this.trustDomain = td;
    this.#clock = clock;
    this.ttlMs = ttlMs;
    this.#roots = [root];
    this.#bundle = createTrustBundle({ trustDomain: td, roots: [root.der] });
    this.#intermediate = intermediate;
    this.#server = server;
    this.url = url;
    server.on('request', (req: IncomingMessage, res: ServerResponse) => this.#onRequest(req, res));
  }

  static async start(opts: { clock: { now(): number }; trustDomain?: string; ttlMs?: number }): Promise<FakeCa> {
    const td = opts.trustDomain ?? 'agent.test';
    // Roots name their trust domain in a URI SAN, as the real CA's do.
    const root = await createRoot({ subject: `CN=${td} root,O=amime`, uris: [`spiffe://${td}`] });
    const intermediate = await createIntermediate(root, { subject: `CN=${td} intermediate,O=amime` });
    const serving = await createLeaf(intermediate, `spiffe://${td}/control-plane/ca`);
    const server = https.createServer({
      cert: toPemChain([serving, intermediate]),
      key: serving.key.privateKeyPem,
      ca: root.pem,
      minVersion: 'TLSv1.3',
      requestCert: true,
      rejectUnauthorized: false,
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return new FakeCa(td, opts.clock, opts.ttlMs ?? 3600_000, root, intermediate, server, url);
  }

  /** The trust roots (PEM), as an install would hand them to the agent. */
  get bundlePem(): string {
    return toPemChain(this.#roots);
  }

  /** A one-time join token for `node`, valid for `ttlMs` of fake time. */
  createToken(node: string, ttlMs = 600_000): string {
    const token = `amime-jt.fake-${++this.#tokenSeq}-${node}`;
    this.#tokens.set(token, { node, expiresAt: this.#clock.now() + ttlMs, used: false });
    return token;
  }

  assign(node: string, spiffeId: string): void {
    let set = this.#assignments.get(node);
    if (!set) this.#assignments.set(node, (set = new Set()));
    set.add(spiffeId);
  }

  /** A second root in the bundle (as after a rotation's prepare step). */
  async addRoot(): Promise<TestCert> {
    const root = await createRoot({ subject: `CN=${this.trustDomain} root ${this.#roots.length + 1},O=amime`, uris: [`spiffe://${this.trustDomain}`] });
    this.#roots = [...this.#roots, root];
    this.#bundle = createTrustBundle({ trustDomain: this.trustDomain, roots: this.#roots.map((r) => r.der) });
    return root;
  }

  /**
   * A root rotation up to activation: a new root joins the bundle, and SVIDs
   * (the CA's own serving one included) are signed under it from now on.
   * Clients whose SVIDs chain to the old root are still accepted.
   */
  async rotate(): Promise<void> {
    const root = await this.addRoot();
    const intermediate = await createIntermediate(root, { subject: `CN=${this.trustDomain} intermediate ${this.#roots.length},O=amime` });
    const serving = await createLeaf(intermediate, `spiffe://${this.trustDomain}/control-plane/ca`);
    this.#intermediate = intermediate;
    this.#server.setSecureContext({ cert: toPemChain([serving, intermediate]), key: serving.key.privateKeyPem, ca: this.bundlePem, minVersion: 'TLSv1.3' });
  }

  /** The newest root alone (PEM): the bundle once the older roots are retired. */
  get newestRootPem(): string {
    return this.#roots.at(-1)!.pem;
  }

  count(method: string, path: string): number {
    return this.requests.filter((r) => r.method === method && r.path === path).length;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const path = (req.url ?? '').split('?')[0]!;
      const record: FakeCaRequest = { method: req.method ?? '', path, body, clientId: undefined };
      this.requests.push(record);
      this.#route(req, record, body).then(
        (answer) => {
          res.setHeader('content-type', typeof answer === 'string' ? 'application/x-pem-file' : 'application/json');
          res.end(typeof answer === 'string' ? answer : JSON.stringify(answer));
        },
        (err: unknown) => {
          const r = err instanceof Refusal ? err : new Refusal(500, 'AMIME_ERR_CA_INTERNAL', 'internal', `fake CA bug: ${String(err)}`);
          res.statusCode = r.status;
          res.setHeader('content-type', 'application/json');
          res.end(JSON.stringify({ error: { code: r.code, reason: r.reason, message: r.message } }));
        },
      );
    });
  }

  async #route(req: IncomingMessage, record: FakeCaRequest, body: string): Promise<unknown> {
    const key = `${req.method} ${record.path}`;
    if (key === 'POST /v1/join') return this.#join(fields(body, ['token', 'csr']));
    record.clientId = this.#peer(req.socket as TLSSocket);
    switch (key) {
      case 'POST /v1/svid':
        return this.#svid(record.clientId, fields(body, ['csr', 'spiffeId']));
      case 'GET /v1/bundle':
        return this.bundlePem;
      case 'GET /v1/revocations':
        return this.revocationList;
      default:
        throw new Refusal(404, 'AMIME_ERR_CA_NOT_FOUND', 'not_found', `no route ${key}`);
    }
  }

  #peer(socket: TLSSocket): string {
    const chain = peerChain(socket);
    if (chain.length === 0) throw new Refusal(401, 'AMIME_ERR_CA_UNAUTHENTICATED', 'peer_no_peer_certificate', 'a client certificate is required');
    const v = verifySvid(chain, { bundle: this.#bundle, now: new Date(this.#clock.now()) });
    if (!v.ok) throw new Refusal(401, 'AMIME_ERR_CA_UNAUTHENTICATED', `peer_${v.reason}`, `client certificate refused: ${v.message}`);
    return v.spiffeId;
  }

  async #join(f: Record<string, string>): Promise<unknown> {
    const t = this.#tokens.get(f['token']!);
    if (!t) throw new Refusal(403, 'AMIME_ERR_CA_TOKEN', 'token_unknown', 'join token unknown; create one with meshctl token create --node NODE');
    if (t.used) throw new Refusal(403, 'AMIME_ERR_CA_TOKEN', 'token_reused', `join token for node ${t.node} was already used; join tokens are one-time`);
    if (t.expiresAt <= this.#clock.now()) throw new Refusal(403, 'AMIME_ERR_CA_TOKEN', 'token_expired', `join token for node ${t.node} expired at ${new Date(t.expiresAt).toISOString()}`);
    const id = `spiffe://${this.trustDomain}/agent/${t.node}`;
    const csr = checkCsr(f['csr']!, id);
    t.used = true;
    const leaf = await this.#issue(csr, id);
    return { spiffeId: id, node: t.node, serial: leaf.serialHex, notAfter: leaf.cert.notAfter.toISOString(), svid: toPemChain([leaf, this.#intermediate]), bundle: this.bundlePem };
  }

  async #svid(caller: string, f: Record<string, string>): Promise<unknown> {
    if (this.failSvid > 0) {
      this.failSvid--;
      throw new Refusal(500, 'AMIME_ERR_CA_INTERNAL', 'internal', 'injected failure');
    }
    const prefix = `spiffe://${this.trustDomain}/agent/`;
    if (!caller.startsWith(prefix)) throw new Refusal(403, 'AMIME_ERR_CA_FORBIDDEN', 'caller_not_allowed', `${caller} may not ask for SVIDs`);
    const node = caller.slice(prefix.length);
    const id = f['spiffeId']!;
    if (id !== caller && !this.#assignments.get(node)?.has(id)) {
      throw new Refusal(403, 'AMIME_ERR_CA_NOT_ASSIGNED', 'not_assigned', `${id} is not assigned to node ${node}; meshctl assign ${node} ${id}`);
    }
    const leaf = await this.#issue(checkCsr(f['csr']!, id), id);
    return { spiffeId: id, serial: leaf.serialHex, notAfter: leaf.cert.notAfter.toISOString(), svid: toPemChain([leaf, this.#intermediate]) };
  }

  async #issue(csr: ParsedCsr, id: string): Promise<TestCert> {
    const now = this.#clock.now();
    return createLeaf(this.#intermediate, id, { key: await subjectKeyOf(csr), notBefore: new Date(now - BACKDATE_MS), notAfter: new Date(now + this.ttlMs) });
  }
}

function fields(body: string, allowed: readonly string[]): Record<string, string> {
  let doc: unknown;
  try {
    doc = JSON.parse(body);
  } catch {
    throw new Refusal(400, 'AMIME_ERR_CA_BAD_REQUEST', 'malformed_json', 'the body is not JSON');
  }
  const o = doc as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!allowed.includes(k)) throw new Refusal(400, 'AMIME_ERR_CA_BAD_REQUEST', 'unknown_field', `unknown field ${k}; allowed: ${allowed.join(', ')}`);
  for (const k of allowed) if (typeof o[k] !== 'string') throw new Refusal(400, 'AMIME_ERR_CA_BAD_REQUEST', 'bad_request', `${k}: a string is required`);
  return o as Record<string, string>;
}

function checkCsr(pem: string, id: string): ParsedCsr {
  let csr: ParsedCsr;
  try {
    csr = parseCsr(pem);
  } catch (err) {
    const reason = err instanceof CsrError ? `csr_${err.reason}` : 'csr_malformed';
    throw new Refusal(400, 'AMIME_ERR_CA_BAD_CSR', reason, `csr: ${(err as Error).message}`);
  }
  if (csr.spiffeId.toString() !== id) throw new Refusal(400, 'AMIME_ERR_CA_BAD_CSR', 'csr_spiffe_id_mismatch', `the CSR names ${csr.spiffeId.toString()}, not ${id}`);
  return csr;
}
