// A client for the CA's HTTPS API (docs/api/ca.md), for meshctl and the
// node agent. It never imports the CA: it speaks the wire format only.
//
// The CA's SVID names it by URI SAN (spiffe://<td>/control-plane/ca), not by
// hostname, so hostname checking is off and the server is verified as an
// X.509-SVID instead: OpenSSL checks the chain against the bundle, then
// verifyPeer checks the SPIFFE profile and the ID must equal the expected
// one. That happens in the agent's createConnection, before the socket is
// handed to the HTTP request, so not one byte of a request (a join token, a
// CSR) reaches a server that has not proved it is the CA.
import { randomUUID } from 'node:crypto';
import https from 'node:https';
import { isIP } from 'node:net';
import tls from 'node:tls';
import { parseCertificate } from './parse-certificate.js';
import { fromPem, toPem } from './pem.js';
import { parseSpiffeId, parseTrustDomain } from './spiffe-id.js';
import { bundleFromPem } from './trust-bundle.js';
import { verifyPeer } from './tls.js';
/** Reasons a request failed before the CA could answer it. */
export const CA_CLIENT_TRANSPORT_REASONS = ['unreachable', 'timeout', 'server_identity', 'tls', 'bad_response'];
/**
 * Either the CA's refusal (code, reason, message and HTTP status from its
 * `{error:{code,reason,message}}` body) or a transport failure (status 0,
 * code AMIME_ERR_CA_CLIENT_<REASON>, reason one of CA_CLIENT_TRANSPORT_REASONS).
 */
export class CaClientError extends Error {
    code;
    reason;
    status;
    constructor(code, reason, message, 
    /** HTTP status; 0 when the CA never answered. */
    status = 0) {
        super(message);
        this.code = code;
        this.reason = reason;
        this.status = status;
        this.name = 'CaClientError';
    }
    /** True when the CA itself refused the request (it answered with its error JSON). */
    get refused() {
        return !this.code.startsWith('AMIME_ERR_CA_CLIENT_');
    }
}
function transportError(reason, message) {
    return new CaClientError(`AMIME_ERR_CA_CLIENT_${reason.toUpperCase()}`, reason, message);
}
// ------------------------------------------------------------ helpers
const DEFAULT_TIMEOUT_MS = 10_000;
const IDLE_TIMEOUT_MS = 20_000;
/** Largest answer read (a SPIFFE bundle is at most 1 MiB; revocation lists stay well below). */
const MAX_RESPONSE_BYTES = 4 << 20;
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'EADDRNOTAVAIL', 'ECONNRESET', 'EPIPE', 'ECONNABORTED']);
/** Sorts a socket-level failure into a transport reason. */
export function classifyTransportError(err) {
    if (err instanceof CaClientError)
        return err;
    const code = err.code ?? '';
    const detail = code ? `${code}: ${err.message}` : err.message;
    if (code === 'ETIMEDOUT')
        return transportError('timeout', `CA did not answer in time (${detail})`);
    if (UNREACHABLE_CODES.has(code))
        return transportError('unreachable', `cannot reach the CA (${detail})`);
    if (code.startsWith('ERR_SSL') || code.startsWith('ERR_TLS') || /CERT|SIGNATURE|ISSUER|SELF_SIGNED/.test(code)) {
        return transportError('tls', `TLS with the CA failed (${detail})`);
    }
    return transportError('unreachable', `cannot reach the CA (${detail})`);
}
/** Trust domain named by the first spiffe:// URI SAN in the PEM certificates, if any. */
export function trustDomainFromPem(pem) {
    for (const der of fromPem(pem, 'CERTIFICATE')) {
        const uri = parseCertificate(der).uris.find((u) => u.startsWith('spiffe://'));
        if (uri)
            return parseSpiffeId(uri).trustDomain;
    }
    return undefined;
}
const csrText = (csr) => (typeof csr === 'string' ? csr : toPem('CERTIFICATE REQUEST', csr));
/**
 * A keep-alive agent whose connections are verified as the CA before any
 * request is written on them. No TLS session resumption: every connection
 * presents (and has verified) the server's full chain.
 */
