import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createClient, parseChallenge } from './gateway-client.js';
import { startFakeGateway, cookieJarFetch, memoryLocks, channelHub } from './testing/fake-gateway.mjs';

async function gateway(t, opts) {
  const gw = await startFakeGateway(opts);
  t.after(() => gw.close());
  return gw;
}

function client(t, opts) {
  const c = createClient({ channel: null, locks: null, ...opts });
  t.after(() => c.close());
  return c;
}

test('parseChallenge', () => {
  const tests = [
    { name: 'none', header: null, want: { error: '', description: '' } },
    { name: 'no error', header: 'Bearer realm="gateway"', want: { error: '', description: '' } },
    {
      name: 'expired',
      header: 'Bearer realm="gateway", error="invalid_token", error_description="token expired"',
      want: { error: 'invalid_token', description: 'token expired' },
    },
  ];
  for (const tt of tests) {
    assert.deepEqual(parseChallenge(tt.header), tt.want, tt.name);
  }
});

test('bearer delivery keeps the token in memory only and sends it', async (t) => {
  const gw = await gateway(t, { delivery: 'bearer' });
  const stored = [];
  const storage = { setItem: (k, v) => stored.push([k, v]), getItem: () => null, removeItem() {} };
  globalThis.localStorage = storage;
  globalThis.sessionStorage = storage;
  t.after(() => { delete globalThis.localStorage; delete globalThis.sessionStorage; });

  const c = client(t, { baseURL: gw.url, delivery: 'bearer', now: () => 1_000_000 });
  await c.login('demo', 'demo');
  const res = await c.fetch('/api/hello');
  assert.equal(res.status, 200);
  const [token] = gw.tokens.keys();
  assert.equal(gw.seen.at(-1).authorization, `Bearer ${token}`);
  assert.deepEqual(stored, [], 'nothing written to Web Storage');
  assert.ok(!JSON.stringify(Object.keys(c)).includes(token), 'token not exposed as a property');
  assert.equal(c.timeLeft(), 3600);
});

test('cookie delivery sends X-Requested-With and no Authorization', async (t) => {
  const gw = await gateway(t, { delivery: 'cookie' });
  const jar = { value: '' };
  const c = client(t, { baseURL: gw.url, delivery: 'cookie', fetch: cookieJarFetch(jar) });
  await c.login('demo', 'demo');
  assert.notEqual(jar.value, '');
  const res = await c.fetch('/api/hello', { method: 'POST', body: 'x' });
  assert.equal(res.status, 200);
  const last = gw.seen.at(-1);
  assert.equal(last.authorization, '');
  assert.equal(last.xrw, 'XMLHttpRequest');
});

test('the credentials option applies to every request to the gateway', async (t) => {
  const gw = await gateway(t, { delivery: 'cookie' });
  const jar = { value: '' };
  const inner = cookieJarFetch(jar);
  const modes = [];
  const fetch = (req) => { modes.push([new URL(req.url).pathname, req.credentials]); return inner(req); };
  const c = client(t, { baseURL: gw.url, delivery: 'cookie', fetch, credentials: 'include' });
  await c.login('demo', 'demo');
  await c.fetch('/api/hello');
  await c.fetch('/api/hello', { credentials: 'omit' });
  await c.logout();
  assert.deepEqual(modes, [['/auth/login', 'include'], ['/api/hello', 'include'], ['/api/hello', 'omit'], ['/auth/logout', 'include']]);
});

test('logout of a session of an OpenID Provider hands the app its end-session URL', async (t) => {
  const url = 'https://idp.example/end_session?id_token_hint=x&state=y';
  const gw = await gateway(t, { delivery: 'bearer', endSessionURL: url });
  const c = client(t, { baseURL: gw.url, delivery: 'bearer' });
  await c.login('demo', 'demo');
  const ended = new Promise((resolve) => c.addEventListener('sessionended', resolve, { once: true }));
  assert.equal(await c.logout(), true, '200 with end_session_url is a logout that succeeded');
  const ev = await ended;
  assert.equal(ev.reason, 'logout');
  assert.equal(ev.endSessionURL, url);
  assert.equal(ev.detail.endSessionURL, url);
});

