// End-to-end tests of DPoP-bound sessions (RFC 9449) in headless Chromium
// (Debian's /usr/bin/chromium, driven by playwright-core) against the real
// gateway binary of serve --dev: the demo page logs in with a proof of a
// non-extractable key kept in IndexedDB; the token and the cookie copied
// out of the browser are replayed from Node, without the key and with
// another key, and refused; the page keeps working, across a reload and in
// two tabs. The screenshot is saved to client/test-artifacts/dpop.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseChallenge } from '../gateway-client.js';
import { artifacts, skip, buildGateway, startGateway, stop, launchChromium, refreshes as refreshesAt } from './harness.mjs';

// Long enough that a refresh's new token outlives two tabs' calls on a
// slow machine, so that "one refresh" can be asserted exactly.
const ACCESS_TTL_MS = 4000;

let dir, gw, base, admin, context;

before(async () => {
  if (skip) return;
  dir = mkdtempSync(path.join(tmpdir(), 'gateway-e2e-dpop-'));
  gw = await startGateway(buildGateway(dir), ['serve', '--dev', '--listen', '127.0.0.1:0',
    '--admin-listen', '127.0.0.1:0', '--dev-access-ttl', `${ACCESS_TTL_MS}ms`]);
  ({ base, admin } = gw);
  context = await launchChromium(dir, { width: 900, height: 1400 });
});

after(async () => {
  await context?.close();
  await stop(gw?.proc);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const refreshes = (result) => refreshesAt(admin, result);

async function callAPI(page) {
  await page.evaluate(() => { delete document.getElementById('call').dataset.status; });
  await page.click('#call');
  await page.waitForSelector('#call[data-status]');
  return Number(await page.getAttribute('#call', 'data-status'));
}

/** ownSessions lists the page's sessions through its client (with a proof). */
function ownSessions(page) {
  return page.evaluate(async () => {
    const res = await window.gatewayClient.fetch('/auth/sessions');
    return { status: res.status, list: res.ok ? await res.json() : null };
  });
}

function claimsOf(jwt) {
  return JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url'));
}

const b64url = (b) => Buffer.from(b).toString('base64url');
const sha256 = async (text) => b64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text)));

/** thiefKey is another P-256 key, made in Node: what a thief who has no access to the browser's key can sign with. */
async function thiefKey() {
  const pair = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
  const { crv, kty, x, y } = await crypto.subtle.exportKey('jwk', pair.publicKey);
  return async (method, url, token) => {
    const header = b64url(JSON.stringify({ typ: 'dpop+jwt', alg: 'ES256', jwk: { crv, kty, x, y } }));
    const claims = { jti: b64url(crypto.getRandomValues(new Uint8Array(16))), htm: method, htu: url, iat: Math.floor(Date.now() / 1000) };
    if (token) claims.ath = await sha256(token);
    const input = `${header}.${b64url(JSON.stringify(claims))}`;
    const sig = await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, pair.privateKey, new TextEncoder().encode(input));
    return `${input}.${b64url(sig)}`;
  };
}

