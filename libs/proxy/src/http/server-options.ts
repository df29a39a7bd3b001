// HTTP/1.1 hygiene every agent HTTP server shares: strict parser options, size and
// time limits, and the few request checks Node's strict llhttp does not make itself.
//
// What Node 20's llhttp (insecureHTTPParser: false) refuses on its own with 400 and
// Connection: close (see server-options.spec.ts, which proves each case):
//   Content-Length with Transfer-Encoding (either order), duplicate Content-Length
//   (same or different values), Content-Length lists/signs/overflow, obs-fold line
//   folding, bare CR, bare LF line ends, whitespace before the colon, invalid header
//   name or value characters (CTL, NUL, DEL), invalid chunk sizes and chunk framing,
//   Transfer-Encoding with chunked not last or repeated, unknown or lower-case methods;
//   headers over maxHeaderSize get 431, and headersTimeout gives 408.
// What it lets through, so checkRequest refuses it here:
//   request lines that are not HTTP/1.0 or HTTP/1.1 ("GET /" alone, "HTTP/2.0"),
//   Transfer-Encoding on HTTP/1.0 (RFC 9112 §6.1), codings other than plain
//   "chunked" (e.g. "gzip, chunked"; we would forward the body undecoded),
//   several Host fields, absolute-form targets whose authority differs from Host,
//   and targets that are neither origin-form, absolute-form nor "*" for OPTIONS.
import http, { type IncomingMessage, type ServerOptions, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { ERROR_HEADER } from './headers.js';

export const MAX_HEADER_SIZE = 16 * 1024;

export interface HttpServerLimits {
  /** Time to receive the complete request head; slower clients get 408. Default 10 s. */
  readonly headersTimeoutMs?: number;
  /** Time to receive the complete request, body included. Default 120 s. */
  readonly requestTimeoutMs?: number;
  /** Idle time before a kept-alive connection is closed. Default 60 s (above peers' pool idle time). */
  readonly keepAliveTimeoutMs?: number;
  /** How often the two timeouts above are checked. Default 1 s. */
  readonly connectionsCheckingIntervalMs?: number;
}

/** Options for `http.createServer` shared by every agent HTTP server (outbound listeners and inbound). */
export function serverOptions(limits: HttpServerLimits = {}): ServerOptions {
  const headersTimeout = limits.headersTimeoutMs ?? 10_000;
  const requestTimeout = Math.max(limits.requestTimeoutMs ?? 120_000, headersTimeout);
  return {
    insecureHTTPParser: false,
    maxHeaderSize: MAX_HEADER_SIZE,
    headersTimeout,
    requestTimeout,
    keepAliveTimeout: limits.keepAliveTimeoutMs ?? 60_000,
    connectionsCheckingInterval: limits.connectionsCheckingIntervalMs ?? 1000,
    requireHostHeader: true,
    joinDuplicateHeaders: false,
    noDelay: true,
  };
}

/** Why a request was refused before anything else looked at it. */
export interface RequestRefusal {
  readonly status: 400 | 501 | 505;
  /** snake_case cause, sent as x-amime-error and reported to onResult. */
  readonly reason: string;
}

const BAD_VERSION: RequestRefusal = { status: 505, reason: 'http_version_not_supported' };
const TE_ON_HTTP10: RequestRefusal = { status: 400, reason: 'transfer_encoding_on_http10' };
const TE_NOT_CHUNKED: RequestRefusal = { status: 501, reason: 'transfer_coding_not_supported' };
const MULTIPLE_HOST: RequestRefusal = { status: 400, reason: 'multiple_host' };
const AUTHORITY_MISMATCH: RequestRefusal = { status: 400, reason: 'authority_mismatch' };
const BAD_TARGET: RequestRefusal = { status: 400, reason: 'bad_request_target' };

/**
 * The checks llhttp leaves to us (see the file comment). One pass over rawHeaders;
 * allocates nothing on the accepted path. undefined means the request may proceed.
 */
export function checkRequest(req: IncomingMessage): RequestRefusal | undefined {
  if (req.httpVersionMajor !== 1 || (req.httpVersionMinor !== 0 && req.httpVersionMinor !== 1)) return BAD_VERSION;
  const raw = req.rawHeaders;
  let hosts = 0;
  let host = '';
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 4 && name.toLowerCase() === 'host') {
      hosts++;
      host = raw[i + 1]!;
    } else if (name.length === 17 && name.toLowerCase() === 'transfer-encoding') {
      if (req.httpVersionMinor === 0) return TE_ON_HTTP10;
      if (raw[i + 1]!.trim().toLowerCase() !== 'chunked') return TE_NOT_CHUNKED;
    }
  }
  if (hosts > 1) return MULTIPLE_HOST;
  const url = req.url ?? '';
  if (url.charCodeAt(0) === 0x2f /* / */) return undefined;
  if (url === '*') return req.method === 'OPTIONS' ? undefined : BAD_TARGET;
  const authority = absoluteFormAuthority(url);
  if (authority === undefined) return BAD_TARGET;
  return authority.toLowerCase() === host.toLowerCase() ? undefined : AUTHORITY_MISMATCH;
}