test('an expired token is refreshed once and the request retried once', async (t) => {
  const tests = [
    { name: 'retry succeeds', apiAlwaysExpired: false, wantStatus: 200, wantAPI: 2, wantRefresh: 1 },
    { name: 'still expired after the refresh: no second refresh nor retry', apiAlwaysExpired: true, wantStatus: 401, wantAPI: 2, wantRefresh: 1 },
  ];
  for (const tt of tests) {
    await t.test(tt.name, async (t) => {
      const gw = await gateway(t, { delivery: 'bearer' });
      const c = client(t, { baseURL: gw.url, delivery: 'bearer' });
      await c.login('demo', 'demo');
      gw.expire();
      gw.setAPIAlwaysExpired(tt.apiAlwaysExpired);
      const res = await c.fetch('/api/hello', { method: 'PUT', body: 'payload' });
      assert.equal(res.status, tt.wantStatus);
      assert.equal(gw.counts.api, tt.wantAPI, 'API calls');
      assert.equal(gw.counts.refresh, tt.wantRefresh, 'refreshes');
      if (tt.wantStatus === 200) {
        assert.equal((await res.json()).body, 'payload', 'the retry resends the body');
      }
    });
  }
});

test('concurrent requests share one refresh', async (t) => {
  const gw = await gateway(t, { delivery: 'bearer' });
  const c = client(t, { baseURL: gw.url, delivery: 'bearer' });
  await c.login('demo', 'demo');
  gw.expire();
  let refreshed = 0;
  c.addEventListener('refreshed', (ev) => { if (!ev.byOtherTab) refreshed++; });
  const res = await Promise.all(Array.from({ length: 8 }, () => c.fetch('/api/hello')));
  assert.equal(refreshed, 1, 'refreshed events');
  assert.deepEqual(res.map((r) => r.status), Array(8).fill(200));
  assert.equal(gw.counts.refresh, 1);
  assert.equal(gw.counts.reuse, 0);
});

test('two tabs sharing a cookie refresh once under the lock', async (t) => {
  const tests = [{ name: 'cookie', delivery: 'cookie' }];
  for (const tt of tests) {
    await t.test(tt.name, async (t) => {
      const gw = await gateway(t, { delivery: tt.delivery });
      const jar = { value: '' };
      const locks = memoryLocks();
      const join = channelHub();
      const opts = { baseURL: gw.url, delivery: tt.delivery, fetch: cookieJarFetch(jar), locks };
      const a = createClient({ ...opts, channel: join() });
      const b = createClient({ ...opts, channel: join() });
      await a.login('demo', 'demo');
      gw.expire();
      const res = await Promise.all([a.fetch('/api/a'), b.fetch('/api/b'), a.fetch('/api/a2'), b.fetch('/api/b2')]);
      assert.deepEqual(res.map((r) => r.status), [200, 200, 200, 200]);
      assert.equal(gw.counts.refresh, 1, 'refreshes');
      assert.equal(gw.counts.reuse, 0, 'reuse detected');
      assert.equal(locks.maxHeld, 1);
    });
  }
});

test('cookie tabs: a login in one is the other\'s, a logout in one ends both', async (t) => {
  const gw = await gateway(t, { delivery: 'cookie' });
  const jar = { value: '' };
  const join = channelHub();
  const opts = { baseURL: gw.url, delivery: 'cookie', fetch: cookieJarFetch(jar), locks: memoryLocks() };
  const a = createClient({ ...opts, channel: join() });
  const b = createClient({ ...opts, channel: join() });
  t.after(() => { a.close(); b.close(); });
  const got = [];
  for (const [name, c] of [['a', a], ['b', b]]) {
    c.addEventListener('loggedin', (ev) => got.push(`${name} loggedin ${ev.byOtherTab}`));
    c.addEventListener('sessionended', (ev) => got.push(`${name} ended ${ev.reason}`));
  }
  assert.equal(b.timeLeft(), null);
  await a.login('demo', 'demo');
  await new Promise((r) => setTimeout(r, 10));
  assert.ok(b.timeLeft() > 0, `b.timeLeft() = ${b.timeLeft()}`);
  await a.logout();
  await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(got, ['a loggedin false', 'b loggedin true', 'a ended logout', 'b ended logout']);
  assert.equal(b.timeLeft(), null);
});

test('bearer tabs: a login is not broadcast', async (t) => {
  const gw = await gateway(t, { delivery: 'bearer' });
  const join = channelHub();
  const a = createClient({ baseURL: gw.url, delivery: 'bearer', locks: null, channel: join() });
  const b = createClient({ baseURL: gw.url, delivery: 'bearer', locks: null, channel: join() });
  t.after(() => { a.close(); b.close(); });
  let heard = 0;
  b.addEventListener('loggedin', () => heard++);
  await a.login('demo', 'demo');
  await new Promise((r) => setTimeout(r, 10));
  assert.equal(heard, 0);
  assert.equal(b.timeLeft(), null);
});

