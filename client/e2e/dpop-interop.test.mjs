// Interoperability of the gateway's DPoP (RFC 9449) with a client library
// this project did not write: panva's `dpop` package (a devDependency)
// makes every key and proof here, and the real gateway binary, over real
// HTTP on 127.0.0.1, must accept them for a login, a proxied request, a
// refresh and a logout, with and without server nonces, and refuse a
// library proof made for another method. Nothing here skips: a missing
// package, Go toolchain or binary fails the test.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { generateKeyPair, generateProof } from 'dpop';
import { buildGateway, startGateway as startBinary, stop } from './harness.mjs';

const credentials = JSON.stringify({ username: 'alice', password: 'wonderland' });

let dir, bin, upstream;
const gateways = [];

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'gateway-dpop-interop-'));
  bin = buildGateway(dir);
  execFileSync(bin, ['keygen', '--alg', 'EdDSA', '--out', path.join(dir, 'signing.pem')]);
  const hash = execFileSync(bin, ['hash-password'], { input: 'wonderland\n', encoding: 'utf8' }).trim();
  writeFileSync(path.join(dir, 'users'), `alice:${hash}\n`, { mode: 0o600 });
  // The upstream answers what reached it, so that the test sees the
  // request was proxied (and that the token was not forwarded).
  upstream = createServer((req, res) => {
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify({ subject: req.headers['x-auth-subject'] ?? null, authorization: req.headers.authorization ?? null }));
  });
  await new Promise((resolve) => upstream.listen(0, '127.0.0.1', resolve));
});

