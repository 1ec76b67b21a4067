// The client as a package: what "npm pack" makes installs into a new
// project without a registry, and works there under its name.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtemp, mkdir, writeFile, readFile, rm, access } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startFakeGateway } from './testing/fake-gateway.mjs';

const run = promisify(execFile);
const here = fileURLToPath(new URL('.', import.meta.url));

// app is the scratch project's module: it imports the package by its name,
// logs in at the fake gateway and makes one call.
const app = `
import { createClient, parseChallenge } from '@spa-gateway/client';
const c = createClient({ baseURL: process.argv[2], delivery: 'bearer', channel: null, locks: null });
await c.login('demo', 'demo');
const res = await c.fetch('/api/hello');
c.close();
console.log(JSON.stringify({
  status: res.status,
  resolved: import.meta.resolve('@spa-gateway/client'),
  parse: typeof parseChallenge,
}));
`;

test('npm pack yields a package that installs offline and works by its name', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'gateway-client-pack-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  // Its own npm cache: nothing cached elsewhere helps the offline install.
  const env = { ...process.env, npm_config_cache: join(dir, 'npm-cache'), npm_config_update_notifier: 'false' };

  const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', dir], { cwd: here, env });
  const [packed] = JSON.parse(stdout);
  assert.deepEqual(packed.files.map((f) => f.path).sort(),
    ['README.md', 'gateway-client.d.ts', 'gateway-client.js', 'package.json']);

  const project = join(dir, 'app');
  await mkdir(project);
  await writeFile(join(project, 'package.json'), JSON.stringify({ name: 'scratch-app', private: true, type: 'module' }));
  await writeFile(join(project, 'app.mjs'), app);
  await run('npm', ['install', '--offline', '--no-audit', '--no-fund', '--ignore-scripts', join(dir, packed.filename)],
    { cwd: project, env });
  const installed = join(project, 'node_modules', '@spa-gateway', 'client');
  await access(join(installed, 'gateway-client.d.ts'));
  await access(join(installed, 'README.md'));
  const types = await readFile(join(installed, 'gateway-client.d.ts'), 'utf8');
  assert.match(types, /export function createClient\(/);

  const gw = await startFakeGateway({ delivery: 'bearer' });
  t.after(() => gw.close());
  const out = await run(process.execPath, ['app.mjs', gw.url], { cwd: project, env });
  const got = JSON.parse(out.stdout);
  assert.equal(got.status, 200);
  assert.equal(got.parse, 'function');
  assert.ok(got.resolved.includes('/node_modules/@spa-gateway/client/'), `resolved to ${got.resolved}, want the installed copy`);
});
