// The benchmark backend, run as its own process by main.ts: HTTP/1.1 with
// keep-alive on 127.0.0.1, a small fixed body for every request. Prints
// {"event":"listening","port":N} once bound; exits on SIGTERM/SIGINT.
import http from 'node:http';

const BODY = Buffer.from('hello from the dataplane bench backend\n');
const server = http.createServer({ noDelay: true, keepAliveTimeout: 65_000 }, (req, res) => {
  req.resume();
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': BODY.length });
  res.end(BODY);
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ event: 'listening', port: (server.address() as { port: number }).port })}\n`);
});
const stop = () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
