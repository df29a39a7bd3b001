// web: the front page. Each request asks catalog and reviews through its
// agent's local upstream ports; every N-th also calls inventory directly,
// an edge no policy allows, so the mesh refuses it (403) and it shows up as
// a deny in the callee agent's metrics.
import http from 'node:http';

export interface WebOptions {
  /** Base URLs of the upstreams: the agent's local ports, e.g. http://127.0.0.1:19001. */
  catalog: string;
  reviews: string;
  inventory: string;
  /** Call inventory directly on every N-th request (0: never). */
  denyEvery: number;
}

type Answer = Record<string, unknown> & { status?: number };

const get = (url: string): Promise<Answer> =>
  fetch(url, { signal: AbortSignal.timeout(5000) })
    .then(async (r) => (r.ok ? ((await r.json()) as Answer) : { status: r.status, error: (await r.text()).slice(0, 200) }))
    .catch((err: Error) => ({ status: 0, error: err.message }));

export function createWebServer(opts: WebOptions): http.Server {
  let n = 0;
  return http.createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    if (req.url === '/healthz') return void res.end('{"ok":true}');
    if (req.url !== '/' && !req.url?.startsWith('/?')) {
      res.statusCode = 404;
      return void res.end('{"error":"not found"}');
    }
    const request = ++n;
    const direct = opts.denyEvery > 0 && request % opts.denyEvery === 0;
    void Promise.all([get(`${opts.catalog}/items`), get(`${opts.reviews}/reviews`), direct ? get(`${opts.inventory}/stock`) : undefined]).then(([catalog, reviews, inventory]) => {
      if (catalog.status !== undefined || reviews.status !== undefined) res.statusCode = 502;
      res.end(JSON.stringify({ service: 'web', request, catalog, reviews, ...(inventory && { inventoryDirect: { status: inventory.status ?? 200, ...inventory } }) }));
    });
  });
}
