import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { type IncomingMessage, request as httpRequest, type ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import { describe, test } from 'node:test';
import { GatewayMetrics } from '../../src/observability/metrics.ts';
import { metricValue, oneServiceYaml, type RunningGateway, startGateway, waitFor } from '../support/gateway.ts';
import { captureLogs } from '../support/logs.ts';
import { deadPort, startUpstream, type TestUpstream } from '../support/upstream.ts';

const serviceYaml = (urls: string[], route: string, extra = ''): string => oneServiceYaml(urls, route, '/', extra);

async function get(url: string, init?: RequestInit): Promise<{ status: number; body: string; headers: Headers }> {
  const response = await fetch(url, init);
  return { status: response.status, body: await response.text(), headers: response.headers };
}

async function until(check: () => Promise<boolean> | boolean, what: string, attempts = 400): Promise<void> {
  await waitFor(what, check, attempts * 25);
}

async function instancesOf(gw: RunningGateway): Promise<Array<{ url: string; breaker: string; ejected: boolean }>> {
  const routes = (await (await fetch(`${gw.adminUrl}/admin/routes`)).json()) as { services: { svc: { instances: Array<{ url: string; breaker: string; ejected: boolean }> } } };
  return routes.services.svc.instances;
}

async function withUpstreams(names: string[], body: (upstreams: TestUpstream[]) => Promise<void>): Promise<void> {
  const upstreams = await Promise.all(names.map((name) => startUpstream(name)));
  try {
    await body(upstreams);
  } finally {
    await Promise.all(upstreams.map((upstream) => upstream.close()));
  }
}

describe('circuit breakers', () => {
  test('an instance answering 500 trips its breaker, gets no traffic, and one half-open trial closes it again', async () => {
    // `a` fails until told to hold: then it keeps every request open until the test answers it, so the
    // half-open trial stays in flight for exactly as long as the test needs, however slow the machine.
    let aFails = true;
    const held: ServerResponse[] = [];
    const a = await startUpstream('a', {
      handler: (_req, res) => {
        if (aFails) res.writeHead(500, { 'content-type': 'text/plain' }).end('down');
        else held.push(res);
      },
    });
    const b = await startUpstream('b');
    const { logger, lines } = captureLogs();
    const gw = await startGateway(serviceYaml([a.url, b.url], `    retries: 0
    loadBalancer: round-robin
    circuitBreaker: { errorThresholdPercentage: 50, volumeThreshold: 4, window: 10s, resetTimeout: 400ms }
    outlierDetection: { consecutiveFailures: 1000, baseEjectionTime: 30s, maxEjectionTime: 300s, maxEjectionPercent: 50 }
    panicThreshold: 0`), { logger });
    const breakerOfA = async () => (await instancesOf(gw)).find((i) => i.url === a.url)?.breaker;
    try {
      await until(async () => {
        await get(`${gw.url}/x`);
        return (await breakerOfA()) === 'open';
      }, 'breaker of a opens');
      assert.equal(await metricValue(gw.adminUrl, 'waygate_circuit_breaker_open', { instance: a.url }), 1);

      // While the breaker is open every request goes to b. It turns half-open once resetTimeout has
      // passed, at a moment this test does not race: from then the first request round-robin sends to
      // `a` is the trial, and `a` holds it. So, one request at a time: each is answered by b until one
      // is held at `a`, and that one must have found the breaker half-open (it still is: the trial is out).
      aFails = false;
      const before = a.received.length;
      let trial: Promise<{ status: number; body: string }> | undefined;
      while (!trial) {
        let answer: { status: number; body: string } | undefined;
        const pending = get(`${gw.url}/x`).then((r) => (answer = r));
        await until(() => answer !== undefined || held.length > 0, 'an answer from b or a trial held at a');
        if (held.length > 0) {
          trial = pending;
        } else {
          assert.equal(answer!.status, 200);
          assert.equal(a.received.length, before, 'an open instance receives nothing');
        }
      }
      assert.equal(a.received.length - before, 1, 'the trial is the first request a receives');
      assert.equal(await breakerOfA(), 'half-open', 'a received its first request as the half-open trial');

      // While the trial is in flight, of many concurrent requests none goes to `a`.
      let answered = 0;
      const results = Array.from({ length: 20 }, () => get(`${gw.url}/x`).then((r) => ((answered += 1), r)));
      await until(() => answered === 20, 'the 20 concurrent requests answered');
      assert.ok((await Promise.all(results)).every((r) => r.status === 200));
      assert.equal(held.length, 1, 'exactly one trial request reached a');
      assert.equal(a.received.length - before, 1, 'exactly one trial request');

      // The trial succeeds: the breaker closes.
      held[0]!.writeHead(200, { 'content-type': 'application/json', 'x-upstream': 'a' }).end(JSON.stringify({ instance: 'a' }));
      assert.equal((await trial).status, 200);
      assert.equal(await breakerOfA(), 'closed');
      // One log line per state change, not per request. (On a slow machine the breaker may have turned
      // half-open and been re-opened by a failing trial before the loop above first saw it open.)
      const changes = lines().filter((line) => String(line.msg).startsWith('circuit breaker ') && line.instance === a.url).map((line) => line.breaker);
      assert.ok(changes.every((state, i) => i === 0 || state !== changes[i - 1]), `one line per change: ${changes.join(',')}`);
      assert.deepEqual(changes.slice(-3), ['open', 'half-open', 'closed'], changes.join(','));
      assert.ok(changes.filter((state) => state === 'open').length <= changes.filter((state) => state === 'half-open').length,
        `every open after the first follows a failed trial: ${changes.join(',')}`);
    } finally {
      for (const res of held) res.destroy();
      await gw.stop();
      await a.close();
      await b.close();
    }
  });

  test('failureStatuses decides which answers count against an instance', async () => {
    const busy = await startUpstream('busy', { handler: (_req, res) => res.writeHead(429).end('slow down') });
    const fine = await startUpstream('fine');
    const breakerConfig = 'errorThresholdPercentage: 50, volumeThreshold: 2, window: 10s, resetTimeout: 30s';
    const plain = await startGateway(serviceYaml([busy.url, fine.url], `    retries: 0\n    circuitBreaker: { ${breakerConfig} }`));
    const strict = await startGateway(serviceYaml([busy.url, fine.url], `    retries: 0\n    circuitBreaker: { failureStatuses: [5xx, 429], ${breakerConfig} }`));
    try {
      for (let i = 0; i < 10; i++) await get(`${plain.url}/x`);
      assert.equal((await instancesOf(plain)).find((i) => i.url === busy.url)?.breaker, 'closed', '429 is not a failure by default');
      await until(async () => {
        const answer = await get(`${strict.url}/x`);
        assert.ok(answer.status === 200 || (answer.status === 429 && answer.body === 'slow down'), 'the 429 itself passes through');
        return (await instancesOf(strict)).find((i) => i.url === busy.url)?.breaker === 'open';
      }, 'listed 429 opens the breaker');
    } finally {
      await plain.stop();
      await strict.stop();
      await busy.close();
      await fine.close();
    }
  });

  test('every breaker open: 503 CIRCUIT_OPEN at once, with Retry-After', async () => {
    await withUpstreams(['a', 'b'], async ([a, b]) => {
      const gw = await startGateway(serviceYaml([a!.url, b!.url], `    retries: 0
    circuitBreaker: { errorThresholdPercentage: 50, volumeThreshold: 2, window: 10s, resetTimeout: 30s }`));
      try {
        a!.mode = 'error500';
        b!.mode = 'error500';
        await until(async () => (await get(`${gw.url}/x`)).status === 503, 'breakers open');
        const before = a!.received.length + b!.received.length;
        const answer = await get(`${gw.url}/x`);
        assert.equal(answer.status, 503);
        assert.equal((JSON.parse(answer.body) as { error: { code: string } }).error.code, 'CIRCUIT_OPEN');
        const retryAfter = Number(answer.headers.get('retry-after'));
        assert.ok(retryAfter >= 1 && retryAfter <= 30, `Retry-After ${retryAfter}`);
        assert.equal(a!.received.length + b!.received.length, before, 'no upstream was contacted');
        assert.ok((await metricValue(gw.adminUrl, 'waygate_upstream_attempts_total', { service: 'svc', outcome: 'failure' }))! >= 2);
      } finally {
        await gw.stop();
      }
    });
  });
  test('while every breaker is open or half-open, only the trial reaches an instance; the rest get CIRCUIT_OPEN', async () => {
    await withUpstreams(['a', 'b'], async ([a, b]) => {
      const gw = await startGateway(serviceYaml([a!.url, b!.url], `    retries: 1
    timeout: 1s
    circuitBreaker: { errorThresholdPercentage: 50, volumeThreshold: 2, window: 10s, resetTimeout: 300ms }
    outlierDetection: { consecutiveFailures: 1000, baseEjectionTime: 30s, maxEjectionTime: 300s, maxEjectionPercent: 50 }`));
      try {
        a!.mode = 'error500';
        b!.mode = 'error500';
        await until(async () => (await get(`${gw.url}/x`)).status === 503, 'breakers open');
        a!.mode = 'hang';
        b!.mode = 'hang';
        await until(async () => (await instancesOf(gw)).some((i) => i.breaker === 'half-open'), 'a half-open breaker');
        const before = a!.received.length + b!.received.length;
        const answers = await Promise.all(Array.from({ length: 6 }, () => get(`${gw.url}/x`)));
        const circuitOpen = answers.filter((r) => r.status === 503 && r.body.includes('CIRCUIT_OPEN')).length;
        assert.ok(circuitOpen >= 4, `statuses ${answers.map((r) => r.status).join(',')}`);
        assert.ok(a!.received.length + b!.received.length - before <= 2, 'at most the half-open trials reached an instance');
      } finally {
        await gw.stop();
      }
    });
  });
});

describe('outlier detection and panic threshold', () => {
  test('consecutive failures eject an instance, never more than maxEjectionPercent', async () => {
    await withUpstreams(['a', 'b', 'c'], async ([a, b, c]) => {
      const { logger, lines } = captureLogs();
      const gw = await startGateway(serviceYaml([a!.url, b!.url, c!.url], `    retries: 0
    circuitBreaker: { errorThresholdPercentage: 100, volumeThreshold: 100000, window: 10s, resetTimeout: 10s }
    outlierDetection: { consecutiveFailures: 3, baseEjectionTime: 30s, maxEjectionTime: 300s, maxEjectionPercent: 34 }
    panicThreshold: 0`), { logger });
      try {
        a!.mode = 'error500';
        b!.mode = 'error500';
        for (let i = 0; i < 30; i++) await get(`${gw.url}/x`);
        const instances = await instancesOf(gw);
        const ejected = instances.filter((i) => i.ejected).map((i) => i.url);
        assert.equal(ejected.length, 1, 'only one of three may be ejected at 34 %');
        assert.ok([a!.url, b!.url].includes(ejected[0]!));
        assert.equal(await metricValue(gw.adminUrl, 'waygate_outlier_ejections_total', { service: 'svc' }), 1);
        assert.equal(lines().filter((line) => line.msg === 'instance ejected as an outlier').length, 1);
        const before = instances.length && (ejected[0] === a!.url ? a! : b!).received.length;
        for (let i = 0; i < 9; i++) await get(`${gw.url}/x`);
        assert.equal((ejected[0] === a!.url ? a! : b!).received.length, before, 'an ejected instance receives nothing');
      } finally {
        await gw.stop();
      }
    });
  });

  test('below the panic threshold, breakers are ignored and traffic spreads over every healthy instance', async () => {
    await withUpstreams(['a', 'b', 'c', 'd'], async (ups) => {
      const gw = await startGateway(serviceYaml(ups.map((u) => u.url), `    retries: 0
    circuitBreaker: { errorThresholdPercentage: 50, volumeThreshold: 2, window: 10s, resetTimeout: 30s }
    outlierDetection: { consecutiveFailures: 1000, baseEjectionTime: 30s, maxEjectionTime: 300s, maxEjectionPercent: 50 }
    panicThreshold: 50`));
      try {
        // Trip three of four breakers: 25 % usable < 50 % panic threshold.
        for (const u of ups.slice(0, 3)) u.mode = 'error500';
        await until(async () => {
          await get(`${gw.url}/x`);
          return (await instancesOf(gw)).filter((i) => i.breaker === 'open').length === 3;
        }, 'three breakers open');
        for (const u of ups.slice(0, 3)) u.mode = 'ok';
        const counts = ups.map((u) => u.received.length);
        for (let i = 0; i < 40; i++) assert.equal((await get(`${gw.url}/x`)).status, 200);
        const got = ups.map((u, i) => u.received.length - counts[i]!);
        assert.ok(got.every((n) => n > 0), `panic routing reaches every instance: ${got.join(',')}`);
      } finally {
        await gw.stop();
      }
    });
  });
});

describe('retries', () => {
  test('a killed instance under concurrent GETs costs no client failures', async () => {
    await withUpstreams(['a', 'b', 'c'], async ([a, b, c]) => {
      const gw = await startGateway(serviceYaml([a!.url, b!.url, c!.url], '    retries: 2'));
      try {
        let stop = false;
        const failures: number[] = [];
        let served = 0;
        const worker = async () => {
          while (!stop) {
            const response = await get(`${gw.url}/x`);
            if (response.status !== 200) failures.push(response.status);
            served += 1;
          }
        };
        const workers = Array.from({ length: 8 }, worker);
        await until(() => served > 100, 'warm traffic');
        await b!.kill();
        const atKill = served;
        await until(() => served > atKill + 300, 'traffic after the kill');
        stop = true;
        await Promise.all(workers);
        assert.deepEqual(failures, []);
        assert.ok((await metricValue(gw.adminUrl, 'waygate_retries_total', { route: 'r' }))! >= 1);
      } finally {
        await gw.stop();
      }
    });
  });

  test('a POST with a small body is retried on connect failure and arrives whole', async () => {
    await withUpstreams(['live'], async ([live]) => {
      const dead = `http://127.0.0.1:${await deadPort()}`;
      const gw = await startGateway(serviceYaml([dead, live!.url], '    retries: 2\n    loadBalancer: round-robin'));
      try {
        for (let i = 0; i < 4; i++) {
          const response = await get(`${gw.url}/x`, { method: 'POST', body: `payload-${i}`, headers: { 'content-type': 'text/plain' } });
          assert.equal(response.status, 200);
          assert.equal((JSON.parse(response.body) as { body: string }).body, `payload-${i}`);
        }
        assert.ok((await metricValue(gw.adminUrl, 'waygate_retries_total', { route: 'r' }))! >= 1);
      } finally {
        await gw.stop();
      }
    });
  });

  test('a POST larger than maxRetryBodySize streams and is not retried', async () => {
    const dead = `http://127.0.0.1:${await deadPort()}`;
    const gw = await startGateway(serviceYaml([dead], '    retries: 2\n    maxRetryBodySize: 1KiB'));
    try {
      const response = await get(`${gw.url}/x`, { method: 'POST', body: 'x'.repeat(4096) });
      assert.equal(response.status, 502);
      assert.equal((JSON.parse(response.body) as { error: { code: string } }).error.code, 'UPSTREAM_UNAVAILABLE');
      assert.equal((await metricValue(gw.adminUrl, 'waygate_retries_total', { route: 'r' })) ?? 0, 0);
    } finally {
      await gw.stop();
    }
  });

  test('idempotent methods retry on the statuses in retryOn; POST does not', async () => {
    const failing = await startUpstream('f', { handler: (_req, res) => res.writeHead(503).end('busy') });
    const good = await startUpstream('g');
    const gw = await startGateway(serviceYaml([failing.url, good.url], `    retries: 1
    retryOn: [connect-failure, 503]
    circuitBreaker: { errorThresholdPercentage: 100, volumeThreshold: 100000, window: 10s, resetTimeout: 10s }
    outlierDetection: { consecutiveFailures: 100000, baseEjectionTime: 30s, maxEjectionTime: 300s, maxEjectionPercent: 50 }
    panicThreshold: 0`));
    try {
      for (let i = 0; i < 4; i++) assert.equal((await get(`${gw.url}/x`)).status, 200, 'GET moved to the good instance');
      const posts: Array<{ status: number; body: string }> = [];
      for (let i = 0; i < 4; i++) posts.push(await get(`${gw.url}/x`, { method: 'POST', body: 'p' }));
      assert.equal(posts.filter((p) => p.status === 503 && p.body === 'busy').length, 2, 'a POST answered 503 passes through, not retried');
    } finally {
      await gw.stop();
      await failing.close();
      await good.close();
    }
  });

  test('the retry budget stops retries when every instance fails', async () => {
    // Instances that hold every request until the test resets it: the test decides when attempts fail,
    // so which retries the budget sees at once is fixed, not a matter of timing.
    const held: IncomingMessage[] = [];
    let resetAtOnce = false;
    const slow = await Promise.all(['a', 'b', 'c'].map((name) => startUpstream(name, {
      handler: (req) => {
        if (resetAtOnce) req.socket.destroy();
        else held.push(req);
      },
    })));
    const received = () => slow.reduce((sum, u) => sum + u.received.length, 0);
    const resetHeld = () => {
      for (const req of held.splice(0)) req.socket.destroy();
    };
    const metrics = new GatewayMetrics({ processMetrics: false });
    const gw = await startGateway(serviceYaml(slow.map((u) => u.url), `    retries: 2
    retryBudget: { percent: 20, minConcurrent: 2 }
    circuitBreaker: { errorThresholdPercentage: 100, volumeThreshold: 100000, window: 10s, resetTimeout: 10s }
    outlierDetection: { consecutiveFailures: 100000, baseEjectionTime: 30s, maxEjectionTime: 300s, maxEjectionPercent: 50 }`), { metrics });
    const retriesSoFar = async () => (await metricValue(gw.adminUrl, 'waygate_retries_total', { route: 'r' })) ?? 0;
    try {
      let answered = 0;
      const results = Array.from({ length: 30 }, () => get(`${gw.url}/x`).then((r) => ((answered += 1), r)));
      await until(() => received() === 30, 'all 30 first attempts held by the instances');

      // All 30 first attempts fail together, with 30 requests in the budget's window. The budget grants
      // a retry while fewer than minConcurrent (2) are in flight, else while retries + 1 <= 20 % of 30:
      // retries 1-2 on the first rule, 3-6 on the second, the 7th is refused. Nothing is released in
      // between, because every retry is held too. So exactly 6 retry and 24 get 502 at once.
      resetHeld();
      await until(() => answered + (received() - 30) === 30, 'every failed first attempt answered or retried');
      assert.equal(answered, 24, 'requests refused a retry answer at once');
      assert.equal(received() - 30, 6, 'retries that reached an instance');
      assert.equal(await retriesSoFar(), 6, 'max(minConcurrent 2, 20 % of 30 requests) = 6 retries at once');

      // Now every attempt fails as it arrives. Each retry attempt gives its slot back when it ends, and
      // with 20 % of the window spent only the minConcurrent rule still grants: the 6 second attempts
      // fail, and only the last two of them to end see fewer than 2 retries in flight, whatever the
      // order, so exactly 2 get a third attempt (retries: 2 allows no fourth). 6 + 2 = 8 retries, where
      // without a budget there would be 30 x 2 = 60.
      resetAtOnce = true;
      resetHeld();
      const answers = await Promise.all(results);
      assert.deepEqual(answers.filter((r) => r.status !== 502).map((r) => r.status), [], 'every request ends in 502');
      assert.equal(await retriesSoFar(), 8);
      assert.equal(received(), 30 + 8, 'every retry reached an instance');
    } finally {
      resetAtOnce = true;
      resetHeld();
      await gw.stop();
      await Promise.all(slow.map((u) => u.close()));
    }
  });
});

describe('timeouts and fail-fast answers', () => {
  test('a connect that never completes times out after connectTimeout and moves to another instance', async () => {
    // A listener in a stopped process with a full accept queue: the kernel drops further SYNs, so connects hang.
    const child = spawn(process.execPath, ['-e', "const s=require('net').createServer(()=>{});s.listen({port:0,host:'127.0.0.1',backlog:1},()=>process.stdout.write(s.address().port+'\\n'))"], { stdio: ['ignore', 'pipe', 'inherit'] });
    const fillers: Socket[] = [];
    const good = await startUpstream('good');
    try {
      const port = await new Promise<number>((resolve) => child.stdout!.once('data', (data) => resolve(Number(String(data).trim()))));
      process.kill(child.pid!, 'SIGSTOP');
      for (let i = 0; i < 4; i++) fillers.push(connect(port, '127.0.0.1').on('error', () => {}));
      const stalled = `http://127.0.0.1:${port}`;
      const gw = await startGateway(serviceYaml([stalled, good.url], `    retries: 1
    connectTimeout: 200ms
    timeout: 10s
    panicThreshold: 0`));
      try {
        for (let i = 0; i < 4; i++) assert.equal((await get(`${gw.url}/x`)).status, 200);
        assert.ok((await metricValue(gw.adminUrl, 'waygate_retries_total', { route: 'r' }))! >= 1, 'moved after the connect timeout');
        assert.ok((await metricValue(gw.adminUrl, 'waygate_upstream_attempts_total', { service: 'svc', outcome: 'failure' }))! >= 1);
      } finally {
        await gw.stop();
      }
      const only = await startGateway(serviceYaml([stalled], '    retries: 0\n    connectTimeout: 200ms\n    timeout: 10s'));
      try {
        const answer = await get(`${only.url}/x`);
        assert.equal(answer.status, 502, 'a connect timeout is a connect failure, not a response timeout');
        assert.equal((JSON.parse(answer.body) as { error: { code: string } }).error.code, 'UPSTREAM_UNAVAILABLE');
      } finally {
        await only.stop();
      }
    } finally {
      for (const socket of fillers) socket.destroy();
      child.kill('SIGKILL');
      await good.close();
    }
  });

  test('a hanging upstream gets 504 UPSTREAM_TIMEOUT after a sub-second route timeout', async () => {
    await withUpstreams(['hang'], async ([hang]) => {
      hang!.mode = 'hang';
      const gw = await startGateway(serviceYaml([hang!.url], '    timeout: 300ms'));
      try {
        const answer = await get(`${gw.url}/x`);
        assert.equal(answer.status, 504);
        assert.equal((JSON.parse(answer.body) as { error: { code: string } }).error.code, 'UPSTREAM_TIMEOUT');
        assert.equal(await metricValue(gw.adminUrl, 'waygate_upstream_attempts_total', { service: 'svc', outcome: 'timeout' }), 1);
      } finally {
        await gw.stop();
      }
    });
  });

  test('a body that stalls mid-stream is cut after the idle timeout instead of hanging forever', async () => {
    const stalling = await startUpstream('stall', { handler: (_req, res) => { res.writeHead(200, { 'content-type': 'text/plain' }); res.write('partial'); } });
    const gw = await startGateway(serviceYaml([stalling.url], '    timeout: 300ms'));
    try {
      const outcome = await new Promise<string>((resolve) => {
        const req = httpRequest(`${gw.url}/x`, (res) => {
          let body = '';
          res.on('data', (chunk: Buffer) => (body += chunk));
          res.on('end', () => resolve(`end:${body}`));
          res.on('error', () => resolve(`aborted:${body}`));
          res.on('close', () => resolve(`closed:${body}`));
        });
        req.on('error', () => resolve('error'));
        req.end();
      });
      assert.match(outcome, /^(aborted|closed):partial$/);
    } finally {
      await gw.stop();
      await stalling.close();
    }
  });

  test('retries exhausted: 502 UPSTREAM_UNAVAILABLE; no instance: 503 NO_HEALTHY_INSTANCE', async () => {
    const dead = await Promise.all([deadPort(), deadPort()]);
    const gw = await startGateway(serviceYaml(dead.map((port) => `http://127.0.0.1:${port}`), '    retries: 1'));
    try {
      const answer = await get(`${gw.url}/x`);
      assert.equal(answer.status, 502);
      assert.equal((JSON.parse(answer.body) as { error: { code: string } }).error.code, 'UPSTREAM_UNAVAILABLE');
      assert.equal(await metricValue(gw.adminUrl, 'waygate_retries_total', { route: 'r' }), 1);
    } finally {
      await gw.stop();
    }
    const empty = await startGateway(`
registry:
  static:
    services:
      svc:
        instances: ["http://127.0.0.1:1"]
        healthCheck: { path: /health, interval: 10s, timeout: 100ms, unhealthyThreshold: 1, healthyThreshold: 1 }
routes:
  - name: r
    match: { pathPrefix: / }
    service: svc
`);
    try {
      const answer = await get(`${empty.url}/x`);
      assert.equal(answer.status, 503);
      assert.equal((JSON.parse(answer.body) as { error: { code: string } }).error.code, 'NO_HEALTHY_INSTANCE');
      assert.ok(answer.headers.get('retry-after'));
    } finally {
      await empty.stop();
    }
  });
});
