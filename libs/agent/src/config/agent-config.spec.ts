import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ValidationError } from '@amime/protocol';
import { AgentConfigError, loadAgentConfig, parseAgentConfig } from './agent-config.js';

const good = `
node: vm1
dataDir: state
zone: eu-1
ca: { url: "https://127.0.0.1:8443", bundle: ca/bundle.pem }
controlPlane: { url: "wss://127.0.0.1:8444/v1/push" }
inbound: { port: 15443, advertise: 10.0.0.5 }
workloads:
  - service: web
    namespace: shop
    identity: spiffe://example.org/ns/shop/sa/web
    port: 8080
    protocol: http
    labels: { version: v1 }
    check: { http: /healthz }
    upstreams:
      - { service: catalog, namespace: shop, port: 19001 }
      - { service: db, namespace: shop, port: 19002, protocol: tcp }
    httpProxyPort: 15001
`;

const issuesOf = async (text: string): Promise<string[]> => {
  try {
    await parseAgentConfig(text, '/etc/amime');
  } catch (err) {
    assert.ok(err instanceof ValidationError, String(err));
    return err.issues.map((i) => `${i.path}: ${i.message}`);
  }
  assert.fail('expected a validation error');
};

describe('agent config', () => {
  test('a full config parses with defaults and paths resolved against the file', async () => {
    const c = await parseAgentConfig(good, '/etc/amime');
    assert.equal(c.node, 'vm1');
    assert.equal(c.dataDir, '/etc/amime/state');
    assert.equal(c.ca.bundle, '/etc/amime/ca/bundle.pem');
    assert.deepEqual(c.inbound, { address: '0.0.0.0', port: 15443, advertise: '10.0.0.5' });
    assert.deepEqual(c.admin, { address: '127.0.0.1', port: 15000 });
    assert.equal(c.controlPlane.heartbeat, '5s');
    assert.equal(c.workloads[0]!.address, '127.0.0.1');
    assert.equal(c.workloads[0]!.upstreams[1]!.protocol, 'tcp');
    assert.equal(c.workloads[0]!.upstreams[0]!.protocol, undefined);
  });

  test('each bad field is named', async () => {
    const cases: [string, string, RegExp][] = [
      ['node: vm1', 'node: VM_1', /^node: /],
      ['url: "wss://127.0.0.1:8444/v1/push"', 'url: "ws://127.0.0.1:8444/v1/push"', /^controlPlane\.url: must use wss:/],
      ['url: "https://127.0.0.1:8443"', 'url: "not a url"', /^ca\.url: is not a URL/],
      ['advertise: 10.0.0.5', 'advertise: example.com', /^inbound\.advertise: /],
      ['identity: spiffe://example.org/ns/shop/sa/web', 'identity: spiffe://example.org/agent/vm1', /^workloads\[0\]\.identity: /],
      ['protocol: http\n', 'protocol: udp\n', /^workloads\[0\]\.protocol: /],
      ['port: 19002', 'port: 19001', /^workloads\[0\]\.upstreams\[1\]\.port: duplicates/],
      ['httpProxyPort: 15001', 'httpProxyPort: 19001', /^workloads\[0\]: listener port 19001/],
      ['check: { http: /healthz }', 'check: { http: /healthz, tcp: connect }', /^workloads\[0\]\.check: /],
      ['zone: eu-1', 'zone: eu-1\nextra: 1', /^extra: is not a known field/],
    ];
    for (const [from, to, expected] of cases) {
      assert.ok(good.includes(from), from);
      const issues = await issuesOf(good.replace(from, to));
      assert.ok(issues.some((i) => expected.test(i)), `${to}: ${issues.join(' | ')}`);
    }
  });

  test('YAML aliases and unreadable or malformed files get a clear error', async () => {
    await assert.rejects(parseAgentConfig('a: &x 1\nb: *x\n', '/'), AgentConfigError);
    await assert.rejects(parseAgentConfig('node: [', '/'), /not valid YAML or JSON/);
    await assert.rejects(loadAgentConfig('/nonexistent/amime-agent.yaml'), /cannot read the agent config \/nonexistent/);
    const dir = mkdtempSync(join(tmpdir(), 'amime-agent-config-'));
    writeFileSync(join(dir, 'agent.yaml'), good);
    assert.equal((await loadAgentConfig(join(dir, 'agent.yaml'))).dataDir, join(dir, 'state'));
  });

  test('a JSON config reads the same as its YAML form', async () => {
    const { parse } = await import('yaml');
    const doc = parse(good) as Record<string, unknown>;
    const json = JSON.stringify(doc, null, 2);
    assert.deepEqual(await parseAgentConfig(json, '/etc/amime'), await parseAgentConfig(good, '/etc/amime'));
    assert.deepEqual(await parseAgentConfig(`\n ${JSON.stringify(doc)}`, '/etc/amime'), await parseAgentConfig(good, '/etc/amime'));
    // Duplicate keys, which JSON.parse would let through, are refused as in YAML, also nested and escaped.
    await assert.rejects(parseAgentConfig(json.replace('"node": "vm1",', '"node": "vm1", "node": "vm2",'), '/'), /not valid YAML or JSON/);
    await assert.rejects(parseAgentConfig(json.replace('"port": 15443,', '"port": 15443, "p\\u006frt": 1,'), '/'), /not valid YAML or JSON/);
    // The same key in different objects, or as a string value, is fine.
    const c = await parseAgentConfig(json.replace('"zone": "eu-1",', '"zone": "port",'), '/etc/amime');
    assert.equal(c.zone, 'port');
    await assert.rejects(parseAgentConfig('{"node": ', '/'), /not valid YAML or JSON/);
  });
});
