// @spa-gateway/client: the browser half of the gateway's sessions.
//
// A single-page app calls client.fetch instead of fetch. The client sends the
// access token (bearer delivery: kept in this object's memory only, never in
// localStorage or sessionStorage) or relies on the gateway's HttpOnly cookie
// (cookie delivery: always with X-Requested-With). When the gateway answers
// 401 invalid_token "token expired", the client refreshes the token once at
// /auth/refresh and retries the request once. Concurrent requests share one
// refresh; across tabs, Web Locks make one tab refresh at a time and a
// BroadcastChannel shares the outcome, so that two tabs never present the
// same rotated token twice (which the gateway takes for theft). No timer
// ever refreshes by itself: a session stays alive only while the app makes
// requests, as the gateway's idle timeout intends.
//
// DPoP (RFC 9449), on by default where WebCrypto and IndexedDB exist: the
// client holds a non-extractable Ed25519 (or ECDSA P-256) key, stored in IndexedDB (so
// that it survives reloads and is shared by the app's tabs, yet cannot be
// read out, not even by the page's own scripts), and signs a proof for
// every request it sends: login, refresh, logout and every fetch. A login
// with a proof binds the session to the key: a token or cookie copied out
// of the browser is refused anywhere the key is not.
//
// No dependencies; runs in browsers and in Node 20+.

const LOCK_NAME = 'gateway-refresh';
const CHANNEL_NAME = 'gateway-session';

// The DPoP key: one record in one IndexedDB store, created under the Web
// Lock KEY_LOCK so that tabs starting together make one key, not two.
const KEY_DB = 'spa-gateway-client';
const KEY_STORE = 'dpop-keys';
const KEY_ID = 'default';
const KEY_LOCK = 'gateway-dpop-key';

// Refresh failures that mean the session is over, as the gateway words them.
const SESSION_OVER = new Set(['session expired', 'session revoked', 'token reuse detected']);

/**
 * parseChallenge reads error and error_description from an RFC 6750
 * WWW-Authenticate header; both are '' when absent.
 * @param {string|null} header
 */
export function parseChallenge(header) {
  const out = { error: '', description: '' };
  if (!header) return out;
  const re = /([a-zA-Z_]+)="([^"]*)"/g;
  let m;
  while ((m = re.exec(header)) !== null) {
    if (m[1] === 'error') out.error = m[2];
    else if (m[1] === 'error_description') out.description = m[2];
  }
  return out;
}

/** errorOf reads the gateway's error from a 401: header first, then body. */
async function errorOf(res) {
  const c = parseChallenge(res.headers.get('WWW-Authenticate'));
  if (c.error) return c;
  try {
    const body = await res.clone().json();
    return { error: String(body.error || ''), description: String(body.error_description || '') };
  } catch {
    return c;
  }
}

async function isExpired(res) {
  if (res.status !== 401) return false;
  const e = await errorOf(res);
  return e.error === 'invalid_token' && e.description === 'token expired';
}

// ---- DPoP proofs (RFC 9449 section 4) ----

const utf8 = new TextEncoder();

