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
// No dependencies; runs in browsers and in Node 20+.

const LOCK_NAME = 'gateway-refresh';
const CHANNEL_NAME = 'gateway-session';

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
  } = options;
  if (delivery !== 'cookie' && delivery !== 'bearer') {
    throw new TypeError(`delivery must be "cookie" or "bearer", not ${JSON.stringify(delivery)}`);
  }
  const base = baseURL.replace(/\/+$/, '');
  const events = new EventTarget();

  // The session as this tab knows it. token: bearer delivery only.
  let token = null;
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

  function end(reason, broadcast) {
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
    dispatch('sessionended', { reason });
    if (onSessionEnded) onSessionEnded(reason);
  }

  function dispatch(type, detail) {
    const ev = new Event(type);
    Object.assign(ev, detail);
    ev.detail = detail;
    events.dispatchEvent(ev);
  }

  function authHeaders(headers) {
    const h = new Headers(headers);
    if (delivery === 'cookie') {
      h.set('X-Requested-With', 'XMLHttpRequest');
    } else if (token !== null && !h.has('Authorization')) {
      h.set('Authorization', `Bearer ${token}`);
    }
    return h;
  }

  function post(path) {
    return fetchImpl(base + path, {
      method: 'POST',
      headers: authHeaders(),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  }

  async function acceptTokenResponse(res) {
    const body = await res.json();
    if (delivery === 'bearer') {
      if (typeof body.access_token !== 'string' || body.access_token === '') {
        throw new Error('gateway answered without access_token: configure tokens.delivery = "bearer" or "both"');
      }
      token = body.access_token;
    }
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
    const attempt = () => fetchImpl(new Request(req.clone(), {
      headers: authHeaders(req.headers),
      credentials: init?.credentials ?? 'same-origin',
    }));
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
      const res = await fetchImpl(base + '/auth/login', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'X-Requested-With': 'XMLHttpRequest' },
        body: JSON.stringify({ username, password }),
        credentials: 'same-origin',
        cache: 'no-store',
      });
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
      await acceptTokenResponse(res);
    },

    async logout() {
      let res;
      try {
        res = await post('/auth/logout');
      } finally {
        end('logout', true);
      }
      return res.status === 204;
    },

    fetch: send,

    timeLeft() {
      if (refreshDeadline === 0) return null;
      return Math.max(0, Math.floor((refreshDeadline - now()) / 1000));
    },

    get delivery() {
      return delivery;
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
