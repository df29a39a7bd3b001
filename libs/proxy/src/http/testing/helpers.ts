// Test helpers for the http specs: loopback servers on port 0, raw-socket requests
// with bounded waits, and a plain request client. Imported only by *.spec.ts.
import http, { type IncomingMessage, type RequestListener, type Server } from 'node:http';
import net from 'node:net';

export async function listen(server: Server | net.Server): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return (server.address() as net.AddressInfo).port;
}

export async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** A port that refuses connections (bound, then released). */
export async function closedPort(): Promise<number> {
  const s = net.createServer();
  const port = await listen(s);
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

export interface SeenRequest {
  readonly method: string;
  readonly url: string;
  readonly rawHeaders: string[];
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
}

export interface Backend {
  readonly port: number;
  readonly server: Server;
  readonly seen: SeenRequest[];
  close(): Promise<void>;
}

/** An HTTP server that records each request (with its whole body) before `respond` answers it. */
export async function startBackend(respond: (req: SeenRequest, res: http.ServerResponse) => void = (_r, res) => res.end('ok')): Promise<Backend> {
  const seen: SeenRequest[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const s = { method: req.method!, url: req.url!, rawHeaders: req.rawHeaders, headers: req.headers, body: Buffer.concat(chunks) };
      seen.push(s);
      respond(s, res);
    });
  });
  const port = await listen(server);
  return { port, server, seen, close: () => closeServer(server) };
}

export interface RawResult {
  /** Everything the server sent, latin1. */
  readonly text: string;
  /** The status code of the first response, or 0 when none came before the close. */
  readonly status: number;
  /** Whether the server closed the connection within the wait. */
  readonly closed: boolean;
}

/** Writes `payload` on a fresh TCP connection and collects the answer until close or `waitMs`. */
export function rawRequest(port: number, payload: string | Buffer, waitMs = 3000): Promise<RawResult> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let text = '';
    let closed = false;
    const done = (): void => {
      clearTimeout(timer);
      s.destroy();
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      resolve({ text, status: m ? Number(m[1]) : 0, closed });
    };
    const timer = setTimeout(done, waitMs);
    s.on('data', (d: Buffer) => (text += d.toString('latin1')));
    s.on('close', () => {
      closed = true;
      done();
    });
    s.on('error', () => undefined);
    s.write(typeof payload === 'string' ? Buffer.from(payload, 'latin1') : payload);
  });
}

export interface Reply {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

/** One request on a fresh connection; `headers` may be a flat raw list. Fails after `timeoutMs` (default 10 s) instead of hanging. */
export function request(port: number, opts: { method?: string; path?: string; headers?: http.OutgoingHttpHeaders | string[]; body?: string | Buffer; timeoutMs?: number } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: opts.method ?? 'GET', path: opts.path ?? '/', headers: opts.headers ?? {}, agent: false }, (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.setTimeout(opts.timeoutMs ?? 10_000, () => req.destroy(new Error(`no response within ${opts.timeoutMs ?? 10_000} ms`)));
    req.on('error', reject);
    req.end(opts.body);
  });
}

export function server(options: http.ServerOptions, handler: RequestListener): Server {
  return http.createServer(options, handler);
}

/** A promise resolved from outside (for event waits instead of sleeps); rejects after `timeoutMs` (default 10 s) so a broken test fails instead of hanging. */
export function deferred<T = void>(timeoutMs = 10_000): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  let timer: NodeJS.Timeout;
  const promise = new Promise<T>((res, reject) => {
    timer = setTimeout(() => reject(new Error(`not resolved within ${timeoutMs} ms`)), timeoutMs).unref();
    resolve = (v: T) => {
      clearTimeout(timer);
      res(v);
    };
  });
  promise.catch(() => undefined);
  return { promise, resolve };
}
