// demo-reviews: `main.ts --port N --version v1|v2` (the demo starts it twice).
import { parseArgs } from 'node:util';
import { createReviewsServer } from './service.js';

const { values } = parseArgs({ options: { port: { type: 'string', default: '18083' }, version: { type: 'string', default: 'v1' } } });
const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65535 || !/^v\d{1,3}$/.test(values.version)) {
  process.stderr.write(`demo-reviews: --port must be 0-65535 and --version like v1, not ${JSON.stringify(values)}\n`);
  process.exit(64);
}
const server = createReviewsServer(values.version);
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ event: 'listening', service: 'reviews', version: values.version, port: (server.address() as { port: number }).port })}\n`);
});
const stop = () => server.close(() => process.exit(0)).closeAllConnections();
process.on('SIGTERM', stop).on('SIGINT', stop);