test('bearer tabs: the refreshing tab broadcasts the new token', async (t) => {
  const gw = await gateway(t, { delivery: 'bearer' });
  const join = channelHub();
  const a = createClient({ baseURL: gw.url, delivery: 'bearer', locks: memoryLocks(), channel: join() });
  const b = createClient({ baseURL: gw.url, delivery: 'bearer', locks: null, channel: join() });
  // b has no token of a's session: a's broadcast must not give it one.
  await a.login('demo', 'demo');
  gw.expire();
  assert.equal((await a.fetch('/api/a')).status, 200);
  await new Promise((r) => setTimeout(r, 10));
  assert.equal((await b.fetch('/api/b')).status, 401, 'a token reached a tab of no session');
  assert.equal(gw.seen.at(-1).authorization, '');
});

test('sessionended carries the reason', async (t) => {
  const tests = [
    { name: 'reuse detected', setup: (gw) => { gw.expire(); for (const v of gw.tokens.values()) v.rotated = true; }, act: (c) => c.fetch('/api/x'), want: 'token reuse detected' },
    { name: 'revoked', setup: (gw) => { gw.expire(); gw.revokeAll('session revoked'); }, act: (c) => c.fetch('/api/x'), want: 'session revoked' },
    { name: 'expired', setup: (gw) => { gw.expire(); gw.revokeAll('session expired'); }, act: (c) => c.fetch('/api/x'), want: 'session expired' },
    { name: 'logout', setup: () => {}, act: (c) => c.logout(), want: 'logout' },
  ];
  for (const tt of tests) {
    await t.test(tt.name, async (t) => {
      const gw = await gateway(t, { delivery: 'bearer' });
      const got = [];
      const callbacks = [];
      const c = client(t, { baseURL: gw.url, delivery: 'bearer', onSessionEnded: (r) => callbacks.push(r) });
      c.addEventListener('sessionended', (ev) => got.push(ev.reason));
      await c.login('demo', 'demo');
      tt.setup(gw);
      await tt.act(c);
      assert.deepEqual(got, [tt.want]);
      assert.deepEqual(callbacks, [tt.want]);
      assert.equal(c.timeLeft(), null);
      // After the end, requests go out without a token and end nothing twice.
      assert.equal((await c.fetch('/api/after')).status, 401);
      assert.equal(gw.seen.at(-1).authorization, '');
      assert.deepEqual(got, [tt.want]);
    });
  }
});

test('a refresh that is not the session ending does not end it', async (t) => {
  const gw = await gateway(t, { delivery: 'bearer' });
  const got = [];
  const c = client(t, { baseURL: gw.url, delivery: 'bearer', refreshEarlySeconds: 30, now: () => clock });
  let clock = 1_000_000;
  c.addEventListener('sessionended', (ev) => got.push(ev.reason));
  await c.login('demo', 'demo');
  clock += 45_000; // 15 s left of the 60 s token: within refreshEarlySeconds
  // The gateway does not allow early refreshes: "token not expired".
  assert.equal((await c.fetch('/api/x')).status, 200);
  assert.equal(gw.counts.refresh, 1);
  assert.deepEqual(got, []);
});

test('refreshes early when the gateway allows it', async (t) => {
  const gw = await gateway(t, { delivery: 'bearer', allowEarly: true });
  let clock = 1_000_000;
  const c = client(t, { baseURL: gw.url, delivery: 'bearer', refreshEarlySeconds: 30, now: () => clock });
  await c.login('demo', 'demo');
  assert.equal((await c.fetch('/api/x')).status, 200);
  assert.equal(gw.counts.refresh, 0, 'no refresh while far from expiry');
  clock += 45_000;
  gw.nearExpiry();
  gw.setRefreshExpiresIn(1800);
  assert.equal((await c.fetch('/api/x')).status, 200);
  assert.equal(gw.counts.refresh, 1);
  assert.equal(gw.counts.api, 2, 'no 401 round trip');
  assert.equal(c.timeLeft(), 1800, 'timeLeft from the refresh');
});

test('timeLeft counts down from refresh_expires_in', async (t) => {
  const gw = await gateway(t, { delivery: 'bearer' });
  let clock = 5_000;
  const c = client(t, { baseURL: gw.url, delivery: 'bearer', now: () => clock });
  assert.equal(c.timeLeft(), null);
  await c.login('demo', 'demo');
  assert.equal(c.timeLeft(), 3600);
  clock += 600_500;
  assert.equal(c.timeLeft(), 3000 - 1);
  clock += 10_000_000;
  assert.equal(c.timeLeft(), 0);
});

