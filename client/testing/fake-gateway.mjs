// A small stand-in for the gateway's session endpoints, over real HTTP on
// 127.0.0.1, with the gateway's answers: login, refresh (rotation, reuse
// detection, "token not expired"), logout, and a protected /api/ echo. Time
// is the test's: expire() makes every current token expired. With nonce, it
// asks every DPoP proof for its latest DPoP-Nonce as RFC 9449 section 8
// says (it reads the proof's claims, checking no signature: the gateway's
// own tests do that); a login with a DPoP header answers token_type DPoP.
import http from 'node:http';
import { randomUUID } from 'node:crypto';

export async function startFakeGateway({ delivery = 'bearer', allowEarly = false, nonce = false, endSessionURL = '' } = {}) {
  const tokens = new Map(); // token -> { sid, expired, rotated }
  const sessions = new Map(); // sid -> { revoked, reason }
  const counts = { login: 0, refresh: 0, reuse: 0, api: 0, logout: 0 };
  const seen = []; // { path, authorization, cookie, xrw }
  let refreshExpiresIn = 3600;
  let apiAlwaysExpired = false;
  let currentNonce = nonce ? randomUUID() : '';

  function mint(sid) {
    const t = randomUUID();
    tokens.set(t, { sid, expired: false, early: false, rotated: false });
    return t;
  }
  function answerToken(res, t, bound) {
    const body = { token_type: bound ? 'DPoP' : 'Bearer', expires_in: 60, refresh_expires_in: refreshExpiresIn };
    if (delivery !== 'cookie') body.access_token = t;
    const headers = { 'Content-Type': 'application/json' };
    if (delivery !== 'bearer') headers['Set-Cookie'] = `__Host-gateway=${t}; Path=/; HttpOnly; Secure; SameSite=Strict`;
    res.writeHead(200, headers).end(JSON.stringify(body));
  }
  function challenge(res, desc) {
    res.writeHead(401, {
      'Content-Type': 'application/json',
      'WWW-Authenticate': `Bearer realm="gateway", error="invalid_token", error_description="${desc}"`,
      ...(desc !== 'token expired' && desc !== 'token not expired' && delivery !== 'bearer'
        ? { 'Set-Cookie': '__Host-gateway=; Path=/; Max-Age=0' } : {}),
    }).end(JSON.stringify({ error: 'invalid_token', error_description: desc }));
  }
  function tokenOf(req) {
    const a = req.headers.authorization;
    if (a && a.startsWith('Bearer ')) return { raw: a.slice(7), cookie: false };
    if (a && a.startsWith('DPoP ')) return { raw: a.slice(5), cookie: false };
    const m = /(?:^|;\s*)__Host-gateway=([^;]+)/.exec(req.headers.cookie || '');
    return m ? { raw: m[1], cookie: true } : { raw: '', cookie: false };
  }

  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      const { raw, cookie } = tokenOf(req);
      const dpop = req.headers.dpop || '';
      seen.push({ path: req.url, method: req.method, authorization: req.headers.authorization || '', cookie: req.headers.cookie || '', xrw: req.headers['x-requested-with'] || '', dpop });
      if (nonce && dpop) {
        let claims = {};
        try {
          claims = JSON.parse(Buffer.from(dpop.split('.')[1], 'base64url'));
        } catch {
          // no claims: no nonce
        }
        if (claims.nonce !== currentNonce) {
          counts.nonceRefused = (counts.nonceRefused || 0) + 1;
          const status = req.url === '/auth/login' ? 400 : 401;
          res.writeHead(status, {
            'Content-Type': 'application/json',
            'DPoP-Nonce': currentNonce,
            ...(status === 401 ? { 'WWW-Authenticate': 'DPoP error="use_dpop_nonce", error_description="nonce required"' } : {}),
          }).end('{"error":"use_dpop_nonce","error_description":"nonce required"}');
          return;
        }
      }
      if (cookie && req.method === 'POST' && !req.headers['x-requested-with']) {
        res.writeHead(403, { 'Content-Type': 'application/json' }).end('{"error":"forbidden","error_description":"X-Requested-With header required"}');
        return;
      }
      const tok = tokens.get(raw);
      if (req.url === '/auth/login') {
        counts.login++;
        const { username, password } = JSON.parse(body || '{}');
        if (username !== 'demo' || password !== 'demo') {
          res.writeHead(401, { 'Content-Type': 'application/json' }).end('{"error":"invalid_grant","error_description":"invalid username or password"}');
          return;
        }
        const sid = randomUUID();
        sessions.set(sid, { revoked: false });
        answerToken(res, mint(sid), dpop !== '');
        return;
      }
      if (req.url === '/auth/refresh') {
        counts.refresh++;
        if (!tok) return challenge(res, 'signature invalid');
        const s = sessions.get(tok.sid);
        if (!tok.expired && !(allowEarly && tok.early)) return challenge(res, 'token not expired');
        if (s.revoked) return challenge(res, s.reason);
        if (tok.rotated) {
          counts.reuse++;
          s.revoked = true;
          s.reason = 'session revoked';
          return challenge(res, 'token reuse detected');
        }
        tok.rotated = true;
        return answerToken(res, mint(tok.sid), dpop !== '');
      }
      if (req.url === '/auth/logout') {
        counts.logout++;
        if (tok) {
          const s = sessions.get(tok.sid);
          s.revoked = true;
          s.reason = 'session revoked';
        }
        const clear = delivery !== 'bearer' ? { 'Set-Cookie': '__Host-gateway=; Path=/; Max-Age=0' } : {};
        if (endSessionURL) {
          // A session of an OpenID Provider: the gateway answers its end-session URL.
          res.writeHead(200, { ...clear, 'Content-Type': 'application/json' }).end(JSON.stringify({ end_session_url: endSessionURL }));
          return;
        }
        res.writeHead(204, clear).end();
        return;
      }
      if (req.url.startsWith('/api/')) {
        counts.api++;
        if (!tok) {
          res.writeHead(401, { 'Content-Type': 'application/json', 'WWW-Authenticate': 'Bearer realm="gateway"' })
            .end('{"error":"unauthorized","error_description":"token missing"}');
          return;
        }
        if (tok.expired || apiAlwaysExpired) return challenge(res, 'token expired');
        res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ method: req.method, body, subject: 'demo' }));
        return;
      }
      res.writeHead(404).end();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    counts,
    seen,
    tokens,
    /** expire makes every token issued so far expired. */
    expire() { for (const t of tokens.values()) t.expired = true; },
    /** nearExpiry puts every token in the refresh_before_expiry window. */
    nearExpiry() { for (const t of tokens.values()) t.early = true; },
    setRefreshExpiresIn(n) { refreshExpiresIn = n; },
    setAPIAlwaysExpired(v) { apiAlwaysExpired = v; },
    /** rotateNonce makes the current DPoP-Nonce stale: the next proof is refused with use_dpop_nonce. */
    rotateNonce() { currentNonce = randomUUID(); },
    revokeAll(reason) { for (const s of sessions.values()) { s.revoked = true; s.reason = reason; } },
    close() { server.closeAllConnections(); return new Promise((r) => server.close(r)); },
  };
}

