// End-to-end tests of the demo page of gateway serve --dev in headless
// Chromium (Debian's /usr/bin/chromium, driven by playwright-core; no
// browser download), against the real gateway binary with 2-second access
// tokens. The screenshot is saved to client/test-artifacts/demo.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { artifacts, skip, buildGateway, startGateway, stop, launchChromium, refreshes as refreshesAt } from './harness.mjs';

const ACCESS_TTL_MS = 2000;

let dir, gw, base, admin, context;

before(async () => {
  if (skip) return;
  dir = mkdtempSync(path.join(tmpdir(), 'gateway-e2e-'));
  gw = await startGateway(buildGateway(dir), ['serve', '--dev', '--listen', '127.0.0.1:0',
    '--admin-listen', '127.0.0.1:0', '--dev-access-ttl', `${ACCESS_TTL_MS}ms`]);
  ({ base, admin } = gw);
  context = await launchChromium(dir, { width: 900, height: 1000 });
});

after(async () => {
  await context?.close();
  await stop(gw?.proc);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const refreshes = (result) => refreshesAt(admin, result);
const reuseDetected = () => refreshes('reuse_detected');

/** callAPI clicks the page's API button and returns the status it showed. */
async function callAPI(page) {
  await page.evaluate(() => { delete document.getElementById('call').dataset.status; });
  await page.click('#call');
  await page.waitForSelector('#call[data-status]');
  return Number(await page.getAttribute('#call', 'data-status'));
}

async function login(page) {
  await page.goto(`${base}/`);
  await page.fill('#username', 'demo');
  await page.fill('#password', 'demo');
  await page.click('#login');
  await page.waitForFunction(() => document.getElementById('status').textContent === 'logged in as demo');
}

test('the demo flow: login, hidden cookie, refresh after expiry, two tabs, logout', { skip }, async (t) => {
  const page = context.pages()[0] ?? await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (err) => pageErrors.push(err.message));

  await t.test('login through the page', async () => {
    await login(page);
    const cookies = await context.cookies();
    const c = cookies.find((c) => c.name === '__Host-gateway');
    assert.ok(c, `no __Host-gateway cookie among ${cookies.map((c) => c.name)}`);
    assert.equal(c.httpOnly, true);
    assert.equal(c.secure, true);
    assert.equal(c.sameSite, 'Strict');
  });

  await t.test('the token cookie is invisible to page scripts', async () => {
    const visible = await page.evaluate(() => document.cookie);
    assert.ok(!visible.includes('__Host-gateway'), `document.cookie = ${JSON.stringify(visible)}`);
    assert.equal(await page.evaluate(() => Object.keys(localStorage).length + Object.keys(sessionStorage).length), 0);
  });

  await t.test('the API call shows the injected identity', async () => {
    assert.equal(await callAPI(page), 200);
    const rows = await page.$$eval('#identity tr', (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
    assert.deepEqual(rows.find((r) => r[0] === 'X-Auth-Subject'), ['X-Auth-Subject', 'demo'], JSON.stringify(rows));
    const left = await page.evaluate(() => window.gatewayClient.timeLeft());
    assert.ok(left > 3000 && left <= 3600, `timeLeft() = ${left}`);
  });

  await t.test('after expiry, a call succeeds through a transparent refresh', async () => {
    const before = await refreshes('success');
    const shown = Number(await page.textContent('#refreshes'));
    await sleep(ACCESS_TTL_MS + 500);
    assert.equal(await callAPI(page), 200);
    assert.equal(await refreshes('success'), before + 1);
    await page.waitForFunction((n) => Number(document.getElementById('refreshes').textContent) > n, shown);
  });

  await t.test('two tabs calling together after expiry both succeed, without reuse', async () => {
    const second = await context.newPage();
    t.after(() => second.close());
    await second.goto(`${base}/`);
    await second.waitForFunction(() => window.gatewayClient !== undefined);
    const before = await refreshes('success');
    await sleep(ACCESS_TTL_MS + 500);
    const call = (p) => p.evaluate(async () => {
      const results = await Promise.all([1, 2, 3].map(() => window.gatewayClient.fetch('/api/hello').then((r) => r.status)));
      return results;
    });
    const [a, b] = await Promise.all([call(page), call(second)]);
    assert.deepEqual([a, b], [[200, 200, 200], [200, 200, 200]]);
    assert.equal(await reuseDetected(), 0, 'gateway_refreshes_total{result="reuse_detected"}');
    // One refresh serves both tabs (a second one only if the new token
    // itself expired before the other tab's call, on a very slow machine).
    const n = (await refreshes('success')) - before;
    assert.ok(n >= 1 && n <= 2, `${n} refreshes for two tabs`);
  });

  await t.test('screenshot of the demo page', async () => {
    mkdirSync(artifacts, { recursive: true });
    assert.equal(await callAPI(page), 200);
    await page.screenshot({ path: path.join(artifacts, 'demo.png'), fullPage: true });
  });

  await t.test('logout fires sessionended and the next call fails', async () => {
    await page.evaluate(() => {
      window.ended = [];
      window.gatewayClient.addEventListener('sessionended', (ev) => window.ended.push(ev.reason));
    });
    await page.click('#logout');
    await page.waitForFunction(() => window.ended.length > 0);
    assert.deepEqual(await page.evaluate(() => window.ended), ['logout']);
    assert.equal(await page.textContent('#status'), 'logged out (logout)');
    assert.equal(await callAPI(page), 401);
    assert.equal((await context.cookies()).find((c) => c.name === '__Host-gateway'), undefined, 'cookie cleared');
  });

  assert.deepEqual(pageErrors, []);
  assert.equal(await reuseDetected(), 0);
});

test('a second tab shows the live session: a login and a logout in the other, without a reload', { skip }, async (t) => {
  const [a, b] = [await context.newPage(), await context.newPage()];
  t.after(() => Promise.all([a.close(), b.close()]));
  const pageErrors = [];
  for (const p of [a, b]) p.on('pageerror', (err) => pageErrors.push(err.message));
  await b.goto(`${base}/`);
  await b.waitForFunction(() => window.gatewayClient !== undefined);
  assert.equal(await b.textContent('#status'), 'logged out');
  assert.equal(await b.textContent('#time-left'), '–');

  await login(a); // in tab a only; b is not reloaded
  await b.waitForFunction(() => document.getElementById('status').textContent === 'logged in (in another tab)');
  // Its session list, read with the shared cookie, names that session "this one".
  await b.waitForFunction(() => [...document.querySelectorAll('#sessions tbody td')].some((td) => td.textContent === 'this one'), null, { timeout: 5000 })
    .catch(async (err) => { throw new Error(`${err.message}: ${await b.innerHTML('#sessions')} ${await b.innerHTML('#log')}`); });
  await b.waitForFunction(() => document.getElementById('time-left').textContent.includes('min'));
  assert.equal(await callAPI(b), 200, 'tab b calls with the cookie of a\'s login');

  await a.click('#logout');
  await b.waitForFunction(() => document.getElementById('status').textContent === 'logged out (logout)');
  assert.equal(await b.textContent('#time-left'), '–');
  assert.equal(await callAPI(b), 401);
  assert.deepEqual(pageErrors, []);
});