test('a refused login rejects with the status', async (t) => {
  const gw = await gateway(t, { delivery: 'bearer' });
  const c = client(t, { baseURL: gw.url, delivery: 'bearer' });
  await assert.rejects(c.login('demo', 'nope'), (err) => err.status === 401 && /invalid username or password/.test(err.message));
  assert.equal(c.timeLeft(), null);
});

// The proof algorithms the client makes: the JWS alg, the jwk's curve and
// its public members (RFC 7638 order), and WebCrypto's verify parameters.
const PROOF_KINDS = {
  EdDSA: { crv: 'Ed25519', members: ['crv', 'kty', 'x'], importAlg: { name: 'Ed25519' }, verifyAlg: { name: 'Ed25519' } },
  ES256: { crv: 'P-256', members: ['crv', 'kty', 'x', 'y'], importAlg: { name: 'ECDSA', namedCurve: 'P-256' }, verifyAlg: { name: 'ECDSA', hash: 'SHA-256' } },
};

/** decodeProof splits a DPoP proof and checks its signature (EdDSA or ES256, by its alg) with its own jwk. */
async function decodeProof(proof) {
  const [h, p, s] = proof.split('.');
  const header = JSON.parse(Buffer.from(h, 'base64url'));
  const claims = JSON.parse(Buffer.from(p, 'base64url'));
  const kind = PROOF_KINDS[header.alg];
  assert.ok(kind, `alg ${header.alg}`);
  const key = await crypto.subtle.importKey('jwk', header.jwk, kind.importAlg, true, ['verify']);
  const valid = await crypto.subtle.verify(kind.verifyAlg, key, Buffer.from(s, 'base64url'), new TextEncoder().encode(`${h}.${p}`));
  return { header, claims, valid };
}

const sha256 = async (text) => Buffer.from(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text))).toString('base64url');

test('DPoP: every request carries a fresh proof of one key', async (t) => {
  const tests = [
    { name: 'bearer: Authorization DPoP, ath the token hash (EdDSA, the default)', delivery: 'bearer', alg: 'EdDSA' },
    { name: 'cookie: no Authorization, proofs without ath (EdDSA, the default)', delivery: 'cookie', alg: 'EdDSA' },
    { name: 'bearer, dpopAlgorithm ES256', delivery: 'bearer', alg: 'ES256', opts: { dpopAlgorithm: 'ES256' } },
    { name: 'cookie, dpopAlgorithm ES256', delivery: 'cookie', alg: 'ES256', opts: { dpopAlgorithm: 'ES256' } },
  ];
  for (const tt of tests) {
    await t.test(tt.name, async (t) => {
      const gw = await gateway(t, { delivery: tt.delivery });
      const jar = { value: '' };
      const c = client(t, { baseURL: gw.url, delivery: tt.delivery, dpop: true, ...tt.opts, ...(tt.delivery === 'cookie' ? { fetch: cookieJarFetch(jar) } : {}) });
      assert.equal(c.dpop, true);
      assert.equal(c.bound, null, 'bound before any login');
      const started = Math.floor(Date.now() / 1000);
      await c.login('demo', 'demo');
      assert.equal(c.bound, true, 'token_type DPoP');
      assert.equal((await c.fetch('/api/hello?q=1#frag', { method: 'PUT', body: 'x' })).status, 200);
      gw.expire();
      assert.equal((await c.fetch('/api/after')).status, 200, 'refreshed and retried');
      assert.equal(await c.logout(), true);
      assert.deepEqual(gw.seen.map((s) => `${s.method} ${s.path}`),
        ['POST /auth/login', 'PUT /api/hello?q=1', 'GET /api/after', 'POST /auth/refresh', 'GET /api/after', 'POST /auth/logout']);

      const thumbprint = await c.thumbprint();
      const jtis = new Set();
      for (const s of gw.seen) {
        assert.ok(s.dpop, `${s.path}: no DPoP header`);
        const { header, claims, valid } = await decodeProof(s.dpop);
        assert.ok(valid, `${s.path}: signature`);
        assert.equal(header.typ, 'dpop+jwt');
        const kind = PROOF_KINDS[tt.alg];
        assert.equal(header.alg, tt.alg);
        assert.deepEqual(Object.keys(header.jwk), kind.members, 'public members only (no d), in RFC 7638 order');
        assert.equal(header.jwk.crv, kind.crv);
        assert.equal(await sha256(JSON.stringify(header.jwk)), thumbprint, 'thumbprint() is the key of the proofs');
        assert.equal(claims.htm, s.method);
        assert.equal(claims.htu, gw.url + s.path.replace(/\?.*$/, ''), 'htu without query or fragment');
        assert.ok(claims.iat >= started && claims.iat <= Math.floor(Date.now() / 1000) + 1, `iat ${claims.iat}`);
        assert.match(claims.jti, /^[A-Za-z0-9_-]{22,}$/);
        jtis.add(claims.jti);
        assert.equal(claims.nonce, undefined, 'no nonce the gateway did not give');
        if (tt.delivery === 'bearer' && s.path !== '/auth/login') {
          assert.match(s.authorization, /^DPoP /);
          assert.equal(claims.ath, await sha256(s.authorization.slice(5)), `${s.path}: ath`);
        } else {
          assert.equal(s.authorization, '');
          assert.equal(claims.ath, undefined, `${s.path}: ath without a token in Authorization`);
        }
      }
      assert.equal(jtis.size, gw.seen.length, 'a new jti per request, the retries too');
    });
  }
});

