// inventory: the leaf of the demo. Answers /stock with a few counts and who
// called (the agent in front stamps the verified caller in a header).
import http from 'node:http';

const STOCK: Record<string, number> = { 'tea-kettle': 12, 'rice-cooker': 3, 'bento-box': 40 };

export function createInventoryServer(): http.Server {
  return http.createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    if (req.url === '/healthz') return void res.end('{"ok":true}');
    if (req.url?.startsWith('/stock')) {
      return void res.end(JSON.stringify({ service: 'inventory', stock: STOCK, caller: req.headers['x-amime-source-identity'] ?? null }));
    }
    res.statusCode = 404;
    res.end('{"error":"not found"}');
  });
}
