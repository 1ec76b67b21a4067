// The demo page of gateway serve --dev: cookie delivery and DPoP, the
// client library of client/ (served at /client/gateway-client.js).
import { createClient } from '/client/gateway-client.js';

// stolen is the latest access token of the login and refresh answers (the
// dev gateway delivers it in the body too): what a thief reading the
// page's traffic would copy. The client itself never keeps it.
let stolen = '';

async function watchingFetch(req) {
  const res = await fetch(req);
  const path = new URL(req.url).pathname;
  if (res.ok && (path === '/auth/login' || path === '/auth/refresh')) {
    try {
      stolen = (await res.clone().json()).access_token || '';
      showTokenKey();
    } catch {
      // not JSON: nothing to copy
    }
  }
  return res;
}

const client = createClient({ delivery: 'cookie', fetch: watchingFetch });
window.gatewayClient = client; // for the browser tests and the console
window.demo = { token: () => stolen };

const $ = (id) => document.getElementById(id);
let refreshes = 0;

function showTokenKey() {
  try {
    const claims = JSON.parse(atob(stolen.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
    $('jkt').textContent = claims.cnf?.jkt || 'none: a bearer token';
  } catch {
    $('jkt').textContent = '–';
  }
}

client.thumbprint().then((t) => { $('key').textContent = t ?? 'no DPoP in this browser'; });

function log(text, cls) {
  const li = document.createElement('li');
  li.textContent = `${new Date().toLocaleTimeString()}  ${text}`;
  if (cls) li.className = cls;
  $('log').prepend(li);
}

function render() {
  const left = client.timeLeft();
  $('time-left').textContent = left === null ? '–' : `${Math.floor(left / 60)} min ${left % 60} s (until it can no longer be refreshed)`;
  $('refreshes').textContent = String(refreshes);
}
setInterval(render, 1000);

client.addEventListener('refreshed', (ev) => {
  refreshes++;
  log(ev.byOtherTab ? 'another tab refreshed the token' : 'the token had expired: refreshed transparently', 'ok');
  render();
});
// A login in another tab of this page set the cookie this tab shares: show
// its session here at once, without a reload.
client.addEventListener('loggedin', async (ev) => {
  if (!ev.byOtherTab) return;
  $('status').textContent = 'logged in (in another tab)';
  log('logged in in another tab', 'ok');
  render();
  await listSessions();
});
client.addEventListener('sessionended', (ev) => {
  $('status').textContent = `logged out (${ev.reason})`;
  log(`session ended: ${ev.reason}`, 'bad');
  render();
});

$('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  try {
    await client.login($('username').value, $('password').value);
    $('status').textContent = `logged in as ${$('username').value}`;
    log(client.bound ? 'logged in: the session is bound to this browser\'s key' : 'logged in', 'ok');
    await listSessions();
  } catch (err) {
    $('status').textContent = `login refused: ${err.message}`;
    log(`login refused (${err.status}): ${err.message}`, 'bad');
  }
  render();
});

$('call').addEventListener('click', async () => {
  const res = await client.fetch('/api/hello');
  const body = await res.json().catch(() => ({}));
  const rows = $('identity').tBodies[0];
  rows.replaceChildren();
  if (res.ok) {
    for (const [k, v] of Object.entries(body.headers || {})) {
      if (!k.toLowerCase().startsWith('x-auth-')) continue;
      const tr = rows.insertRow();
      tr.insertCell().textContent = k;
      tr.insertCell().textContent = v;
    }
    log(`GET /api/hello: ${res.status}`, 'ok');
  } else {
    const tr = rows.insertRow();
    const td = tr.insertCell();
    td.colSpan = 2;
    td.className = 'muted';
    td.textContent = `${res.status}: ${body.error_description || body.error || ''}`;
    log(`GET /api/hello: ${res.status} ${body.error_description || ''}`, 'bad');
  }
  $('call').dataset.status = String(res.status);
});

$('logout').addEventListener('click', async () => {
  await client.logout();
  render();
});

// The thief's replay: the token alone, no proof, no cookie.
$('steal').addEventListener('click', async () => {
  const out = $('stolen');
  out.replaceChildren();
  const statuses = [];
  for (const scheme of ['DPoP', 'Bearer']) {
    const res = await fetch('/api/hello', { headers: { Authorization: `${scheme} ${stolen}` }, credentials: 'omit', cache: 'no-store' });
    const li = document.createElement('li');
    li.textContent = `Authorization: ${scheme} <token>, no proof: ${res.status} ${res.headers.get('WWW-Authenticate') || ''}`;
    li.className = res.ok ? 'bad' : 'ok';
    out.append(li);
    statuses.push(res.status);
  }
  $('steal').dataset.statuses = statuses.join(',');
});

function cell(tr, text) {
  const td = tr.insertCell();
  td.textContent = text;
  return td;
}

async function listSessions() {
  const res = await client.fetch('/auth/sessions', { cache: 'no-store' });
  const list = res.ok ? await res.json() : null;
  // Emptied only once the answer is in: the table never shows an empty
  // list between two full ones.
  const rows = $('sessions').tBodies[0];
  rows.replaceChildren();
  if (!list) {
    cell(rows.insertRow(), `${res.status}: log in to see them`).colSpan = 5;
    $('sessions').dataset.count = '0';
    return;
  }
  // After a reload the page learns here that the session (and its key) came back.
  if ($('status').textContent === 'logged out') $('status').textContent = 'logged in (kept across the reload)';
  for (const s of list) {
    const tr = rows.insertRow();
    tr.dataset.id = s.session_id;
    cell(tr, new Date(s.created_at).toLocaleTimeString());
    cell(tr, new Date(s.refreshed_at).toLocaleTimeString());
    cell(tr, `${s.client} ${s.user_agent.slice(0, 40)}`).title = s.user_agent;
    cell(tr, s.bound ? 'yes' : 'no');
    const td = tr.insertCell();
    if (s.current) {
      td.textContent = 'this one';
      $('bound').textContent = s.bound ? 'yes: every request needs a proof of this browser\'s key' : 'no: a bearer session';
      $('bound').dataset.bound = String(s.bound);
    } else {
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = 'End';
      b.addEventListener('click', async () => {
        const r = await client.fetch(`/auth/sessions/${encodeURIComponent(s.session_id)}`, { method: 'DELETE' });
        log(`ended session ${s.session_id.slice(0, 8)}…: ${r.status}`, r.ok ? 'ok' : 'bad');
        await listSessions();
      });
      td.append(b);
    }
  }
  $('sessions').dataset.count = String(list.length);
}

$('list-sessions').addEventListener('click', listSessions);

$('logout-others').addEventListener('click', async () => {
  const ok = await client.logout({ scope: 'others' });
  log(ok ? 'logged out every other device' : 'could not log out the other devices', ok ? 'ok' : 'bad');
  await listSessions();
});

render();
