// docker/compose.yaml and the files it mounts are generated from the demo's
// topology (composeFiles() in @amime/demo-topology, written by
// tools/scripts/compose-files.ts): they must match what the
// generator prints now, every agent config must pass the agent's own schema,
// every build must name a Dockerfile that exists and takes NODE_IMAGE, and the
// Prometheus/Grafana mounts must point at the shipped deploy/ files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { parseAgentConfig } from '@amime/agent';
import { isExposed, parseDashboardOptions } from '@amime/dashboard';
import { parseResources } from '@amime/protocol';
import { COMPOSE_ADDRESSES as ADDRESSES, COMPOSE_TRUST_DOMAIN as TRUST_DOMAIN, composeFiles, NODES } from '@amime/demo-topology';
import { workspace } from '../ca/fixtures/ca-process.js';

const files = composeFiles();

test('the generated compose files on disk are what tools/scripts/compose-files.ts makes now', () => {
  for (const [path, content] of Object.entries(files)) {
    assert.ok(existsSync(join(workspace, path)), `${path} is missing: node --import tsx tools/scripts/compose-files.ts --write`);
    assert.equal(readFileSync(join(workspace, path), 'utf8'), content, `${path} is stale: node --import tsx tools/scripts/compose-files.ts --write`);
  }
});

test('each agent config passes the agent\'s validation and advertises its fixed address', async () => {
  for (const node of NODES) {
    const text = files[`docker/compose/agents/${node}.yaml`]!;
    const config = await parseAgentConfig(text, '/etc/amime', `compose agent ${node}`);
    assert.equal(config.node, node);
    assert.equal(config.inbound.advertise, ADDRESSES[node]);
  }
});

test('the mesh resources parse, for the compose trust domain', () => {
  const resources = parseResources(files['docker/compose/demo.yaml']!, 'yaml');
  assert.ok(resources.length >= 8, `${resources.length} resources`);
  assert.match(files['docker/compose/demo.yaml']!, new RegExp(`spiffe://${TRUST_DOMAIN.replace('.', '\\.')}/ns/demo/sa/web`));
});

test('every service builds from an existing docker/*.Dockerfile with ARG NODE_IMAGE; mounts point at shipped files', () => {
  const doc = parse(files['docker/compose.yaml']!) as { services: Record<string, { build?: { dockerfile: string; args: Record<string, string> }; volumes?: string[]; network_mode?: string }> };
  const built = Object.entries(doc.services).filter(([, s]) => s.build);
  const used = new Set(built.map(([, s]) => s.build!.dockerfile));
  const all = readdirSync(join(workspace, 'docker')).filter((f) => f.endsWith('.Dockerfile'));
  assert.deepEqual(all.filter((f) => !used.has(`docker/${f}`)), [], 'Dockerfiles no compose service uses');
  for (const [name, s] of built) {
    const dockerfile = join(workspace, s.build!.dockerfile);
    assert.ok(existsSync(dockerfile), `${name}: ${s.build!.dockerfile} does not exist`);
    assert.match(readFileSync(dockerfile, 'utf8'), /^ARG NODE_IMAGE=node:20-bookworm-slim\nFROM \$\{NODE_IMAGE\}$/m, `${s.build!.dockerfile} takes NODE_IMAGE`);
    assert.ok('NODE_IMAGE' in s.build!.args, `${name} passes NODE_IMAGE`);
  }
  for (const [name, s] of Object.entries(doc.services)) {
    for (const v of s.volumes ?? []) {
      const source = v.split(':')[0]!;
      if (source.startsWith('.')) assert.ok(existsSync(join(workspace, 'docker', source)), `${name} mounts ${source}, which does not exist`);
    }
    if (s.network_mode) assert.ok(doc.services[s.network_mode.replace(/^service:/, '')], `${name} shares the network of a service that exists`);
  }
  assert.ok(doc.services['prometheus']?.volumes?.includes('../deploy/prometheus/rules:/etc/prometheus/rules:ro'));
  assert.ok(doc.services['grafana']?.volumes?.some((v) => v.startsWith('../deploy/grafana/provisioning:')));
});

test('the dashboard runs with its own flags, reads the admin credential from a mounted volume, and is published on loopback only', () => {
  const doc = parse(files['docker/compose.yaml']!) as { services: Record<string, { command: string[]; volumes: string[]; ports: string[] }> };
  const d = doc.services['dashboard'];
  assert.ok(d, 'a dashboard service');
  const opts = parseDashboardOptions(d.command, {}, '/var/lib/amime'); // throws on a flag the dashboard does not have
  assert.equal(opts.host, '0.0.0.0', 'binds every address in its container, or the published port reaches nothing');
  assert.equal(opts.controlPlaneUrl, `https://${ADDRESSES.controlPlane}:8444`);
  assert.ok(d.volumes.some((v) => { const [vol, at] = v.split(':'); return doc.services['control-plane']!.volumes.includes(`${vol}:${at}`) && opts.credentialsDir.startsWith(`${at}/`); }), `${opts.credentialsDir} is in a volume mounted where the control plane reads the same credential`);
  assert.deepEqual(d.ports, [`127.0.0.1:${opts.port}:${opts.port}`]);
  // The image's default command parses too, and also binds 0.0.0.0 on the port it EXPOSEs.
  const dockerfile = readFileSync(join(workspace, 'docker', 'dashboard.Dockerfile'), 'utf8');
  const cmd = JSON.parse(/^CMD (\[.*\])$/m.exec(dockerfile)![1]!) as string[];
  const image = parseDashboardOptions(cmd, {}, '/var/lib/amime');
  assert.ok(isExposed(image.host));
  assert.match(dockerfile, new RegExp(`^EXPOSE ${image.port}$`, 'm'));
});

test('Prometheus scrapes the CA and the control plane at the metrics address their commands bind', () => {
  const doc = parse(files['docker/compose.yaml']!) as { services: Record<string, { command: string[] }> };
  const prometheus = files['docker/compose/prometheus.yml']!;
  for (const [service, address] of [['ca', ADDRESSES.ca], ['control-plane', ADDRESSES.controlPlane]] as const) {
    const cmd = doc.services[service]!.command;
    const flag = (f: string) => cmd[cmd.indexOf(f) + 1];
    assert.equal(flag('--metrics-host'), '0.0.0.0', `${service} serves /metrics beyond its loopback`);
    assert.ok(prometheus.includes(`- targets: ['${address}:${flag('--metrics-port')}']`), `prometheus.yml scrapes ${service} at ${address}:${flag('--metrics-port')}`);
  }
  assert.match(prometheus, /job_name: ca\n/);
});