function b64url(bytes) {
  let s = '';
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

const b64urlJSON = (v) => b64url(utf8.encode(JSON.stringify(v)));

async function sha256b64url(text) {
  return b64url(await crypto.subtle.digest('SHA-256', utf8.encode(text)));
}

function idbDone(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

const isKeyPair = (v) => v && typeof v === 'object' && v.privateKey && v.publicKey;

// The proof algorithms, by the key's WebCrypto algorithm name. EdDSA
// (Ed25519) is preferred where WebCrypto has it: a gateway checks its
// signatures in about two thirds of a P-256 one's time, and DPoP's whole
// cost at the gateway is that check. Its JWS name is "EdDSA", which every
// DPoP server knows (RFC 9864's "Ed25519" is newer).
const PROOF_ALGS = {
  Ed25519: { alg: 'EdDSA', generate: { name: 'Ed25519' }, sign: { name: 'Ed25519' }, members: ['crv', 'kty', 'x'] },
  ECDSA: { alg: 'ES256', generate: { name: 'ECDSA', namedCurve: 'P-256' }, sign: { name: 'ECDSA', hash: 'SHA-256' }, members: ['crv', 'kty', 'x', 'y'] },
};

// generateKeyPair makes a pair for algorithm ('EdDSA' or 'ES256'; EdDSA
// falls back to ES256 where WebCrypto lacks Ed25519). extractable false:
// the private key can sign, never be exported; the public key of a
// generated pair is always exportable (for the jwk).
async function generateKeyPair(algorithm) {
  if (algorithm !== 'ES256') {
    try {
      return await crypto.subtle.generateKey(PROOF_ALGS.Ed25519.generate, false, ['sign', 'verify']);
    } catch (err) {
      if (err?.name !== 'NotSupportedError') throw err;
    }
  }
  return crypto.subtle.generateKey(PROOF_ALGS.ECDSA.generate, false, ['sign']);
}

// proofAlgOf is the proof algorithm of a pair: a stored pair keeps its own,
// whatever this page would generate now, so that a session stays bound.
const proofAlgOf = (pair) => PROOF_ALGS[pair.privateKey.algorithm.name] ?? PROOF_ALGS.ECDSA;

// storedKeyPair returns the pair stored in IndexedDB, creating it if there
// is none. The final read and the write share one readwrite transaction,
// which IndexedDB runs one at a time: even without Web Locks, two tabs
// racing end up with the one pair that was stored first.
async function storedKeyPair(idb, algorithm) {
  const open = idb.open(KEY_DB, 1);
  open.onupgradeneeded = () => open.result.createObjectStore(KEY_STORE);
  const db = await idbDone(open);
  try {
    const found = await idbDone(db.transaction(KEY_STORE, 'readonly').objectStore(KEY_STORE).get(KEY_ID));
    if (isKeyPair(found)) return found;
    const fresh = await generateKeyPair(algorithm);
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(KEY_STORE, 'readwrite');
      const store = tx.objectStore(KEY_STORE);
      let pair = fresh;
      const get = store.get(KEY_ID);
      get.onsuccess = () => {
        if (isKeyPair(get.result)) pair = get.result;
        else store.put({ privateKey: fresh.privateKey, publicKey: fresh.publicKey }, KEY_ID);
      };
      tx.oncomplete = () => resolve(pair);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error || new Error('IndexedDB transaction aborted'));
    });
  } finally {
    // Closed at once, so that a deleteDatabase (a "forget this device")
    // is never blocked by an idle tab.
    db.close();
  }
}

/**
 * createProver returns the signer of one key pair's proofs, loading the
 * pair on first use: from IndexedDB (idb), under the Web Lock KEY_LOCK
 * (locks) where there are locks, or a pair in memory when there is no
 * IndexedDB or it fails (private windows of some browsers): proofs still
 * work, for this page's life only.
 */
function createProver({ idb, locks, now, algorithm }) {
  let loaded = null;
  function load() {
    if (!loaded) {
      loaded = (async () => {
        let pair;
        if (idb) {
          try {
            const stored = () => storedKeyPair(idb, algorithm);
            pair = await (locks ? locks.request(KEY_LOCK, stored) : stored());
          } catch {
            pair = null;
          }
        }
        if (!pair) pair = await generateKeyPair(algorithm);
        const a = proofAlgOf(pair);
        const exported = await crypto.subtle.exportKey('jwk', pair.publicKey);
        // The public members only, in RFC 7638's (lexicographic) order.
        const jwk = Object.fromEntries(a.members.map((m) => [m, exported[m]]));
        return { pair, a, jwk, thumbprint: await sha256b64url(JSON.stringify(jwk)) };
      })();
      loaded.catch(() => { loaded = null; });
    }
    return loaded;
  }
  let athCache = { token: null, ath: '' };
  return {
    async thumbprint() {
      return (await load()).thumbprint;
    },
    // proof signs a proof for method and url (its query and fragment cut
    // off); token, when one is sent, is bound in by ath; nonce is the
    // server's latest, if any.
    async proof(method, url, token, nonce) {
      const { pair, a, jwk } = await load();
      const u = new URL(url);
      u.search = '';
      u.hash = '';
      const claims = {
        jti: b64url(crypto.getRandomValues(new Uint8Array(16))),
        htm: method.toUpperCase(),
        htu: u.href,
        iat: Math.floor(now() / 1000),
      };
      if (token) {
        if (athCache.token !== token) athCache = { token, ath: await sha256b64url(token) };
        claims.ath = athCache.ath;
      }
      if (nonce) claims.nonce = nonce;
      const input = `${b64urlJSON({ typ: 'dpop+jwt', alg: a.alg, jwk })}.${b64urlJSON(claims)}`;
      // WebCrypto's ECDSA signature is r || s, as JWS ES256 wants it, and
      // its Ed25519 one the 64 bytes EdDSA wants.
      const sig = await crypto.subtle.sign(a.sign, pair.privateKey, utf8.encode(input));
      return `${input}.${b64url(sig)}`;
    },
  };
}

