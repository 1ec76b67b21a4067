// End-to-end tests of CORS in headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core) against the real gateway binary, whose
// tokens.allowed_origins lists two page origins served by this test:
//
//   - http://127.0.0.1:PORT_A, another origin of the same site as the
//     gateway (http://127.0.0.1:PORT_GW: the port makes the origin, not
//     the site), the usual app.example.com → api.example.com case. Its
//     page uses fetch with credentials: 'include' and cookie delivery:
//     the __Host- cookie (Secure, which Chromium stores and sends over
//     http to loopback hosts; SameSite=Strict, which same-site requests
//     carry) is set by the login and is the only credential sent.
//   - http://localhost:PORT_B, another site: a SameSite=Strict cookie is
//     never sent to the gateway from there, so its page uses the client
//     module with bearer delivery (the gateway delivers "both").
//
// Each logs in, calls a route with cors = true, waits out the 2-second
// access token and refreshes, reading every answer. A page from a third
// origin, http://127.0.0.1:PORT_C, not allowed, sees its fetches fail with
// a TypeError, and neither its preflights nor the requests they guard
// reach the upstream.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { repo, skip, buildGateway, startGateway, stop, launchChromium } from './harness.mjs';

const ACCESS_TTL_MS = 2000;

let dir, gw, base, context;
const servers = [];
// Every request the upstream saw: method, path, Origin, injected subject.
const seen = [];
let upstream, pageA, pageB, pageC; // origins

/** listen starts server on 127.0.0.1 and returns its port. */
async function listen(server) {
  servers.push(server);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server.address().port;
}

