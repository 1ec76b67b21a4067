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
