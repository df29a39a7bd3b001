// reviews: answers /reviews; v1 without stars, v2 with. Which one a caller
// gets is the mesh's business (a Route splits by subset).
import http from 'node:http';

export function createReviewsServer(version: string): http.Server {
  return http.createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    if (req.url === '/healthz') return void res.end('{"ok":true}');
    if (!req.url?.startsWith('/reviews')) {
      res.statusCode = 404;
      return void res.end('{"error":"not found"}');
    }
    const reviews = [
      { item: 'tea-kettle', text: 'Whistles like a train.', ...(version !== 'v1' && { stars: 5 }) },
      { item: 'rice-cooker', text: 'Perfect rice, every time.', ...(version !== 'v1' && { stars: 4 }) },
    ];
    res.end(JSON.stringify({ service: 'reviews', version, reviews, caller: req.headers['x-amime-source-identity'] ?? null }));
  });
}