/** pageServer serves a blank page and the client module. */
function pageServer() {
  const module = readFileSync(path.join(repo, 'client', 'gateway-client.js'));
  return createServer((req, res) => {
    if (req.url === '/gateway-client.js') {
      res.writeHead(200, { 'Content-Type': 'text/javascript' });
      res.end(module);
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><title>another origin</title><p>app</p>');
  });
}

before(async () => {
  if (skip) return;
  dir = mkdtempSync(path.join(tmpdir(), 'gateway-e2e-cors-'));
  const bin = buildGateway(dir);
  execFileSync(bin, ['keygen', '--alg', 'EdDSA', '--out', path.join(dir, 'signing.pem')]);
  const line = execFileSync(bin, ['hash-password', 'alice'], { input: 'wonderland\n' }).toString();
  writeFileSync(path.join(dir, 'users'), line);

  upstream = `http://127.0.0.1:${await listen(createServer((req, res) => {
    const entry = { method: req.method, path: req.url, origin: req.headers.origin ?? '', subject: req.headers['x-auth-subject'] ?? '' };
    seen.push(entry);
    res.writeHead(200, { 'Content-Type': 'application/json', 'Access-Control-Allow-Origin': '*' });
    res.end(JSON.stringify({ subject: entry.subject }));
  }))}`;
  pageA = `http://127.0.0.1:${await listen(pageServer())}`;
  pageB = `http://localhost:${await listen(pageServer())}`;
  pageC = `http://127.0.0.1:${await listen(pageServer())}`;

  writeFileSync(path.join(dir, 'gateway.toml'), `
[server]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[log]
format = "text"
[tokens]
key_file = "signing.pem"
access_ttl = "${ACCESS_TTL_MS}ms"
refresh_grace = "1s"
delivery = "both"
allowed_origins = [${JSON.stringify(pageA)}, ${JSON.stringify(pageB)}]
[store]
path = "sessions.db"
[login]
users_file = "users"
[[route]]
prefix = "/api/"
upstream = ${JSON.stringify(upstream)}
cors = true
[[route]]
prefix = "/private/"
upstream = ${JSON.stringify(upstream)}
`);
  gw = await startGateway(bin, ['serve', '--config', path.join(dir, 'gateway.toml')], { cwd: dir });
  base = gw.base;
  context = await launchChromium(dir);
});

after(async () => {
  await context?.close();
  await stop(gw?.proc);
  for (const s of servers) s.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** open returns a new tab on origin, failing the test on any page error. */
async function open(t, origin) {
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (err) => errors.push(err.message));
  t.after(async () => {
    await page.close();
    assert.deepEqual(errors, [], `page errors on ${origin}`);
  });
  await page.goto(`${origin}/`);
  return page;
}

test('an allowed origin of the same site: login, call, refresh with the cookie', { skip }, async (t) => {
  const page = await open(t, pageA);
  const got = await page.evaluate(async ({ base, ttl }) => {
    const out = {};
    const login = await fetch(`${base}/auth/login`, {
      method: 'POST',
      credentials: 'include',
      headers: { 'Content-Type': 'application/json', 'X-Requested-With': 'XMLHttpRequest' },
      body: JSON.stringify({ username: 'alice', password: 'wonderland' }),
    });
    out.login = { status: login.status, body: await login.json() };
    // No Authorization header from here on: the cookie is the credential.
    const call = async () => {
      const res = await fetch(`${base}/api/hello`, { credentials: 'include', headers: { 'X-Requested-With': 'XMLHttpRequest' } });
      return { status: res.status, body: await res.text(), challenge: res.headers.get('WWW-Authenticate') };
    };
    out.call = await call();
    await new Promise((r) => setTimeout(r, ttl + 500));
    out.expired = await call();
    const refresh = await fetch(`${base}/auth/refresh`, {
      method: 'POST', credentials: 'include', headers: { 'X-Requested-With': 'XMLHttpRequest' },
    });
    out.refresh = { status: refresh.status, body: await refresh.json() };
    out.after = await call();
    return out;
  }, { base, ttl: ACCESS_TTL_MS });

  assert.equal(got.login.status, 200, JSON.stringify(got.login));
  assert.equal(typeof got.login.body.access_token, 'string', 'delivery "both" answers the token too');
  assert.deepEqual([got.call.status, JSON.parse(got.call.body)], [200, { subject: 'alice' }], JSON.stringify(got.call));
  assert.equal(got.expired.status, 401, JSON.stringify(got.expired));
  assert.match(got.expired.challenge, /token expired/, 'WWW-Authenticate is exposed to the page');
  assert.equal(got.refresh.status, 200, JSON.stringify(got.refresh));
  assert.deepEqual([got.after.status, JSON.parse(got.after.body)], [200, { subject: 'alice' }], JSON.stringify(got.after));

  // (Not context.cookies(base): Playwright's URL filter leaves out Secure
  // cookies of an http URL, which Chromium itself sends to loopback.)
  const cookie = (await context.cookies()).find((c) => c.name === '__Host-gateway' && c.domain === '127.0.0.1');
  assert.ok(cookie, 'the login from the other origin set the gateway\'s cookie');
  assert.deepEqual([cookie.httpOnly, cookie.secure, cookie.sameSite], [true, true, 'Strict']);
  const fromA = seen.filter((r) => r.origin === pageA);
  assert.ok(fromA.length >= 2, JSON.stringify(seen));
  assert.deepEqual(fromA.filter((r) => r.method === 'OPTIONS'), [], 'a preflight reached the upstream');
});

test('an allowed origin of another site: the client module, bearer delivery', { skip }, async (t) => {
  const page = await open(t, pageB);
  const got = await page.evaluate(async ({ base, ttl }) => {
    const { createClient } = await import('/gateway-client.js');
    const gc = createClient({ baseURL: base, delivery: 'bearer', dpop: false });
    const refreshed = [];
    gc.addEventListener('refreshed', (ev) => refreshed.push(ev.byOtherTab));
    await gc.login('alice', 'wonderland');
    const call = async () => {
      const res = await gc.fetch('/api/hello', { method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: '{}' });
      return { status: res.status, body: await res.json() };
    };
    const first = await call();
    await new Promise((r) => setTimeout(r, ttl + 500));
    const second = await call(); // 401 token expired, one refresh, one retry
    return { first, second, refreshed };
  }, { base, ttl: ACCESS_TTL_MS });

  assert.deepEqual(got.first, { status: 200, body: { subject: 'alice' } });
  assert.deepEqual(got.second, { status: 200, body: { subject: 'alice' } });
  assert.deepEqual(got.refreshed, [false], 'one refresh, by this tab');
  const fromB = seen.filter((r) => r.origin === pageB);
  assert.deepEqual(fromB.map((r) => r.method), ['PUT', 'PUT'], JSON.stringify(seen));
});

test('an allowed origin on a route without cors = true is refused by the browser', { skip }, async (t) => {
  const page = await open(t, pageA);
  const err = await page.evaluate(async (base) => {
    try {
      await fetch(`${base}/private/x`, { credentials: 'include', headers: { 'X-Requested-With': 'XMLHttpRequest' } });
      return 'no error';
    } catch (e) {
      return e.name;
    }
  }, base);
  assert.equal(err, 'TypeError');
  assert.deepEqual(seen.filter((r) => r.path.startsWith('/private/')), [], 'the upstream saw the request');
});

test('a foreign origin: the browser blocks its fetches, the upstream sees nothing', { skip }, async (t) => {
  const page = await open(t, pageC);
  const got = await page.evaluate(async (base) => {
    const attempt = async (url, init) => {
      try {
        const res = await fetch(url, init);
        return `read ${res.status}`;
      } catch (e) {
        return e.name;
      }
    };
    return {
      login: await attempt(`${base}/auth/login`, {
        method: 'POST', credentials: 'include',
        headers: { 'Content-Type': 'application/json', 'X-Requested-With': 'XMLHttpRequest' },
        body: JSON.stringify({ username: 'alice', password: 'wonderland' }),
      }),
      call: await attempt(`${base}/api/hello`, { credentials: 'include', headers: { 'X-Requested-With': 'XMLHttpRequest' } }),
      put: await attempt(`${base}/api/hello`, { method: 'PUT', credentials: 'include', body: '{}' }),
      refresh: await attempt(`${base}/auth/refresh`, { method: 'POST', credentials: 'include', headers: { 'X-Requested-With': 'XMLHttpRequest' } }),
    };
  }, base);
  assert.deepEqual(got, { login: 'TypeError', call: 'TypeError', put: 'TypeError', refresh: 'TypeError' });
  assert.deepEqual(seen.filter((r) => r.origin === pageC), [], 'the upstream saw a request of the foreign origin');
  assert.deepEqual(seen.filter((r) => r.method === 'OPTIONS'), [], 'a preflight reached the upstream');

  // The refusal is the gateway's: its preflight answer grants nothing.
  const res = await fetch(`${base}/api/hello`, {
    method: 'OPTIONS', headers: { Origin: pageC, 'Access-Control-Request-Method': 'GET', 'Access-Control-Request-Headers': 'x-requested-with' },
  });
  assert.equal(res.status, 204);
  assert.equal(res.headers.get('access-control-allow-origin'), null);
});
