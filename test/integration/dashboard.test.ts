import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { EventsHub } from '../../src/admin/events.ts';
import { type RunningGateway, startGateway, waitFor } from '../support/gateway.ts';
import { startUpstream, type TestUpstream } from '../support/upstream.ts';

const CHROMIUM = '/usr/bin/chromium';
/** Page conditions get this long; the dashboard itself pushes a change within about a second. */
const PAGE_WAIT_MS = 10_000;

let userDataDir: string;
let context: BrowserContext;

before(async () => {
  // Not a skip: CI installs Debian's chromium (.ci/run), so a missing browser is a broken environment.
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium); these tests never download a browser`);
  userDataDir = await mkdtemp(join(tmpdir(), 'waygate-dashboard-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 800 },
  });
});

after(async () => {
  await context?.close();
  if (userDataDir) await rm(userDataDir, { recursive: true, force: true });
});

interface Watched {
  page: Page;
  requests: string[];
  errors: string[];
}

async function openPage(url: string, viewport?: { width: number; height: number }): Promise<Watched> {
  const page = await context.newPage();
  if (viewport) await page.setViewportSize(viewport);
  const requests: string[] = [];
  const errors: string[] = [];
  page.on('request', (request) => requests.push(request.url()));
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(message.text());
  });
  page.on('pageerror', (error) => errors.push(String(error)));
  await page.goto(url);
  return { page, requests, errors };
}

async function waitRows(page: Page, count: number): Promise<void> {
  await page.waitForFunction((n) => document.querySelectorAll('[data-instance]').length === n, count, { timeout: PAGE_WAIT_MS });
}

/** The state word an instance row shows in one of its cells (health, breaker, ...). */
async function waitState(page: Page, url: string, cell: string, word: string): Promise<void> {
  await page.waitForFunction(
    ([u, c, w]) => {
      const row = [...document.querySelectorAll('[data-instance]')].find((node) => node.getAttribute('data-instance') === u);
      return row?.querySelector(`.cell.${c} .v`)?.textContent === w;
    },
    [url, cell, word] as const,
    { timeout: PAGE_WAIT_MS },
  );
}

describe('dashboard on a 3-instance static service with health checks', () => {
  const healthOk: Record<string, boolean> = { a: true, b: true, c: true };
  let upstreams: TestUpstream[];
  let gw: RunningGateway;

  function handler(name: string) {
    return (request: IncomingMessage, response: ServerResponse) => {
      if (request.url === '/health') {
        response.writeHead(healthOk[name] ? 200 : 500, { 'content-type': 'text/plain' }).end();
        return;
      }
      response.writeHead(200, { 'content-type': 'text/plain' }).end(name);
    };
  }

  before(async () => {
    upstreams = await Promise.all(['a', 'b', 'c'].map((name) => startUpstream(name, { handler: handler(name) })));
    gw = await startGateway(`
registry:
  static:
    services:
      hello:
        instances: [${upstreams.map((u) => `"${u.url}"`).join(', ')}]
        healthCheck: { path: /health, interval: 200ms, timeout: 1s, unhealthyThreshold: 1, healthyThreshold: 1 }
routes:
  - { name: hello, match: { pathPrefix: /hello }, service: hello, stripPrefix: true }
`);
  });

  after(async () => {
    await gw?.stop();
    await Promise.all((upstreams ?? []).map((u) => u.close()));
  });

  test('GET / is one page with a strict CSP and no data in it', async () => {
    const response = await fetch(`${gw.adminUrl}/`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^text\/html/);
    const csp = response.headers.get('content-security-policy') ?? '';
    for (const directive of ["default-src 'none'", "connect-src 'self'", "img-src 'none'", "base-uri 'none'", "frame-ancestors 'none'"]) {
      assert.ok(csp.includes(directive), `CSP has ${directive}: ${csp}`);
    }
    assert.match(csp, /script-src 'sha256-[A-Za-z0-9+/=]+'/);
    const html = await response.text();
    assert.ok(!html.includes(upstreams[0]!.url), 'the page carries no instance data');
    assert.doesNotMatch(html, /<(script|link|img|iframe)[^>]+(src|href)=/i, 'nothing is loaded from elsewhere');
  });

  test('loads with no external request and no console errors, and lists the 3 instances', async () => {
    const { page, requests, errors } = await openPage(`${gw.adminUrl}/`);
    try {
      await waitRows(page, 3);
      const shown = await page.$$eval('[data-instance]', (rows) => rows.map((row) => row.getAttribute('data-instance')).sort());
      assert.deepEqual(shown, upstreams.map((u) => u.url).sort());
      for (const u of upstreams) await waitState(page, u.url, 'health', 'healthy');
      await page.waitForFunction(() => document.querySelector('#routes tr')?.textContent?.includes('/hello') === true, undefined, { timeout: PAGE_WAIT_MS });
      const origin = new URL(gw.adminUrl).origin;
      assert.ok(requests.length > 0);
      for (const url of requests) assert.equal(new URL(url).origin, origin, `request to ${url}`);
      assert.deepEqual(errors, []);
    } finally {
      await page.close();
    }
  });

  test('an instance failing its health check shows "unhealthy" without a reload, and "healthy" again', async () => {
    const { page, errors } = await openPage(`${gw.adminUrl}/`);
    try {
      await waitRows(page, 3);
      const b = upstreams[1]!;
      await waitState(page, b.url, 'health', 'healthy');
      const before = await page.evaluate(() => Number(document.body.dataset.snapshots));
      healthOk.b = false;
      await waitState(page, b.url, 'health', 'unhealthy');
      const row = page.locator(`[data-instance="${b.url}"] .cell.health .v`);
      assert.match((await row.getAttribute('class')) ?? '', /\bbad\b/, 'colour as well as the word');
      assert.ok((await page.evaluate(() => Number(document.body.dataset.snapshots))) > before, 'pushed by the live feed');
      healthOk.b = true;
      await waitState(page, b.url, 'health', 'healthy');
      assert.deepEqual(errors, []);
    } finally {
      healthOk.b = true;
      await page.close();
    }
  });

  test('a killed instance shows "unhealthy"', async () => {
    const { page } = await openPage(`${gw.adminUrl}/`);
    const c = upstreams[2]!;
    try {
      await waitRows(page, 3);
      await waitState(page, c.url, 'health', 'healthy');
      await c.kill();
      await waitState(page, c.url, 'health', 'unhealthy');
    } finally {
      await c.restore();
      await page.close();
    }
  });

  test('at 390 px wide the instance rows are visible without horizontal scrolling', async () => {
    const { page } = await openPage(`${gw.adminUrl}/`, { width: 390, height: 844 });
    try {
      await waitRows(page, 3);
      for (const u of upstreams) assert.ok(await page.locator(`[data-instance="${u.url}"]`).isVisible());
      const scrollWidth = await page.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(scrollWidth <= 392, `page is ${scrollWidth}px wide at a 390px viewport`);
      const rowRight = await page.$$eval('[data-instance]', (rows) => Math.max(...rows.map((row) => row.getBoundingClientRect().right)));
      assert.ok(rowRight <= 392, `rows end at ${rowRight}px`);
    } finally {
      await page.close();
    }
  });
});

describe('dashboard: breaker state', () => {
  let bad: TestUpstream;
  let good: TestUpstream;
  let gw: RunningGateway;
  before(async () => {
    bad = await startUpstream('bad', { handler: (_req, res) => res.writeHead(500, { 'content-type': 'text/plain' }).end('down') });
    good = await startUpstream('good');
    gw = await startGateway(`
registry:
  static:
    services:
      svc:
        instances: ["${bad.url}", "${good.url}"]
routes:
  - name: r
    match: { pathPrefix: / }
    service: svc
    retries: 0
    loadBalancer: round-robin
    circuitBreaker: { errorThresholdPercentage: 0, volumeThreshold: 1, window: 10s, resetTimeout: 60s }
`);
  });
  after(async () => {
    await gw?.stop();
    await bad?.close();
    await good?.close();
  });

  test('an instance whose breaker opens shows "open"', async () => {
    const { page, errors } = await openPage(`${gw.adminUrl}/`);
    try {
      await waitRows(page, 2);
      await waitState(page, bad.url, 'breaker', 'closed');
      await waitFor('the breaker of the failing instance to open', async () => {
        await (await fetch(`${gw.url}/x`)).text();
        const view = (await (await fetch(`${gw.adminUrl}/admin/routes`)).json()) as { services: { svc: { instances: Array<{ url: string; breaker: string }> } } };
        return view.services.svc.instances.find((i) => i.url === bad.url)?.breaker === 'open';
      }, PAGE_WAIT_MS);
      await waitState(page, bad.url, 'breaker', 'open');
      await waitState(page, good.url, 'breaker', 'closed');
      assert.deepEqual(errors, []);
    } finally {
      await page.close();
    }
  });
});

describe('dashboard: admin token', () => {
  let upstream: TestUpstream;
  let gw: RunningGateway;
  before(async () => {
    upstream = await startUpstream('u');
    gw = await startGateway(`
registry:
  static:
    services:
      svc:
        instances: ["${upstream.url}"]
routes:
  - { name: r, match: { pathPrefix: / }, service: svc }
`, { admin: 'token: "dash-secret"' });
  });
  after(async () => {
    await gw?.stop();
    await upstream?.close();
  });

  test('the page needs no token, /admin/events does (header or ?token=), nothing else takes ?token=', async () => {
    assert.equal((await fetch(`${gw.adminUrl}/`)).status, 200);
    assert.equal((await fetch(`${gw.adminUrl}/admin/events`)).status, 401);
    assert.equal((await fetch(`${gw.adminUrl}/admin/events?token=wrong`)).status, 401);
    assert.equal((await fetch(`${gw.adminUrl}/admin/routes?token=dash-secret`)).status, 401);
    const attempts: Array<{ url: string; headers: Record<string, string> }> = [
      { url: `${gw.adminUrl}/admin/events?token=dash-secret`, headers: {} },
      { url: `${gw.adminUrl}/admin/events`, headers: { authorization: 'Bearer dash-secret' } },
    ];
    for (const init of attempts) {
      const controller = new AbortController();
      const response = await fetch(init.url, { headers: init.headers, signal: controller.signal });
      assert.equal(response.status, 200);
      assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
      const reader = response.body!.getReader();
      let text = '';
      while (!/event: snapshot\ndata: .*\n\n/.test(text)) {
        const { value, done } = await reader.read();
        if (done) break;
        text += Buffer.from(value).toString();
      }
      const data = JSON.parse(text.slice(text.indexOf('data: ') + 6).split('\n', 1)[0]!) as Record<string, unknown>;
      assert.deepEqual(Object.keys(data).sort(), ['config', 'routes', 'services', 'uptimeSeconds', 'version', 'workers']);
      assert.equal(data.workers, 1);
      controller.abort();
    }
  });

  test('asks for the token; a wrong one shows an error and no rows; the right one shows the rows', async () => {
    const { page } = await openPage(`${gw.adminUrl}/`);
    try {
      await page.locator('#token-input').waitFor({ state: 'visible', timeout: PAGE_WAIT_MS });
      assert.equal(await page.locator('[data-instance]').count(), 0);
      await page.fill('#token-input', 'not-the-token');
      await page.click('#token-form button[type=submit]');
      await page.waitForFunction(() => document.querySelector('#status.error')?.textContent?.includes('Wrong token') === true, undefined, { timeout: PAGE_WAIT_MS });
      assert.equal(await page.locator('[data-instance]').count(), 0);
      assert.ok(await page.locator('#token-input').isVisible());
      await page.fill('#token-input', 'dash-secret');
      await page.click('#token-form button[type=submit]');
      await waitRows(page, 1);
      assert.equal(await page.locator('[data-instance]').first().getAttribute('data-instance'), upstream.url);
      assert.equal(await page.evaluate(() => sessionStorage.getItem('waygate.adminToken')), 'dash-secret');
      assert.ok(!(await page.locator('#token-form').isVisible()));
    } finally {
      await page.close();
    }
  });
});

describe('dashboard events hub', () => {
  test('one shared timer: runs while clients are connected, pushes only changes, stops with the last client and on close', async () => {
    let state = 1;
    const hub = new EventsHub({ tickMs: 50, heartbeatMs: 100, snapshot: () => ({ routes: [], services: { state }, config: null, uptimeSeconds: Date.now(), version: 't', workers: 1 }) });
    const server = createServer((_req, res) => hub.attach(res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    try {
      const read = async (controller: AbortController) => {
        const response = await fetch(url, { signal: controller.signal });
        const reader = response.body!.getReader();
        const chunks: string[] = [];
        void (async () => {
          for (;;) {
            const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
            if (done) return;
            chunks.push(Buffer.from(value!).toString());
          }
        })();
        return chunks;
      };
      const first = new AbortController();
      const second = new AbortController();
      const a = await read(first);
      const b = await read(second);
      await waitFor('two clients', () => hub.clientCount === 2);
      assert.ok(hub.running);
      await waitFor('a heartbeat', () => a.join('').includes(': ping\n\n'));
      const snapshots = () => a.join('').split('event: snapshot').length - 1;
      const seen = snapshots();
      assert.equal(seen, 1, 'uptime alone is no change');
      state = 2;
      await waitFor('the change pushed to both', () => snapshots() === 2 && b.join('').includes('"state":2'));
      first.abort();
      await waitFor('one client left', () => hub.clientCount === 1);
      assert.ok(hub.running);
      second.abort();
      await waitFor('no client, no timer', () => hub.clientCount === 0 && !hub.running);
      const third = new AbortController();
      await read(third);
      await waitFor('timer again', () => hub.running);
      hub.close();
      assert.equal(hub.running, false);
      assert.equal(hub.clientCount, 0);
      third.abort();
    } finally {
      hub.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  test('a snapshot that never comes back (a wedged worker) does not hold up the heartbeat', async () => {
    let calls = 0;
    const never = new Promise<never>(() => undefined);
    const hub = new EventsHub({
      tickMs: 20,
      heartbeatMs: 60,
      snapshot: () => (++calls === 1 ? { routes: [], services: {}, config: null, uptimeSeconds: 0, version: 't', workers: 2 } : never),
    });
    const server = createServer((_req, res) => hub.attach(res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const controller = new AbortController();
    try {
      const response = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`, { signal: controller.signal });
      const reader = response.body!.getReader();
      let text = '';
      while ((text.match(/: ping/g) ?? []).length < 3) {
        const { value, done } = await reader.read();
        if (done) break;
        text += Buffer.from(value).toString();
      }
      assert.equal((text.match(/: ping/g) ?? []).length, 3, text);
      assert.equal(calls, 2, 'one tick waits on the wedged snapshot; later ticks do not pile up more');
    } finally {
      controller.abort();
      hub.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