test('DPoP-bound sessions in Chromium: the key, a thief, a reload, two tabs, other devices', { skip }, async (t) => {
  const pageErrors = [];
  const watch = (p) => p.on('pageerror', (err) => pageErrors.push(err.message));
  const page = context.pages()[0] ?? await context.newPage();
  watch(page);
  let jkt, token, cookie;

  await t.test('two tabs starting together create one key', async () => {
    // A fresh profile: no key yet. Both pages load at once and both ask
    // for the key at start (the page shows its thumbprint).
    const second = await context.newPage();
    watch(second);
    await Promise.all([page.goto(`${base}/`), second.goto(`${base}/`)]);
    const shown = (p) => p.waitForFunction(() => /^[A-Za-z0-9_-]{43}$/.test(document.getElementById('key').textContent))
      .then(() => p.textContent('#key'));
    const [a, b] = await Promise.all([shown(page), shown(second)]);
    assert.equal(a, b, 'both tabs sign with the same key');
    const records = await page.evaluate(() => new Promise((resolve, reject) => {
      const open = indexedDB.open('spa-gateway-client');
      open.onerror = () => reject(open.error);
      open.onsuccess = () => {
        const req = open.result.transaction('dpop-keys').objectStore('dpop-keys').count();
        req.onsuccess = () => { open.result.close(); resolve(req.result); };
      };
    }));
    assert.equal(records, 1, 'key records in IndexedDB');
    await second.close();
  });

  await t.test('a login through the page binds the session to the key', async () => {
    await page.fill('#username', 'demo');
    await page.fill('#password', 'demo');
    await page.click('#login');
    await page.waitForFunction(() => document.getElementById('status').textContent === 'logged in as demo');
    assert.equal(await page.evaluate(() => window.gatewayClient.bound), true, 'token_type DPoP');
    const thumbprint = await page.evaluate(() => window.gatewayClient.thumbprint());
    token = await page.evaluate(() => window.demo.token());
    jkt = claimsOf(token).cnf?.jkt;
    assert.equal(jkt, thumbprint, 'cnf.jkt is the thumbprint of the browser\'s key');
    await page.waitForSelector('#bound[data-bound="true"]');
    assert.equal(await page.textContent('#jkt'), jkt);
    cookie = (await context.cookies()).find((c) => c.name === '__Host-gateway')?.value;
    assert.ok(cookie, 'no __Host-gateway cookie');
    // serve --dev made one more session of demo at start, for its curl tour.
    const { status, list } = await ownSessions(page);
    assert.equal(status, 200);
    assert.deepEqual(list.map((s) => [s.current, s.bound]), [[false, false], [true, true]], 'GET /auth/sessions: the current one bound');
    assert.equal(await callAPI(page), 200);
  });

  await t.test('the private key cannot be exported, even by the page', async () => {
    const got = await page.evaluate(() => new Promise((resolve, reject) => {
      const open = indexedDB.open('spa-gateway-client');
      open.onerror = () => reject(open.error);
      open.onsuccess = () => {
        const req = open.result.transaction('dpop-keys').objectStore('dpop-keys').get('default');
        req.onsuccess = async () => {
          open.result.close();
          const { privateKey, publicKey } = req.result;
          const out = { extractable: privateKey.extractable, usages: privateKey.usages, algorithm: privateKey.algorithm, exports: [] };
          for (const format of ['jwk', 'pkcs8']) {
            try {
              await crypto.subtle.exportKey(format, privateKey);
              out.exports.push(`${format}: exported`);
            } catch (err) {
              out.exports.push(`${format}: ${err.name}`);
            }
          }
          out.publicJWK = Object.keys(await crypto.subtle.exportKey('jwk', publicKey)).sort();
          resolve(out);
        };
      };
    }));
    assert.equal(got.extractable, false);
    assert.deepEqual(got.usages, ['sign']);
    // Chromium has Ed25519 in WebCrypto: the client's preferred key.
    assert.deepEqual(got.algorithm, { name: 'Ed25519' });
    assert.deepEqual(got.exports, ['jwk: InvalidAccessError', 'pkcs8: InvalidAccessError']);
    assert.ok(!got.publicJWK.includes('d'), 'the public key holds no private part');
  });

  await t.test('the page\'s own replay without the key is refused', async () => {
    await page.click('#steal');
    await page.waitForSelector('#steal[data-statuses]');
    assert.equal(await page.getAttribute('#steal', 'data-statuses'), '401,401');
  });

  await t.test('a thief with the token or the cookie, without the key, gets nothing', async () => {
    const otherKey = await thiefKey();
    const api = `${base}/api/hello`;
    const xrw = { 'X-Requested-With': 'XMLHttpRequest' };
    const jar = { Cookie: `__Host-gateway=${cookie}`, ...xrw };
    const send = async (url, method, headers) => {
      const res = await fetch(url, { method, headers });
      return { status: res.status, challenge: res.headers.get('WWW-Authenticate') || '', error: parseChallenge(res.headers.get('WWW-Authenticate')).error };
    };
    const attempts = (url, method, expired) => [
      { name: 'DPoP token, no proof', headers: { Authorization: `DPoP ${token}` }, error: 'invalid_dpop_proof' },
      { name: 'Bearer token', headers: { Authorization: `Bearer ${token}` }, error: 'invalid_token', unlessExpired: true },
      { name: 'cookie, no proof', headers: jar, error: 'invalid_dpop_proof' },
      { name: 'DPoP token, another key\'s proof', headers: async () => ({ Authorization: `DPoP ${token}`, DPoP: await otherKey(method, url, token) }), error: 'invalid_dpop_proof' },
      { name: 'cookie, another key\'s proof', headers: async () => ({ ...jar, DPoP: await otherKey(method, url) }), error: 'invalid_dpop_proof' },
    ].filter((a) => !(expired && a.unlessExpired));
    const run = async (what, url, method, expired) => {
      for (const a of attempts(url, method, expired)) {
        const headers = typeof a.headers === 'function' ? await a.headers() : a.headers;
        const got = await send(url, method, headers);
        assert.equal(got.status, 401, `${what}, ${a.name}: ${JSON.stringify(got)}`);
        assert.match(got.challenge, /^DPoP /, `${what}, ${a.name}: the DPoP scheme`);
        assert.equal(got.error, a.error, `${what}, ${a.name}: ${got.challenge}`);
      }
    };
    const successBefore = await refreshes('success');
    await run('GET /api/hello', api, 'GET', false);
    await sleep(ACCESS_TTL_MS + 300); // a refresh needs an expired token
    await run('POST /auth/refresh', `${base}/auth/refresh`, 'POST', true);
    await run('POST /auth/logout', `${base}/auth/logout`, 'POST', true);
    assert.equal(await refreshes('success'), successBefore, 'no refresh for the thief');

    // The page's session is untouched: its next call refreshes (with its
    // key) and succeeds, and the session is still listed, still bound.
    assert.equal(await callAPI(page), 200);
    assert.equal(await refreshes('success'), successBefore + 1);
    const { status, list } = await ownSessions(page);
    assert.equal(status, 200);
    assert.deepEqual(list.map((s) => [s.current, s.bound]), [[false, false], [true, true]]);
    assert.equal(await refreshes('reuse_detected'), 0);
  });

  await t.test('a reload keeps the session: the key comes back from IndexedDB', async () => {
    await page.reload();
    await page.waitForFunction(() => document.getElementById('key').textContent.length === 43);
    assert.equal(await page.textContent('#key'), jkt, 'same thumbprint after the reload');
    assert.equal(await callAPI(page), 200, 'no new login');
    await sleep(ACCESS_TTL_MS + 300);
    assert.equal(await callAPI(page), 200, 'a refresh after the reload, with the stored key');
    assert.equal(claimsOf(await page.evaluate(() => window.demo.token())).cnf?.jkt, jkt, 'the refreshed token stays bound');
  });

  await t.test('two tabs share one key and one refresh', async () => {
    const second = await context.newPage();
    watch(second);
    t.after(() => second.close());
    await second.goto(`${base}/`);
    assert.equal(await second.evaluate(() => window.gatewayClient.thumbprint()), jkt);
    const refreshCalls = [];
    const count = (req) => { if (req.url().endsWith('/auth/refresh')) refreshCalls.push(req.headers().dpop); };
    context.on('request', count);
    t.after(() => context.off('request', count));
    const before = await refreshes('success');
    await sleep(ACCESS_TTL_MS + 300);
    const call = (p) => p.evaluate(() => Promise.all([1, 2, 3].map(() => window.gatewayClient.fetch('/api/hello').then((r) => r.status))));
    const [a, b] = await Promise.all([call(page), call(second)]);
    assert.deepEqual([a, b], [[200, 200, 200], [200, 200, 200]]);
    assert.equal(await refreshes('success') - before, 1, 'one refresh for both tabs');
    assert.equal(refreshCalls.length, 1, 'POST /auth/refresh requests seen by the browser');
    assert.ok(refreshCalls[0], 'the refresh carried a proof');
    assert.equal(await refreshes('reuse_detected'), 0);
  });

  await t.test('the sessions list ends one session, and "log out other devices" the rest', async () => {
    const loginElsewhere = async () => {
      const res = await fetch(`${base}/auth/login`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'X-Requested-With': 'XMLHttpRequest', 'User-Agent': 'other-device' },
        body: JSON.stringify({ username: 'demo', password: 'demo' }),
      });
      assert.equal(res.status, 200);
      return (await res.json()).access_token;
    };
    const rows = () => page.$$eval('#sessions tbody tr', (trs) => trs.map((tr) => tr.dataset.id || ''));
    const listed = async (n) => {
      await page.evaluate(() => { delete document.getElementById('sessions').dataset.count; });
      await page.click('#list-sessions');
      await page.waitForSelector('#sessions[data-count]');
      assert.equal(Number(await page.getAttribute('#sessions', 'data-count')), n);
    };

    const one = await loginElsewhere();
    const two = await loginElsewhere();
    await listed(4); // with the tour's
    // The list is the store's: an ended session leaves it (its access
    // token would pass proxied requests until it expires, unless
    // every_request, so the list is what tells).
    const [sid, sid2] = [claimsOf(one).sid, claimsOf(two).sid];
    assert.ok((await rows()).includes(sid), `session ${sid} not listed`);
    await page.evaluate(() => { delete document.getElementById('sessions').dataset.count; });
    await page.click(`#sessions tr[data-id="${sid}"] button`);
    await page.waitForSelector('#sessions[data-count]'); // the list after the End
    assert.ok(!(await rows()).includes(sid), `ended session ${sid} still listed`);
    assert.ok((await rows()).includes(sid2), 'the other one is still live');
    assert.equal((await rows()).length, 3);

    mkdirSync(artifacts, { recursive: true });
    await page.screenshot({ path: path.join(artifacts, 'dpop.png'), fullPage: true });

    await page.click('#logout-others');
    await page.waitForFunction(() => document.getElementById('sessions').dataset.count === '1');
    assert.ok(!(await rows()).includes(sid2), 'logged out as another device');
    const { list } = await ownSessions(page);
    assert.deepEqual(list.map((s) => s.current), [true], 'this one stays');
    assert.equal(await callAPI(page), 200);
  });

  assert.deepEqual(pageErrors, []);
});