class VerifiedCaAgent extends https.Agent {
    connectOptions;
    verify;
    timeoutMs;
    constructor(connectOptions, verify, timeoutMs) {
        // Idle connections close after 20 s, before the CA's 30 s keep-alive timeout.
        super({ keepAlive: true, timeout: IDLE_TIMEOUT_MS, maxSockets: 8, maxFreeSockets: 2, maxCachedSessions: 0 });
        this.connectOptions = connectOptions;
        this.verify = verify;
        this.timeoutMs = timeoutMs;
    }
    // Node's Agent calls createConnection(options, callback) and waits for the callback when it returns nothing.
    createConnection(options, callback) {
        if (!callback)
            throw new Error('VerifiedCaAgent: createConnection needs a callback (Node >= 20)');
        const host = options.host ?? 'localhost';
        const socket = tls.connect({
            ...this.connectOptions,
            host,
            port: Number(options.port),
            ...(isIP(host) ? {} : { servername: host }),
        });
        let settled = false;
        const settle = (err) => {
            if (settled)
                return;
            settled = true;
            socket.removeListener('error', onError);
            socket.setTimeout(0);
            if (err) {
                socket.on('error', () => undefined); // late errors of a socket we gave up on
                socket.destroy();
                callback(err, socket);
            }
            else
                callback(null, socket);
        };
        const onError = (err) => settle(classifyTransportError(err));
        socket.on('error', onError);
        socket.setTimeout(this.timeoutMs, () => settle(transportError('timeout', `no TLS connection to the CA within ${this.timeoutMs} ms`)));
        socket.once('secureConnect', () => settle(this.verify(socket) ?? null));
        return undefined;
    }
}
export class CaClient {
    url;
    trustDomain;
    expectedServerId;
    timeoutMs;
    #credential;
    #bundlePem;
    #transport;
    constructor(opts) {
        let url;
        try {
            url = new URL(opts.url);
        }
        catch {
            throw transportError('bad_options', `url: ${JSON.stringify(opts.url)} is not a URL; expected https://HOST:PORT`);
        }
        if (url.protocol !== 'https:')
            throw transportError('bad_options', `url: the CA API is HTTPS only; expected https://HOST:PORT, not ${url.protocol}`);
        this.url = url;
        this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
        if (!Number.isInteger(this.timeoutMs) || this.timeoutMs < 1)
            throw transportError('bad_options', 'timeoutMs: must be a positive whole number of milliseconds');
        this.trustDomain = CaClient.#trustDomain(opts);
        this.expectedServerId = opts.expectedServerId ?? `spiffe://${this.trustDomain}/control-plane/ca`;
        try {
            parseSpiffeId(this.expectedServerId);
        }
        catch (err) {
            throw transportError('bad_options', `expectedServerId: ${err.message}`);
        }
        this.#credential = opts.credential;
        this.#bundlePem = opts.bundlePem;
        this.#transport = this.#buildTransport();
    }
    static #trustDomain(opts) {
        try {
            if (opts.trustDomain !== undefined)
                return parseTrustDomain(opts.trustDomain);
            if (opts.expectedServerId !== undefined)
                return parseSpiffeId(opts.expectedServerId).trustDomain;
            const td = (opts.credential && trustDomainFromPem(opts.credential.certPem)) ?? trustDomainFromPem(opts.bundlePem);
            if (td !== undefined)
                return td;
        }
        catch (err) {
            throw transportError('bad_options', `trust domain: ${err.message}`);
        }
        throw transportError('bad_options', 'trust domain: neither the credential nor the bundle roots name one; pass trustDomain or expectedServerId');
    }
    /** The trust roots in use (PEM). */
    get bundlePemInUse() {
        return this.#bundlePem;
    }
    /** Trust new roots (after a bundle refresh or a rotation step); open connections are dropped. */
    updateTrust(bundlePem) {
        this.#replace(() => (this.#bundlePem = bundlePem));
    }
    /** Authenticate with a renewed SVID from now on; open connections are dropped. */
    updateCredential(credential) {
        this.#replace(() => (this.#credential = credential));
    }
    /** Close idle keep-alive connections. The client stays usable. */
    close() {
        this.#transport.agent.destroy();
    }
    #replace(change) {
        const [oldBundle, oldCred] = [this.#bundlePem, this.#credential];
        change();
        try {
            const next = this.#buildTransport();
            this.#transport.agent.destroy();
            this.#transport = next;
        }
        catch (err) {
            [this.#bundlePem, this.#credential] = [oldBundle, oldCred];
            throw err;
        }
    }
    #buildTransport() {
        let bundle;
        try {
            bundle = bundleFromPem(this.#bundlePem, this.trustDomain);
        }
        catch (err) {
            throw transportError('bad_options', `bundlePem: ${err.message}`);
        }
        let secureContext;
        try {
            secureContext = tls.createSecureContext({
                ca: this.#bundlePem,
                minVersion: 'TLSv1.3',
                ...(this.#credential ? { cert: this.#credential.certPem, key: this.#credential.keyPem } : {}),
            });
        }
        catch (err) {
            throw transportError('bad_options', `credential: ${err.message}`);
        }
        const verify = (socket) => {
            const peer = verifyPeer(socket, { bundle });
            if (!peer.ok)
                return transportError('server_identity', `the CA's server certificate was refused (${peer.reason}): ${peer.message}`);
            if (peer.spiffeId !== this.expectedServerId) {
                return transportError('server_identity', `the server at ${this.url.host} is ${peer.spiffeId}, not ${this.expectedServerId}`);
            }
            return undefined;
        };
        const connectOptions = {
            secureContext,
            minVersion: 'TLSv1.3',
            rejectUnauthorized: true,
            // The CA's SVID has a URI SAN only; verify() checks its SPIFFE ID instead.
            checkServerIdentity: () => undefined,
        };
        return { agent: new VerifiedCaAgent(connectOptions, verify, this.timeoutMs), bundle };
    }
    // ------------------------------------------------------------ anyone
    /** Bootstrap: spend a join token for the SVID spiffe://<td>/agent/<node>. */
    join(token, csr) {
        return this.#json('POST', '/v1/join', { token, csr: csrText(csr) });
    }
    // ------------------------------------------------------------ any SVID of the trust domain
    /** An SVID for `spiffeId` (our own, an assigned workload's, or an admin's control-plane/admin ID). */
    svid(csr, spiffeId) {
        return this.#json('POST', '/v1/svid', { csr: csrText(csr), spiffeId });
    }
    /** The trust bundle as a SPIFFE bundle document (JWKS with spiffe_sequence). */
    bundle() {
        return this.#json('GET', '/v1/bundle');
    }
    /** The trust bundle's roots as PEM. */
    async bundlePem() {
        return (await this.#request('GET', '/v1/bundle?format=pem')).text;
    }
    revocations() {
        return this.#json('GET', '/v1/revocations');
    }
    /** Assignments of `node` (an agent always gets its own node's). */
    assignments(node) {
        return this.#json('GET', node === undefined ? '/v1/assignments' : `/v1/assignments?node=${encodeURIComponent(node)}`);
    }
    // ------------------------------------------------------------ admin
    createToken(node, ttlSeconds) {
        return this.#json('POST', '/v1/admin/tokens', ttlSeconds === undefined ? { node } : { node, ttlSeconds });
    }
    assign(node, spiffeId) {
        return this.#json('POST', '/v1/admin/assignments', { node, spiffeId });
    }
    unassign(node, spiffeId) {
        return this.#json('DELETE', '/v1/admin/assignments', { node, spiffeId });
    }
    listAssignments() {
        return this.#json('GET', '/v1/admin/assignments');
    }
    /** Revoke one serial, one SPIFFE ID, or evict a node (every SVID whose key lives there). */
    revoke(target) {
        return this.#json('POST', '/v1/admin/revocations', target);
    }
    unrevoke(spiffeId) {
        return this.#json('DELETE', '/v1/admin/revocations', { spiffeId });
    }
    rotation() {
        return this.#json('GET', '/v1/admin/rotation');
    }
    rotate(step, force = false) {
        return this.#json('POST', `/v1/admin/rotation/${step}`, force ? { force: true } : {});
    }
    status() {
        return this.#json('GET', '/v1/admin/status');
    }
    // ------------------------------------------------------------ transport
    async #json(method, path, body) {
        const reply = await this.#request(method, path, body);
        try {
            return JSON.parse(reply.text);
        }
        catch {
            throw transportError('bad_response', `${method} ${path}: the CA answered 200 with a body that is not JSON`);
        }
    }
    async #request(method, path, body) {
        const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
        try {
            return await this.#once(method, path, payload);
        }
        catch (err) {
            // A kept-alive connection the CA closed while idle: the request never
            // reached it, so one retry on a fresh connection is safe.
            if (err.staleSocket)
                return this.#once(method, path, payload);
            throw err;
        }
    }
    #once(method, path, payload) {
        const { agent } = this.#transport;
        return new Promise((resolve, reject) => {
            let done = false;
            const timing = {};
            const finish = (err, value) => {
                if (done)
                    return;
                done = true;
                clearTimeout(timing.timer);
                if (err)
                    reject(err);
                else
                    resolve(value);
            };
            const req = https.request({
                agent,
                protocol: 'https:',
                host: this.url.hostname.replace(/^\[|\]$/g, ''),
                port: this.url.port || 443,
                method,
                path,
                headers: {
                    accept: 'application/json',
                    'x-request-id': randomUUID(),
                    ...(payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {}),
                },
            });
            timing.timer = setTimeout(() => {
                finish(transportError('timeout', `${method} ${path}: no answer from the CA within ${this.timeoutMs} ms`));
                req.destroy();
            }, this.timeoutMs);
            req.on('error', (err) => {
                const e = classifyTransportError(err);
                if (req.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE'))
                    Object.assign(e, { staleSocket: true });
                finish(e);
            });
            req.on('response', (res) => {
                const chunks = [];
                let size = 0;
                res.on('data', (c) => {
                    size += c.length;
                    if (size > MAX_RESPONSE_BYTES) {
                        finish(transportError('bad_response', `${method} ${path}: answer over ${MAX_RESPONSE_BYTES} bytes`));
                        res.destroy();
                        return;
                    }
                    chunks.push(c);
                });
                res.on('error', (err) => finish(classifyTransportError(err)));
                res.on('end', () => {
                    const text = Buffer.concat(chunks).toString('utf8');
                    const status = res.statusCode ?? 0;
                    if (status === 200)
                        return finish(null, { status, text });
                    finish(errorFromBody(method, path, status, text));
                });
            });
            req.end(payload);
        });
    }
}
/** The CA's `{error:{code,reason,message}}` answer as a CaClientError. */
export function errorFromBody(method, path, status, text) {
    let parsed;
    try {
        parsed = JSON.parse(text);
    }
    catch {
        parsed = undefined;
    }
    const e = parsed?.error;
    if (e && typeof e['code'] === 'string' && typeof e['message'] === 'string') {
        return new CaClientError(e['code'], typeof e['reason'] === 'string' ? e['reason'] : 'unknown', e['message'], status);
    }
    return new CaClientError('AMIME_ERR_CA_CLIENT_BAD_RESPONSE', 'bad_response', `${method} ${path}: HTTP ${status} without an error body: ${text.slice(0, 200)}`, status);
}
//# sourceMappingURL=ca-client.js.map