// End-to-end test of the OpenID Connect login in headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core; no browser download): the
// real gateway binary with [login.oidc], the real OpenID Provider of the Go
// tests (the zitadel example OP, found as auth/oidctest finds it: env
// OIDC_OP_BIN, else $(go env GOPATH)/bin/server, else go install), and a
// page of ours behind the gateway. The browser goes to /auth/oidc/login,
// fills the provider's own login page, lands back on our page logged in,
// and the page's proxied call shows the provider's subject. The screenshot
// is saved to client/test-artifacts/oidc.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, existsSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir, homedir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { artifacts, skip, buildGateway, startGateway, stop, launchChromium } from './harness.mjs';

const OP_MODULE = 'github.com/zitadel/oidc/v3/example/server@v3.52.0';
const ALICE = { id: 'alice-id-7f3a', username: 'alice', password: 'alice-secret-pw' };

let dir, gw, op, upstream, base, context, opLog = '';

/** freePort returns a loopback port that was free a moment ago. */
async function freePort() {
  const srv = createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

/** opBinary finds or installs the example OP, as auth/oidctest does. */
function opBinary() {
  if (process.env.OIDC_OP_BIN) return process.env.OIDC_OP_BIN;
  const gopath = execFileSync('go', ['env', 'GOPATH'], { encoding: 'utf8' }).trim();
  for (const d of gopath.split(path.delimiter)) {
    if (existsSync(path.join(d, 'bin', 'server'))) return path.join(d, 'bin', 'server');
  }
  const gobin = path.join(process.env.XDG_CACHE_HOME || path.join(homedir(), '.cache'), 'spa-gateway-oidctest');
  if (!existsSync(path.join(gobin, 'server'))) {
    execFileSync('go', ['install', OP_MODULE], { env: { ...process.env, GOBIN: gobin }, stdio: 'inherit' });
  }
  return path.join(gobin, 'server');
}

async function waitFor(what, f, ms = 20_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      if (await f()) return;
    } catch { /* not yet */ }
    if (Date.now() > deadline) throw new Error(`${what} not within ${ms} ms:\n${gw?.log ?? ''}\n${opLog}`);
    await sleep(100);
  }
}

before(async () => {
  if (skip) return;
  dir = mkdtempSync(path.join(tmpdir(), 'gateway-oidc-e2e-'));
  const bin = buildGateway(dir);
  execFileSync(bin, ['keygen', '--alg', 'EdDSA', '--out', path.join(dir, 'signing.pem')]);

  // Our app: a page that calls the API through the gateway, and the API,
  // which answers the identity the gateway injected.
  upstream = createServer((req, res) => {
    if (req.url.startsWith('/api/')) {
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify({ subject: req.headers['x-auth-subject'] ?? null }));
      return;
    }
    res.setHeader('Content-Type', 'text/html');
    res.end(`<!doctype html><title>app</title><p id="who">loading</p><script>
      fetch('/api/whoami').then((r) => r.json()).then((b) => {
        document.getElementById('who').textContent = 'subject: ' + b.subject;
      }, (e) => { document.getElementById('who').textContent = 'error: ' + e; });
    </script>`);
  });
  await new Promise((r) => upstream.listen(0, '127.0.0.1', r));

  const gwPort = await freePort();
  const opPort = await freePort();
  base = `http://127.0.0.1:${gwPort}`;
  writeFileSync(path.join(dir, 'users.json'), JSON.stringify({
    [ALICE.id]: { ID: ALICE.id, Username: ALICE.username, Password: ALICE.password, FirstName: 'Alice',
      LastName: 'Example', Email: 'alice@example.com', EmailVerified: true, PreferredLanguage: 'en' },
  }));
  op = spawn(opBinary(), [], {
    env: { ...process.env, PORT: String(opPort), USERS_FILE: path.join(dir, 'users.json'),
      REDIRECT_URI: `${base}/auth/oidc/callback` },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  op.stdout.on('data', (c) => { opLog += c; });
  op.stderr.on('data', (c) => { opLog += c; });
  const issuer = `http://localhost:${opPort}/`;
  await waitFor('the OP', async () => (await fetch(`${issuer}.well-known/openid-configuration`)).ok);

  writeFileSync(path.join(dir, 'oidc-secret'), 'secret\n');
  const up = `http://127.0.0.1:${upstream.address().port}`;
  writeFileSync(path.join(dir, 'gateway.toml'), `
[server]
listen = "127.0.0.1:${gwPort}"
[admin]
listen = "127.0.0.1:0"
[tokens]
key_file = "signing.pem"
delivery = "cookie"
[store]
path = "sessions.db"
[login.oidc]
issuer = "${issuer}"
client_id = "web"
client_secret_file = "oidc-secret"
scopes = ["openid", "profile", "email", "offline_access"]
redirect_url = "${base}/auth/oidc/callback"
[[route]]
prefix = "/api/"
upstream = "${up}"
[[route]]
prefix = "/app/"
upstream = "${up}"
auth = "none"
`);
  gw = await startGateway(bin, ['serve', '--config', path.join(dir, 'gateway.toml')]);
  // The gateway discovers the OP in the background: its login answers
  // 503 until then.
  await waitFor('the gateway\'s OIDC login', async () =>
    (await fetch(`${base}/auth/oidc/login`, { redirect: 'manual' })).status === 302);

  context = await launchChromium(dir, { width: 900, height: 700 });
});

after(async () => {
  await context?.close();
  await stop(gw?.proc);
  await stop(op);
  upstream?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('login through the provider\'s own page lands on our page logged in', { skip }, async () => {
  const page = await context.newPage();
  await page.goto(`${base}/auth/oidc/login?return_to=${encodeURIComponent('/app/home')}`);
  // The provider's login page (its own form, on its own origin).
  await page.waitForSelector('input[name="username"]');
  assert.match(page.url(), /^http:\/\/localhost:\d+\/login\/username/);
  await page.fill('#username', ALICE.username);
  await page.fill('#password', ALICE.password);
  await Promise.all([page.waitForURL(`${base}/app/home`), page.click('button[type="submit"]')]);
  await page.waitForFunction(() => document.getElementById('who')?.textContent !== 'loading');
  assert.equal(await page.textContent('#who'), `subject: ${ALICE.id}`, `gateway log:\n${gw.log}`);

  // The token is an HttpOnly cookie: the page cannot read it, and no
  // provider token reached the browser at all.
  assert.equal(await page.evaluate(() => document.cookie), '');
  const cookies = await context.cookies();
  const names = cookies.map((c) => c.name).sort();
  assert.deepEqual(names, ['__Host-gateway'], `cookies: ${JSON.stringify(cookies)}`);

  mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: path.join(artifacts, 'oidc.png') });
  await page.close();
});
