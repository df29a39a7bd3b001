// Prepares the build context of docker/*.Dockerfile in dist/docker/context:
//   apps/<app>/          every app's bundle (each project's own build command,
//                        run here directly, not through nx)
//   node_modules/        the production packages the ca, control-plane, meshctl
//                        and dashboard bundles leave external (prom-client, etcd3
//                        with its gRPC stack, ws, yaml, ...), from this checkout
//   docker/*.Dockerfile  copies, for builders that want the Dockerfile inside the context
// A small context on purpose: no sources, no dev packages, no var/ (CA keys).
// No registry is needed while the images build, so they build the same with
// Docker and with podman here.
//
//   node tools/scripts/docker-context.mjs     (after npm ci)
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';

const workspace = resolve(import.meta.dirname, '../..');
const DOCKER_APPS = ['ca', 'control-plane', 'agent', 'meshctl', 'dashboard', 'demo-web', 'demo-catalog', 'demo-inventory', 'demo-reviews'];
const env = { ...process.env, PATH: `${join(workspace, 'node_modules', '.bin')}:${process.env.PATH ?? ''}` };

function fail(message) {
  process.stderr.write(`docker-context: ${message}\n`);
  process.exit(1);
}

for (const app of DOCKER_APPS) {
  const project = JSON.parse(readFileSync(join(workspace, 'apps', app, 'project.json'), 'utf8'));
  const command = project.targets?.build?.options?.command;
  if (typeof command !== 'string') fail(`apps/${app}/project.json has no build command`);
  const r = spawnSync(command, { cwd: workspace, shell: true, env, encoding: 'utf8', timeout: 180_000 });
  if (r.status !== 0) fail(`building ${app} (${command}) failed:\n${r.stdout}${r.stderr}`);
  process.stderr.write(`docker-context: built dist/apps/${app}\n`);
}

// The production dependency closure, as npm resolved it; workspace packages are bundled, not copied.
const ls = spawnSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: workspace, env, encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
if (ls.error) fail(`npm ls: ${ls.error.message}`);
const modules = join(workspace, 'node_modules');
const dirs = ls.stdout
  .split('\n')
  .filter((p) => p.startsWith(`${modules}/`))
  .map((p) => relative(modules, p))
  .filter((p) => !p.startsWith('@amime/'));
if (dirs.length === 0) fail(`npm ls listed no production packages: ${ls.stderr}`);
const context = join(workspace, 'dist', 'docker', 'context');
rmSync(context, { recursive: true, force: true });
const out = join(context, 'node_modules');
mkdirSync(out, { recursive: true });
for (const app of DOCKER_APPS) cpSync(join(workspace, 'dist', 'apps', app), join(context, 'apps', app), { recursive: true });
cpSync(join(workspace, 'docker'), join(context, 'docker'), { recursive: true, filter: (src) => !src.includes('/compose') });
// Nested copies (a/node_modules/b) come along with their parent.
for (const d of dirs.filter((x) => !x.includes('/node_modules/'))) cpSync(join(modules, d), join(out, d), { recursive: true, dereference: true });
process.stderr.write(`docker-context: ${relative(workspace, context)}: ${DOCKER_APPS.length} bundles, ${dirs.length} production packages\n`);