test('DPoP: a use_dpop_nonce refusal is retried once with the new nonce', async (t) => {
  const gw = await gateway(t, { delivery: 'bearer', nonce: true });
  const c = client(t, { baseURL: gw.url, delivery: 'bearer', dpop: true });
  await c.login('demo', 'demo'); // 400 use_dpop_nonce, then 200
  assert.equal(gw.counts.nonceRefused, 1);
  assert.equal(gw.counts.login, 1, 'the refused login never reached the password check');
  assert.equal((await c.fetch('/api/a')).status, 200, 'the nonce is remembered');
  assert.equal(gw.counts.nonceRefused, 1);
  gw.rotateNonce();
  assert.equal((await c.fetch('/api/b')).status, 200, 'a stale nonce: 401, then the retry');
  assert.equal(gw.counts.nonceRefused, 2);
  const last = await decodeProof(gw.seen.at(-1).dpop);
  const stale = await decodeProof(gw.seen.at(-2).dpop);
  assert.notEqual(last.claims.nonce, stale.claims.nonce);
  assert.notEqual(last.claims.jti, stale.claims.jti, 'the retry is a new proof');
  // A gateway that keeps refusing gets one retry, not a loop.
  const before = gw.seen.length;
  const orig = gw.rotateNonce;
  const flaky = createClient({ baseURL: gw.url, delivery: 'bearer', dpop: true, channel: null, locks: null,
    fetch: async (req) => { orig(); return fetch(req); } });
  t.after(() => flaky.close());
  await assert.rejects(flaky.login('demo', 'demo'), (err) => err.status === 400);
  assert.equal(gw.seen.length - before, 2, 'one retry');
});

test('DPoP: without Ed25519 in WebCrypto the key is P-256', async (t) => {
  const subtle = globalThis.crypto.subtle;
  const generateKey = subtle.generateKey;
  subtle.generateKey = function (alg, ...rest) {
    if (alg?.name === 'Ed25519') return Promise.reject(new DOMException('Ed25519 unsupported', 'NotSupportedError'));
    return generateKey.call(this, alg, ...rest);
  };
  t.after(() => { subtle.generateKey = generateKey; });
  const gw = await gateway(t, { delivery: 'bearer' });
  const c = client(t, { baseURL: gw.url, delivery: 'bearer', dpop: true });
  await c.login('demo', 'demo');
  const { header, valid } = await decodeProof(gw.seen.at(-1).dpop);
  assert.ok(valid);
  assert.equal(header.alg, 'ES256');
  assert.equal(header.jwk.crv, 'P-256');
});

test('DPoP off: no proofs, Bearer tokens', async (t) => {
  const gw = await gateway(t, { delivery: 'bearer' });
  const c = client(t, { baseURL: gw.url, delivery: 'bearer', dpop: false });
  await c.login('demo', 'demo');
  assert.equal(c.bound, false);
  assert.equal(await c.thumbprint(), null);
  assert.equal((await c.fetch('/api/hello')).status, 200);
  assert.deepEqual(gw.seen.map((s) => s.dpop), ['', '']);
  assert.match(gw.seen.at(-1).authorization, /^Bearer /);
});

test('logout with scope others keeps this session', async (t) => {
  const gw = await gateway(t, { delivery: 'bearer' });
  const ended = [];
  const c = client(t, { baseURL: gw.url, delivery: 'bearer', dpop: true, onSessionEnded: (r) => ended.push(r) });
  await c.login('demo', 'demo');
  assert.equal(await c.logout({ scope: 'others' }), true);
  assert.deepEqual(ended, []);
  assert.ok(c.timeLeft() > 0);
  assert.match(gw.seen.at(-1).authorization, /^DPoP /, 'still holds its token');
});
