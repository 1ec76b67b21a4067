// The harness the end-to-end tests share: building the gateway binary,
// starting it and reading its listening addresses, launching headless
// Chromium (Debian's /usr/bin/chromium, driven by playwright-core; no
// browser download) with the CI rule, stopping what was started, and
// reading the refresh counters. Not a test file itself (node --test picks
// only *.test.mjs).
import { spawn, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

/** repo is the repository's root; artifacts, where screenshots go. */
export const repo = path.resolve(import.meta.dirname, '..', '..');
export const artifacts = path.join(repo, 'client', 'test-artifacts');

/** CHROMIUM is the browser the tests drive: env CHROMIUM, else Debian's. */
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

const noChromium = `${CHROMIUM} not found: apt-get install chromium (or set CHROMIUM)`;

/**
 * skip is the browser tests' skip option: without Chromium they skip,
 * except under CI=true (as .ci/run sets), where they fail (see
 * launchChromium): they can never be skipped in CI unnoticed.
 */
export const skip = !existsSync(CHROMIUM) && process.env.CI !== 'true' ? noChromium : false;

/** buildGateway builds ./cmd/gateway into dir and returns the binary's path. */
export function buildGateway(dir) {
  const bin = path.join(dir, 'gateway');
  execFileSync('go', ['build', '-o', bin, './cmd/gateway'], { cwd: repo, stdio: 'inherit' });
  return bin;
}

// The gateway's "listening" line, in its text or its JSON log format.
const LISTENING = /msg=listening addr=(\S+) admin_addr=(\S+)|"msg":"listening","addr":"([^"]+)","admin_addr":"([^"]+)"/;

/**
 * startGateway runs bin with args (spawn's options in opts, cwd say) and
 * waits, 20 s at most, for its "listening" line. It returns the process,
 * the base URLs of its main (base) and admin (admin) listeners, and log,
 * its stderr so far (it keeps growing: read it when reporting a failure).
 */
export async function startGateway(bin, args, opts = {}) {
  const proc = spawn(bin, args, { ...opts, stdio: ['ignore', 'ignore', 'pipe'] });
  const gw = { proc, base: '', admin: '', log: '' };
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (chunk) => { gw.log += chunk; });
  const listening = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "listening" line in 20 s:\n${gw.log}`)), 20_000);
    const onData = () => {
      // Whole lines only: a chunk may end inside an address.
      const m = LISTENING.exec(gw.log.slice(0, gw.log.lastIndexOf('\n') + 1));
      if (!m) return;
      clearTimeout(timer);
      proc.stderr.off('data', onData);
      proc.off('exit', onExit);
      gw.base = `http://${m[1] ?? m[3]}`;
      gw.admin = `http://${m[2] ?? m[4]}`;
      resolve();
    };
    const onExit = (code) => {
      clearTimeout(timer);
      reject(new Error(`gateway exited ${code}:\n${gw.log}`));
    };
    proc.stderr.on('data', onData);
    proc.on('exit', onExit);
  });
  try {
    await listening;
  } catch (err) {
    await stop(proc); // not left running by a test that never gets it
    throw err;
  }
  return gw;
}

/** stop ends proc (if started and still running) with SIGTERM and waits for it. */
export async function stop(proc) {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  await exited;
}

/**
 * launchChromium starts headless Chromium with its profile in dir/profile
 * and viewport (playwright's default if undefined). A missing Chromium is
 * an error: callers are skipped by skip first, except under CI=true.
 */
export function launchChromium(dir, viewport) {
  if (!existsSync(CHROMIUM)) throw new Error(noChromium);
  return chromium.launchPersistentContext(path.join(dir, 'profile'), {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    ...(viewport && { viewport }),
  });
}

/** refreshes reads gateway_refreshes_total{result} from the admin listener's /metrics. */
export async function refreshes(admin, result) {
  const text = await (await fetch(`${admin}/metrics`)).text();
  const m = new RegExp(`^gateway_refreshes_total\\{result="${result}"\\} (\\d+)`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}