/**
 * cookieJarFetch is a fetch sharing one cookie jar, as the tabs of one
 * browser profile do: it sends the jar's cookie and stores Set-Cookie.
 */
export function cookieJarFetch(jar) {
  return async (input, init) => {
    const req = new Request(input, init);
    const headers = new Headers(req.headers);
    if (jar.value) headers.set('Cookie', `__Host-gateway=${jar.value}`);
    const res = await fetch(new Request(req, { headers }));
    const sc = res.headers.get('Set-Cookie');
    if (sc) {
      const m = /^__Host-gateway=([^;]*)/.exec(sc);
      if (m) jar.value = /Max-Age=0/.test(sc) ? '' : m[1];
    }
    return res;
  };
}

/** memoryLocks is a Web Locks stand-in for tabs in one process: exclusive locks by name. */
export function memoryLocks() {
  const tails = new Map();
  return {
    held: 0,
    maxHeld: 0,
    request(name, fn) {
      const prev = tails.get(name) || Promise.resolve();
      const run = prev.then(async () => {
        this.held++;
        this.maxHeld = Math.max(this.maxHeld, this.held);
        try {
          return await fn();
        } finally {
          this.held--;
        }
      });
      tails.set(name, run.catch(() => {}));
      return run;
    },
  };
}

/** channelPair returns BroadcastChannel stand-ins joined to each other, delivering asynchronously. */
export function channelHub() {
  const members = [];
  return function join() {
    const ch = {
      onmessage: null,
      postMessage(data) {
        const copy = structuredClone(data);
        for (const m of members) {
          if (m !== ch) setTimeout(() => m.onmessage && m.onmessage({ data: copy }), 0);
        }
      },
      close() {},
    };
    members.push(ch);
    return ch;
  };
}
