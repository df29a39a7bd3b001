// The demo's topology as data: agent configs the agent accepts, resources the
// control plane accepts, ports that round-trip through ports.json.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAgentConfig } from '@amime/agent';
import { parseResources } from '@amime/protocol';
import { agentConfigs, appProcesses, DEFAULT_PORTS, demoResources, listPorts, NODES, parsePorts, withPorts } from './topology.js';
import { parseOptions, UsageError } from './options.js';

const mesh = { trustDomain: 'demo.test', caUrl: 'https://127.0.0.1:8443', pushUrl: 'wss://127.0.0.1:8444/v1/push', bundleFile: '/tmp/demo/bundle.pem' };

test('each agent config passes the agent\'s own validation; vm1 fronts web, vm2 catalog + reviews v1, vm3 inventory + reviews v2', async () => {
  const configs = agentConfigs('/tmp/demo', DEFAULT_PORTS, mesh);
  const workloads: Record<string, string[]> = {};
  for (const node of NODES) {
    const c = await parseAgentConfig(JSON.stringify(configs[node]), '/tmp/demo', node);
    assert.equal(c.node, node);
    assert.equal(c.dataDir, `/tmp/demo/${node}/data`);
    workloads[node] = c.workloads.map((w) => `${w.service}${w.labels?.['version'] ? `@${w.labels['version']}` : ''}`);
  }
  assert.deepEqual(workloads, { vm1: ['web'], vm2: ['catalog', 'reviews@v1'], vm3: ['inventory', 'reviews@v2'] });
});

test('the resources parse: 4 Services, a 90/10 Route, ALLOW policies for exactly the three edges, a MeshConfig', () => {
  const rs = parseResources(demoResources('demo.test', { learningWindow: '2m', reportInterval: '5s' }), 'yaml') as unknown as { kind: string; metadata: { name: string }; spec: Record<string, unknown> }[];
  assert.deepEqual(rs.filter((r) => r.kind === 'Service').map((r) => r.metadata.name), ['web', 'catalog', 'inventory', 'reviews']);
  const edges = rs.filter((r) => r.kind === 'AuthorizationPolicy').map((r) => `${(r.spec['rules'] as { from: { identity: string }[] }[])[0]!.from[0]!.identity.split('/').pop()}→${r.spec['target'] as string}`);
  assert.deepEqual(edges.sort(), ['catalog→inventory', 'web→catalog', 'web→reviews']);
  const route = rs.find((r) => r.kind === 'Route')!;
  assert.deepEqual((route.spec['rules'] as { backends: { subset: string; weight: number }[] }[])[0]!.backends.map((b) => [b.subset, b.weight]), [['v1', 90], ['v2', 10]]);
  assert.ok(rs.some((r) => r.kind === 'MeshConfig'));
});

test('ports round-trip; a broken ports.json is refused', () => {
  assert.deepEqual(withPorts(listPorts(DEFAULT_PORTS)), DEFAULT_PORTS);
  assert.deepEqual(parsePorts(JSON.parse(JSON.stringify(DEFAULT_PORTS))), DEFAULT_PORTS);
  assert.equal(parsePorts({ apps: {} }), undefined);
  assert.equal(parsePorts({ ...DEFAULT_PORTS, apps: { ...DEFAULT_PORTS.apps, web: 70000 } }), undefined);
  assert.equal(parsePorts({ ...DEFAULT_PORTS, apps: { ...DEFAULT_PORTS.apps, web: 18081 } }), undefined, 'two things on one port');
  const web = appProcesses(DEFAULT_PORTS, 20).find((a) => a.name === 'web')!;
  assert.deepEqual(web.args.slice(-2), ['--deny-every', '20']);
});

test('flags: defaults, env, and bad values named', () => {
  const o = parseOptions([], { AMIME_DEMO_STATE: 'x/state' }, '/w');
  assert.equal(o.stateDir, '/w/x/state');
  assert.equal(o.credentialsDir, '/w/var/ca/admin');
  assert.equal(o.rate, 5);
  assert.equal(o.cpMetrics, 'http://127.0.0.1:9444');
  for (const [args, message] of [
    [['--rate', 'fast'], /--rate must be a whole number/],
    [['--learning-window', '2 minutes'], /--learning-window must be a duration/],
    [['--ca', 'http://x'], /--ca must look like/],
    [['--bogus'], /Unknown option/],
  ] as const) {
    assert.throws(() => parseOptions([...args], {}, '/w'), (e: Error) => e instanceof UsageError && message.test(e.message));
  }
});