/** The authority of an `http://authority[/path][?query]` target; undefined for anything else. */
export function absoluteFormAuthority(url: string): string | undefined {
  if (url.length < 8 || url.slice(0, 7).toLowerCase() !== 'http://') return undefined;
  let end = 7;
  while (end < url.length) {
    const c = url.charCodeAt(end);
    if (c === 0x2f || c === 0x3f /* ? */ || c === 0x23 /* # */) break;
    end++;
  }
  const at = url.indexOf('@', 7);
  if (end === 7 || (at !== -1 && at < end)) return undefined; // no empty authority, no userinfo
  return url.slice(7, end);
}

/** The path (no query) and the query (no "?") of an origin-form, absolute-form or "*" target. */
export function splitTarget(url: string): { path: string; query: string } {
  let start = 0;
  if (url.charCodeAt(0) !== 0x2f && url !== '*') {
    // absolute-form, already checked by checkRequest
    start = 7;
    while (start < url.length && url.charCodeAt(start) !== 0x2f && url.charCodeAt(start) !== 0x3f) start++;
  }
  const q = url.indexOf('?', start);
  const path = q === -1 ? url.slice(start) : url.slice(start, q);
  return { path: path === '' ? '/' : path, query: q === -1 ? '' : url.slice(q + 1) };
}

/** Answers with a short plain-text body, x-amime-error and, when `close`, Connection: close. */
export function respondError(res: ServerResponse, status: number, reason: string, close = false): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = `${reason}\n`;
  res.statusCode = status;
  res.setHeader('content-type', 'text/plain; charset=utf-8');
  res.setHeader('content-length', Buffer.byteLength(body));
  res.setHeader(ERROR_HEADER, reason);
  if (close) res.shouldKeepAlive = false;
  res.end(body);
}

/** The same on a raw socket, for refused upgrade requests; always closes. */
export function respondErrorOnSocket(socket: Duplex, status: number, reason: string): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = `${reason}\n`;
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${ERROR_HEADER}: ${reason}\r\nconnection: close\r\n\r\n${body}`,
  );
}

const STATUS_TEXT: Readonly<Record<number, string>> = {
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  429: 'Too Many Requests',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
  505: 'HTTP Version Not Supported',
};

/**
 * An agent HTTP server (outbound listener or inbound per workload): the hardened
 * options, WebSocket upgrades to the handler, and a bad request head answered
 * with 400 and closed, so the parser's error never escapes.
 */
export function createProxyServer(handler: ((req: IncomingMessage, res: ServerResponse) => void) & { upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void }): http.Server {
  const server = http.createServer(serverOptions(), handler);
  server.on('upgrade', handler.upgrade);
  server.on('clientError', (_err, socket: Duplex) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    else socket.destroy();
  });
  return server;
}
