// catalog: answers /items with a short list and the stock it asks inventory
// for, through its agent's local upstream port (the mesh carries the call).
import http from 'node:http';

const ITEMS = [
  { id: 'tea-kettle', name: 'Tea kettle' },
  { id: 'rice-cooker', name: 'Rice cooker' },
  { id: 'bento-box', name: 'Bento box' },
];

export interface CatalogOptions {
  /** Base URL of inventory, e.g. http://127.0.0.1:19011 (the agent's upstream port). */
  inventory: string;
}

type Inventory = { stock?: Record<string, number>; status?: number; error?: string };

export function createCatalogServer(opts: CatalogOptions): http.Server {
  return http.createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    if (req.url === '/healthz') return void res.end('{"ok":true}');
    if (!req.url?.startsWith('/items')) {
      res.statusCode = 404;
      return void res.end('{"error":"not found"}');
    }
    fetch(`${opts.inventory}/stock`, { signal: AbortSignal.timeout(5000) })
      .then(async (r): Promise<Inventory> => (r.ok ? ((await r.json()) as Inventory) : { status: r.status, error: (await r.text()).slice(0, 200) }))
      .catch((err: Error): Inventory => ({ status: 0, error: err.message }))
      .then((inventory) => {
        if (!inventory.stock) res.statusCode = 502;
        res.end(JSON.stringify({ service: 'catalog', items: ITEMS, inventory, caller: req.headers['x-amime-source-identity'] ?? null }));
      });
  });
}