after(async () => {
  for (const gw of gateways) await stop(gw);
  await new Promise((r) => upstream?.close(r));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/**
 * startGateway runs the binary with a configuration whose [tokens] section
 * ends with extra, and returns its main listener's base URL. Its tokens
 * may be refreshed at once (refresh_before_expiry just under access_ttl).
 */
async function startGateway(name, extra) {
  const config = path.join(dir, `${name}.toml`);
  writeFileSync(config, `
[server]
listen = "127.0.0.1:0"
shutdown_timeout = "5s"
[admin]
listen = "127.0.0.1:0"
[tokens]
key_file = "signing.pem"
access_ttl = "10s"
refresh_grace = "1s"
refresh_before_expiry = "9999ms"
dpop = "required"
${extra}
[store]
path = "${name}.db"
[login]
users_file = "users"
[[route]]
prefix = "/api/"
upstream = "http://127.0.0.1:${upstream.address().port}"
`);
  const gw = await startBinary(bin, ['serve', '--config', config], { cwd: dir });
  gateways.push(gw.proc);
  return gw.base;
}

/** thumbprint is the RFC 7638 thumbprint of a public CryptoKey: cnf.jkt. */
async function thumbprint(publicKey) {
  const jwk = await crypto.subtle.exportKey('jwk', publicKey);
  const members = jwk.kty === 'EC'
    ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y }
    : { crv: jwk.crv, kty: jwk.kty, x: jwk.x };
  return createHash('sha256').update(JSON.stringify(members)).digest('base64url');
}

function claims(token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
}

/**
 * client is a DPoP client of one gateway, all of whose proofs the library
 * makes with keypair: send signs a proof for (method, url) with ath of the
 * token it presents, and the server nonce last handed out, if any; on a
 * use_dpop_nonce challenge it signs again with the new nonce once, as RFC
 * 9449 section 8 has clients do.
 */
function client(base, keypair) {
  let nonce;
  return {
    async send(method, urlPath, { token, body, proofMethod = method } = {}) {
      const url = base + urlPath;
      for (let attempt = 0; ; attempt++) {
        const proof = await generateProof(keypair, url, proofMethod, nonce, token);
        const headers = { DPoP: proof };
        if (token) headers.Authorization = `DPoP ${token}`;
        if (body) headers['Content-Type'] = 'application/json';
        const res = await fetch(url, { method, headers, body });
        const text = await res.text();
        nonce = res.headers.get('DPoP-Nonce') ?? nonce;
        const json = text ? JSON.parse(text) : {};
        if (attempt === 0 && json.error === 'use_dpop_nonce' && res.headers.get('DPoP-Nonce')) continue;
        return { status: res.status, json, challenge: res.headers.get('WWW-Authenticate') ?? '', attempts: attempt + 1, proof };
      }
    },
  };
}

/** session runs a bound session's whole life through c, all proofs the library's. */
async function session(c, keypair) {
  const login = await c.send('POST', '/auth/login', { body: credentials });
  assert.equal(login.status, 200, `login: ${JSON.stringify(login.json)}`);
  assert.equal(login.json.token_type, 'DPoP');
  let token = login.json.access_token;
  assert.equal(claims(token).cnf?.jkt, await thumbprint(keypair.publicKey), 'cnf.jkt is the library key\'s thumbprint');

  const api = await c.send('GET', '/api/orders', { token });
  assert.equal(api.status, 200, `proxied request: ${JSON.stringify(api.json)}`);
  assert.equal(api.json.subject, 'alice');
  assert.equal(api.json.authorization, null, 'the token is not forwarded');

  const wrong = await c.send('GET', '/api/orders', { token, proofMethod: 'POST' });
  assert.equal(wrong.status, 401, 'a library proof made for POST, sent with GET');
  assert.equal(wrong.json.error, 'invalid_dpop_proof');
  assert.match(wrong.challenge, /^DPoP .*error="invalid_dpop_proof"/);

  const refresh = await c.send('POST', '/auth/refresh', { token });
  assert.equal(refresh.status, 200, `refresh: ${JSON.stringify(refresh.json)}`);
  assert.equal(refresh.json.token_type, 'DPoP');
  const next = refresh.json.access_token;
  assert.notEqual(next, token);
  assert.equal(claims(next).cnf?.jkt, claims(token).cnf.jkt, 'refresh keeps the binding');
  token = next;

  const again = await c.send('GET', '/api/orders', { token });
  assert.equal(again.status, 200, `proxied request with the refreshed token: ${JSON.stringify(again.json)}`);

  const logout = await c.send('POST', '/auth/logout', { token });
  assert.equal(logout.status, 204, `logout: ${JSON.stringify(logout.json)}`);
  const after = await c.send('POST', '/auth/refresh', { token });
  assert.equal(after.status, 401, 'refresh after logout');
  return { login, api };
}

test('proofs of the dpop library are accepted end to end (ES256)', async () => {
  const base = await startGateway('plain', '');
  const keypair = await generateKeyPair('ES256');
  const { login } = await session(client(base, keypair), keypair);
  assert.equal(login.attempts, 1, 'no nonce asked for where dpop_nonce is false');
});

test('proofs of the dpop library are accepted end to end (Ed25519, RFC 9864 alg name)', async () => {
  const base = await startGateway('ed25519', '');
  const keypair = await generateKeyPair('Ed25519');
  const { login } = await session(client(base, keypair), keypair);
  assert.equal(JSON.parse(Buffer.from(login.proof.split('.')[0], 'base64url')).alg, 'Ed25519',
    'the library wrote the fully specified alg name');
});

test('proofs of the dpop library are accepted with server nonces (dpop_nonce = true)', async () => {
  const base = await startGateway('nonce', 'dpop_nonce = true');
  const keypair = await generateKeyPair('ES256');
  const c = client(base, keypair);
  const { login } = await session(c, keypair);
  assert.equal(login.attempts, 2, 'the first login proof, without a nonce, got use_dpop_nonce');

  // A library proof without a nonce, where one is required, is refused
  // with use_dpop_nonce and a fresh DPoP-Nonce.
  const url = `${base}/auth/login`;
  const res = await fetch(url, {
    method: 'POST', body: credentials,
    headers: { 'Content-Type': 'application/json', DPoP: await generateProof(keypair, url, 'POST') },
  });
  assert.equal(res.status, 400);
  assert.equal((await res.json()).error, 'use_dpop_nonce');
  assert.ok(res.headers.get('DPoP-Nonce'), 'a DPoP-Nonce with use_dpop_nonce');
});
