// demo-web: `main.ts --port N --catalog URL --reviews URL --inventory URL [--deny-every N]`;
// the URLs are its agent's local upstream ports.
import { parseArgs } from 'node:util';
import { createWebServer } from './service.js';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '18080' },
    catalog: { type: 'string', default: 'http://127.0.0.1:19001' },
    reviews: { type: 'string', default: 'http://127.0.0.1:19002' },
    inventory: { type: 'string', default: 'http://127.0.0.1:19003' },
    'deny-every': { type: 'string', default: '20' },
  },
});
const port = Number(values.port);
const denyEvery = Number(values['deny-every']);
if (!Number.isInteger(port) || port < 0 || port > 65535 || !Number.isInteger(denyEvery) || denyEvery < 0) {
  process.stderr.write(`demo-web: --port must be 0-65535 and --deny-every a whole number, not ${JSON.stringify(values)}\n`);
  process.exit(64);
}
const server = createWebServer({ catalog: values.catalog, reviews: values.reviews, inventory: values.inventory, denyEvery });
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ event: 'listening', service: 'web', port: (server.address() as { port: number }).port })}\n`);
});
const stop = () => server.close(() => process.exit(0)).closeAllConnections();
process.on('SIGTERM', stop).on('SIGINT', stop);
