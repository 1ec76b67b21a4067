// The demo page of gateway serve --dev: cookie delivery, the client library
// of client/ (served at /client/gateway-client.js).
import { createClient } from '/client/gateway-client.js';

const client = createClient({ delivery: 'cookie' });
window.gatewayClient = client; // for the browser tests and the console

const $ = (id) => document.getElementById(id);
let refreshes = 0;

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
    log('logged in', 'ok');
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

render();