/**
 * createClient returns a client of the gateway at baseURL.
 * @param {import('./gateway-client').ClientOptions} [options]
 * @returns {import('./gateway-client').GatewayClient}
 */
export function createClient(options = {}) {
  const {
    baseURL = '',
    delivery = 'cookie',
    refreshEarlySeconds = 0,
    onSessionEnded,
    fetch: fetchImpl = globalThis.fetch.bind(globalThis),
    locks = globalThis.navigator?.locks,
    channel: channelOption,
    now = () => Date.now(),
    indexedDB: idb = globalThis.indexedDB,
    credentials: defaultCredentials = 'same-origin',
    dpopAlgorithm = 'EdDSA',
  } = options;
  const dpop = options.dpop ?? Boolean(globalThis.crypto?.subtle && idb);
  if (delivery !== 'cookie' && delivery !== 'bearer') {
    throw new TypeError(`delivery must be "cookie" or "bearer", not ${JSON.stringify(delivery)}`);
  }
  if (dpop && !globalThis.crypto?.subtle) {
    throw new TypeError('dpop needs WebCrypto (crypto.subtle): a secure context (https or localhost)');
  }
  if (dpopAlgorithm !== 'EdDSA' && dpopAlgorithm !== 'ES256') {
    throw new TypeError(`dpopAlgorithm must be "EdDSA" or "ES256", not ${JSON.stringify(dpopAlgorithm)}`);
  }
  const prover = dpop ? createProver({ idb, locks, now, algorithm: dpopAlgorithm }) : null;
  let nonce = null; // the gateway's latest DPoP-Nonce
  const base = baseURL.replace(/\/+$/, '');
  const events = new EventTarget();

  // The session as this tab knows it. token: bearer delivery only.
  let token = null;
  // From the last token answer's token_type ('DPoP': true); null: unknown.
  // The Authorization scheme of the token follows from it.
  let bound = null;
  let expiresAt = 0; // ms; 0: unknown
  let refreshDeadline = 0; // ms; 0: unknown
  let generation = 0; // bumped on every new token (ours or another tab's)
  let state = 'unknown'; // 'in' | 'out' | 'unknown'
  let inflight = null; // the shared refresh of this tab

  let channel = channelOption;
  if (channel === undefined && typeof BroadcastChannel === 'function') {
    channel = new BroadcastChannel(CHANNEL_NAME);
  }
  if (channel) {
    channel.onmessage = (ev) => onMessage(ev.data);
  }

  function onMessage(msg) {
    if (!msg || typeof msg !== 'object') return;
    switch (msg.type) {
      case 'refreshed':
        // Cookie delivery: the cookie is shared, so another tab's refresh
        // is ours. Bearer: adopt the token only if it succeeds ours.
        if (delivery === 'bearer') {
          if (token === null || msg.previous !== token) return;
          token = msg.token;
        }
        adopt(msg.expiresIn, msg.refreshExpiresIn);
        dispatch('refreshed', { byOtherTab: true });
        break;
      case 'loggedin':
        // Cookie delivery only: the cookie another tab's login set is this
        // tab's too. (A bearer token stays with the tab that logged in.)
        // The generation stays: a request this tab sent before the message
        // came may well have carried the new cookie already, and a "token
        // expired" answer to it must still refresh.
        if (delivery !== 'cookie') return;
        expiresAt = now() + msg.expiresIn * 1000;
        refreshDeadline = now() + msg.refreshExpiresIn * 1000;
        state = 'in';
        dispatch('loggedin', { byOtherTab: true });
        break;
      case 'ended':
        if (delivery === 'bearer' && (token === null || msg.token !== token)) return;
        end(msg.reason, false);
        break;
    }
  }

  function adopt(expiresIn, refreshExpiresIn) {
    const t = now();
    expiresAt = t + expiresIn * 1000;
    refreshDeadline = t + refreshExpiresIn * 1000;
    generation++;
    state = 'in';
  }

  // end forgets the session and tells the app (and with broadcast the
  // other tabs); endSessionURL, where a logout answered one, goes with the
  // event of this tab only: one tab follows it.
  function end(reason, broadcast, endSessionURL) {
    const old = token;
    token = null;
    expiresAt = 0;
    refreshDeadline = 0;
    generation++;
    if (broadcast && channel) {
      channel.postMessage({ type: 'ended', reason, token: delivery === 'bearer' ? old : undefined });
    }
    if (state === 'out') return;
    state = 'out';
    dispatch('sessionended', endSessionURL ? { reason, endSessionURL } : { reason });
    if (onSessionEnded) onSessionEnded(reason);
  }

  function dispatch(type, detail) {
    const ev = new Event(type);
    Object.assign(ev, detail);
    ev.detail = detail;
    events.dispatchEvent(ev);
  }

  // withCredentials returns req with the session's credentials (the token
  // unless anonymous, as the login is) and, with DPoP, a fresh proof: one
  // per request sent, as each proof's jti may be used only once. A bearer
  // token is bound in by the proof's ath; the cookie, which the page cannot
  // read, is not (the gateway holds it to the key alone).
  async function withCredentials(req, credentials, anonymous) {
    const h = new Headers(req.headers);
    let sent = null;
    if (delivery === 'cookie') {
      h.set('X-Requested-With', 'XMLHttpRequest');
    } else if (h.has('Authorization')) {
      sent = /^DPoP (.+)$/.exec(h.get('Authorization'))?.[1] ?? null;
    } else if (token !== null && !anonymous) {
      sent = token;
      h.set('Authorization', `${bound ? 'DPoP' : 'Bearer'} ${token}`);
    }
    if (prover) h.set('DPoP', await prover.proof(req.method, req.url, sent, nonce));
    return new Request(req, { headers: h, credentials });
  }

  // call sends req (left unused: each attempt sends a clone) and answers a
  // use_dpop_nonce refusal by one retry with the nonce it came with. Every
  // answer's DPoP-Nonce is kept for the next proof.
  async function call(req, credentials = defaultCredentials, anonymous = false) {
    let res = await fetchImpl(await withCredentials(req.clone(), credentials, anonymous));
    if (!prover) return res;
    const given = res.headers.get('DPoP-Nonce');
    if (given) nonce = given;
    if (given && (res.status === 400 || res.status === 401) &&
        (await errorOf(res)).error === 'use_dpop_nonce') {
      res = await fetchImpl(await withCredentials(req.clone(), credentials, anonymous));
      nonce = res.headers.get('DPoP-Nonce') || nonce;
    }
    return res;
  }

  function post(path, body) {
    return call(new Request(base + path, {
      method: 'POST',
      headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
    }));
  }

  async function acceptTokenResponse(res) {
    const body = await res.json();
    if (delivery === 'bearer') {
      if (typeof body.access_token !== 'string' || body.access_token === '') {
        throw new Error('gateway answered without access_token: configure tokens.delivery = "bearer" or "both"');
      }
      token = body.access_token;
    }
    bound = body.token_type === 'DPoP';
    adopt(Number(body.expires_in) || 0, Number(body.refresh_expires_in) || 0);
    return body;
  }

  // refreshNow posts /auth/refresh with this tab's token and records the
  // outcome: 'refreshed', 'early' (the gateway refused a token not yet
  // expired: keep using it), 'ended' or 'failed' (a network or server error:
  // the session may still be alive).
  async function refreshNow() {
    const previous = token;
    let res;
    try {
      res = await post('/auth/refresh');
    } catch {
      return 'failed';
    }
    if (res.ok) {
      const body = await acceptTokenResponse(res);
      if (channel) {
        channel.postMessage({
          type: 'refreshed',
          expiresIn: Number(body.expires_in) || 0,
          refreshExpiresIn: Number(body.refresh_expires_in) || 0,
          ...(delivery === 'bearer' ? { token, previous } : {}),
        });
      }
      dispatch('refreshed', { byOtherTab: false });
      return 'refreshed';
    }
    if (res.status !== 401) return 'failed';
    const e = await errorOf(res);
    if (e.description === 'token not expired') return 'early';
    // A refused proof says nothing of the session, which may well be
    // alive (a clock off by more than the gateway's window, say): not an
    // end, and no other tab is told to drop it.
    if (e.error === 'invalid_dpop_proof') return 'failed';
    end(e.description || 'unauthorized', true);
    return 'ended';
  }

  // refresh is the single flight: every caller during one refresh shares it.
  // seen is the generation the caller's request was sent with: if a token
  // came since (from this tab or another), there is nothing to refresh.
  // probe, in cookie delivery, re-sends the caller's request once the lock
  // is held: if another tab has refreshed, the shared cookie is already new
  // and it succeeds, with no refresh.
  function refresh(seen, probe) {
    if (generation !== seen) return Promise.resolve({ outcome: 'refreshed' });
    if (inflight) return inflight;
    const run = async () => {
      if (generation !== seen) return { outcome: 'refreshed' };
      if (probe) {
        let res;
        try {
          res = await probe();
        } catch {
          res = null;
        }
        if (res && !(await isExpired(res))) return { outcome: 'refreshed', response: res };
      }
      return { outcome: await refreshNow() };
    };
    const locked = locks ? () => locks.request(LOCK_NAME, run) : run;
    inflight = locked().finally(() => {
      inflight = null;
    });
    return inflight;
  }

  function shouldRefreshEarly() {
    return refreshEarlySeconds > 0 && state === 'in' && expiresAt > 0 &&
      now() >= expiresAt - refreshEarlySeconds * 1000;
  }

  async function send(input, init) {
    const req = new Request(typeof input === 'string' ? base + input : input, init);
    const attempt = () => call(req, init?.credentials ?? defaultCredentials);
    if (shouldRefreshEarly()) await refresh(generation, null);
    const seen = generation;
    const res = await attempt();
    if (!(await isExpired(res))) {
      if (res.status === 401) {
        const e = await errorOf(res);
        if (SESSION_OVER.has(e.description)) end(e.description, false);
      }
      return res;
    }
    const { outcome, response } = await refresh(seen, delivery === 'cookie' && locks ? attempt : null);
    if (response) return response;
    // 'early': the gateway holds the token we would send now for unexpired
    // (another tab's refresh reached the shared cookie first): retry too.
    if (outcome !== 'refreshed' && outcome !== 'early') return res;
    return attempt(); // the one retry
  }

  return {
    async login(username, password) {
      const res = await call(new Request(base + '/auth/login', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'X-Requested-With': 'XMLHttpRequest' },
        body: JSON.stringify({ username, password }),
        cache: 'no-store',
      }), defaultCredentials, true);
      if (!res.ok) {
        let description = '';
        try {
          description = (await res.json()).error_description || '';
        } catch {
          // not JSON
        }
        const err = new Error(description || `login refused with status ${res.status}`);
        err.status = res.status;
        throw err;
      }
      const body = await acceptTokenResponse(res);
      if (channel && delivery === 'cookie') {
        channel.postMessage({
          type: 'loggedin',
          expiresIn: Number(body.expires_in) || 0,
          refreshExpiresIn: Number(body.refresh_expires_in) || 0,
        });
      }
      dispatch('loggedin', { byOtherTab: false });
    },

    async logout({ scope } = {}) {
      if (scope === 'others') {
        // This session stays: nothing ends here.
        return (await post('/auth/logout', { scope })).status === 204;
      }
      let res;
      let endSessionURL;
      try {
        res = await post('/auth/logout', scope === undefined ? undefined : { scope });
        if (res.status === 200) {
          // A session of an OpenID Provider: the gateway's session is over,
          // and the provider's end-session URL is for the app to follow.
          endSessionURL = await res.json().then((b) => b.end_session_url, () => undefined);
        }
      } finally {
        end('logout', true, endSessionURL);
      }
      return res.status === 204 || res.status === 200;
    },

    fetch: send,

    timeLeft() {
      if (refreshDeadline === 0) return null;
      return Math.max(0, Math.floor((refreshDeadline - now()) / 1000));
    },

    get delivery() {
      return delivery;
    },

    get bound() {
      return bound;
    },

    get dpop() {
      return prover !== null;
    },

    async thumbprint() {
      return prover ? prover.thumbprint() : null;
    },

    addEventListener(type, listener, opts) {
      events.addEventListener(type, listener, opts);
    },

    removeEventListener(type, listener, opts) {
      events.removeEventListener(type, listener, opts);
    },

    close() {
      if (channel && !channelOption) channel.close();
    },
  };
}
