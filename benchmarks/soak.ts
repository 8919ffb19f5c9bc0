/**
 * `npm run bench:soak`: waygate for a long stretch (SOAK_DURATION s, default 600) under mixed, partly
 * hostile traffic, sampling its memory over time and classifying every outcome.
 *
 * Topology (every listener on 127.0.0.1):
 *
 *   bench process ── all clients below, paced (open loop, per-stream in-flight caps) ──► waygate child
 *                                                                          (bin/waygate.js from a copy of dist/)
 *        ├─ /app/*    → service `app`: 3 upstream child processes (this file, role `app PORT`);
 *        │              one of them is SIGKILLed every SOAK_FLAP_EVERY s and restarted on its port SOAK_FLAP_DOWN s later
 *        └─ /reset /drip /stall /hang /huge-headers → one service each, served by ONE upstream child
 *                       (this file, role `odd KIND=PORT ...`, one listener per kind)
 *
 * Streams (rates at SOAK_RATE_SCALE=1; see STREAMS):
 *   plain    GET and POST (small JSON) on keep-alive connections and on fresh ones (agent: false)
 *   aborts   GET /app/slow (answered after 3 s) destroyed by the client 3–20 ms after it was sent
 *   odd      /reset (200, content-length 100000, 10000 bytes, then the upstream destroys its socket),
 *            /drip (a byte every 200 ms for 3 s; each pause is below the route's 1 s timeout),
 *            /stall (100 bytes, then 3 s of silence: the 1 s idle-body timeout must cut it),
 *            /hang (no response headers: 504 after the route's 1 s timeout),
 *            /huge-headers (80 KiB of response headers, over the gateway's 64 KiB: 502 UPSTREAM_INVALID_RESPONSE)
 *   hostile  slowloris (raw sockets adding one header byte every 500 ms: cut at headersTimeout 2 s),
 *            20 KiB request headers (431), bad Host headers (400), a 2 MiB Content-Length (413)
 *
 * Samples (after SOAK_WARMUP s, every SOAK_SAMPLE_EVERY s, at the end under load, and once more after the
 * load has drained and 5 s of idle): VmRSS of the gateway from /proc/<pid>/status, heap / external
 * memory from the admin /metrics, open file descriptors, gateway CPU, requests so far.
 *
 * Targets: RSS growth from minute 2 to the end < 10 %; unexpected 5xx (any 5xx on the plain streams) = 0.
 *
 * Env: SOAK_DURATION (s of traffic, default 600), SOAK_WARMUP (s before the first sample, 30),
 *      SOAK_SAMPLE_EVERY (s, 60), SOAK_RATE_SCALE (multiplies every stream's rate, 1),
 *      SOAK_FLAP_EVERY (s between instance kills, 20; 0 = no flapping), SOAK_FLAP_DOWN (s an instance stays dead, 5),
 *      SOAK_SLOWLORIS (slowloris sockets held at once, about 40), BENCH_SKIP_BUILD=1 (use dist/ as is).
 * Results: benchmarks/results/soak-latest.json.
 */
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, type IncomingMessage, type ServerResponse, createServer, request as httpRequest } from 'node:http';
import { connect as netConnect } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type Child,
  ROOT,
  cpuTimeMs,
  freePort,
  isMain,
  machineInfo,
  printTable,
  sleep,
  spawnNode,
  stopAll,
  stopChild,
  waitUntilReady,
  ensureBuilt,
  snapshotWaygate,
  vmRssBytes,
} from './lib.ts';

const SELF = fileURLToPath(import.meta.url);

// ───────────────────────────── knobs & constants ─────────────────────────────

function envSeconds(name: string, fallback: number, allowZero = false): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0 || (value === 0 && !allowZero)) {
    throw new Error(`${name} must be a ${allowZero ? 'non-negative' : 'positive'} number, got "${raw}"`);
  }
  return value;
}

/** Gateway server limits written into the YAML (and used to judge the hostile clients). */
const HEADERS_TIMEOUT_MS = 2000;
/** Node checks the header deadline on a 1 s tick (the gateway sets connectionsCheckingInterval to 1 s). */
const SLOWLORIS_CUT_LIMIT_MS = HEADERS_TIMEOUT_MS + 1500;
const SLOWLORIS_GIVE_UP_MS = 10_000;
const MAX_BODY = 1024 * 1024;
/** Route timeout of /drip, /stall and /hang. */
const SHORT_TIMEOUT_MS = 1000;

const SLOW_ANSWER_MS = 3000; // /app/slow
const RESET_LENGTH = 100_000;
const RESET_AFTER_BYTES = 10_000;
const DRIP_BYTES = 15; // one every 200 ms: 3 s in all
const DRIP_EVERY_MS = 200;
const STALL_LENGTH = 1000;
const STALL_FIRST_BYTES = 100;
const STALL_PAUSE_MS = 3000;
const HUGE_HEADER_COUNT = 10;
const HUGE_HEADER_BYTES = 8 * 1024; // 10 x 8 KiB = 80 KiB > the gateway's 64 KiB limit
const BIG_REQUEST_HEADER_BYTES = 20 * 1024; // > Node's 16 KiB default

/** A 5xx this long after a restarted instance is ready still counts as "in a flap window". */
const FLAP_GRACE_MS = 2000;

// ───────────────────────────── upstream children ─────────────────────────────

/** Listens, retrying briefly while the port is still held (a restart on the port of a killed instance). */
async function listenOn(server: ReturnType<typeof createServer>, port: number): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      server.listen(port, '127.0.0.1');
      await once(server, 'listening');
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 50) throw error;
      await sleep(100);
    }
  }
}

function exitWithParent(): void {
  process.on('disconnect', () => process.exit(0)); // bench gone (even SIGKILLed): do not linger
  process.on('SIGTERM', () => process.exit(0));
}

/** One instance of service `app`: GET answers a small JSON body, POST echoes what it received, /app/slow waits 3 s. */
async function appMain(port: number): Promise<void> {
  const okBody = Buffer.from(JSON.stringify({ ok: true, instance: port }));
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? '/';
    if (url.startsWith('/app/slow')) {
      req.resume();
      const timer = setTimeout(() => {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': okBody.length });
        res.end(okBody);
      }, SLOW_ANSWER_MS);
      res.once('close', () => clearTimeout(timer));
      return;
    }
    if (req.method === 'POST') {
      const chunks: Buffer[] = [];
      let received = 0;
      req.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received <= 65_536) chunks.push(chunk);
      });
      req.on('end', () => {
        let parsed = false;
        try {
          JSON.parse(Buffer.concat(chunks).toString('utf8'));
          parsed = true;
        } catch {
          // reported below
        }
        const body = Buffer.from(JSON.stringify({ ok: parsed, instance: port, received }));
        res.writeHead(parsed ? 200 : 400, { 'content-type': 'application/json', 'content-length': body.length });
        res.end(body);
      });
      return;
    }
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': okBody.length });
    res.end(okBody);
  });
  server.keepAliveTimeout = 65_000; // longer than the gateway pool's idle timeout
  await listenOn(server, port);
  process.send?.({ ready: port });
  exitWithParent();
}

type OddKind = 'reset' | 'drip' | 'stall' | 'hang' | 'huge-headers';
const ODD_KINDS: readonly OddKind[] = ['reset', 'drip', 'stall', 'hang', 'huge-headers'];

function oddHandler(kind: OddKind): (req: IncomingMessage, res: ServerResponse) => void {
  const bytes = (n: number) => Buffer.alloc(n, 0x78);
  switch (kind) {
    case 'reset':
      // Promise 100000 bytes, send 10000, then drop the connection.
      return (req, res) => {
        req.resume();
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': RESET_LENGTH });
        res.write(bytes(RESET_AFTER_BYTES), () => setTimeout(() => res.socket?.destroy(), 5));
      };
    case 'drip':
      // A byte every 200 ms for 3 s: every pause is shorter than the route's 1 s timeout.
      return (req, res) => {
        req.resume();
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': DRIP_BYTES });
        let sent = 0;
        const timer = setInterval(() => {
          sent += 1;
          if (sent >= DRIP_BYTES) {
            clearInterval(timer);
            res.end(bytes(1));
          } else {
            res.write(bytes(1));
          }
        }, DRIP_EVERY_MS);
        res.once('close', () => clearInterval(timer));
      };
    case 'stall':
      // 100 bytes, then a pause three times the route's idle-body timeout.
      return (req, res) => {
        req.resume();
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': STALL_LENGTH });
        res.write(bytes(STALL_FIRST_BYTES));
        const timer = setTimeout(() => res.end(bytes(STALL_LENGTH - STALL_FIRST_BYTES)), STALL_PAUSE_MS);
        res.once('close', () => clearTimeout(timer));
      };
    case 'hang':
      // Never answers; the gateway must give up after the route timeout (and close this socket).
      return (req) => {
        req.resume();
      };
    case 'huge-headers': {
      const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': 2 };
      for (let i = 0; i < HUGE_HEADER_COUNT; i++) headers[`x-huge-${i}`] = 'h'.repeat(HUGE_HEADER_BYTES);
      return (req, res) => {
        req.resume();
        res.writeHead(200, headers);
        res.end('{}');
      };
    }
  }
}

/** The "odd" upstream: one listener per misbehaviour, all in one process (it is never killed). */
async function oddMain(specs: readonly string[]): Promise<void> {
  for (const spec of specs) {
    const [kind, port] = spec.split('=') as [OddKind, string];
    if (!ODD_KINDS.includes(kind)) throw new Error(`unknown odd kind ${kind}`);
    const server = createServer(oddHandler(kind));
    server.keepAliveTimeout = 65_000;
    await listenOn(server, Number(port));
  }
  process.send?.({ ready: specs.join(',') });
  exitWithParent();
}

/** Spawns an upstream child of this file and waits for its { ready } message. */
async function spawnUpstream(name: string, args: readonly string[]): Promise<Child> {
  const child = spawnNode(name, ['--import', 'tsx', SELF, ...args], { ipc: true, echoStderr: true });
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} not ready after 20 s\n${child.tail.join('\n')}`)), 20_000);
    child.proc.once('message', () => {
      clearTimeout(timer);
      resolve();
    });
    void child.exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code}) before it was ready\n${child.tail.join('\n')}`));
    });
  });
  await ready;
  return child;
}

// ───────────────────────────── gateway ─────────────────────────────



interface OddPorts {
  readonly reset: number;
  readonly drip: number;
  readonly stall: number;
  readonly hang: number;
  readonly 'huge-headers': number;
}

/**
 * Each misbehaving route has its own service, so its failures never touch the breakers of `app`. Its
 * breaker and outlier detection are set out of reach (a 100 % failing instance would otherwise be
 * opened within seconds and the route would answer 503 CIRCUIT_OPEN from then on, never exercising
 * the failure path under soak), and it does not retry.
 */
function gatewayConfig(port: number, adminPort: number, appInstances: readonly string[], odd: OddPorts): string {
  const url = (p: number) => JSON.stringify(`http://127.0.0.1:${p}`);
  const never = 'retries: 0, circuitBreaker: { volumeThreshold: 1000000000 }, outlierDetection: { consecutiveFailures: 1000000000 }';
  return `# written by benchmarks/soak.ts; lives only for one run
server: { host: 127.0.0.1, port: ${port}, headersTimeout: ${HEADERS_TIMEOUT_MS / 1000}s, requestTimeout: 10s, maxBodySize: 1MiB }
admin: { host: 127.0.0.1, port: ${adminPort} }
shutdown: { drainDelay: 0s, timeout: 2s }
registry:
  static:
    services:
      app:
        instances: [${appInstances.map((u) => JSON.stringify(u)).join(', ')}]
      odd-reset: { instances: [${url(odd.reset)}] }
      odd-drip: { instances: [${url(odd.drip)}] }
      odd-stall: { instances: [${url(odd.stall)}] }
      odd-hang: { instances: [${url(odd.hang)}] }
      odd-huge-headers: { instances: [${url(odd['huge-headers'])}] }
routes:
  - { name: app, match: { pathPrefix: /app }, service: app, timeout: 5s, retries: 2 }
  - { name: reset, match: { pathPrefix: /reset }, service: odd-reset, timeout: 5s, ${never} }
  - { name: drip, match: { pathPrefix: /drip }, service: odd-drip, timeout: 1s, ${never} }
  - { name: stall, match: { pathPrefix: /stall }, service: odd-stall, timeout: 1s, ${never} }
  - { name: hang, match: { pathPrefix: /hang }, service: odd-hang, timeout: 1s, ${never} }
  - { name: huge-headers, match: { pathPrefix: /huge-headers }, service: odd-huge-headers, timeout: 5s, ${never} }
`;
}

interface Gateway {
  readonly child: Child;
  readonly port: number;
  readonly admin: string;
  /** Gateway log lines (pino JSON, level warn and up) by message, and the first few raw lines. */
  readonly logByMsg: Map<string, number>;
  readonly logFirst: string[];
  logLines: number;
}

async function startGateway(bin: string, dir: string, appInstances: readonly string[], odd: OddPorts): Promise<Gateway> {
  const [port, adminPort] = [await freePort(), await freePort()];
  const file = path.join(dir, 'waygate-soak.yaml');
  writeFileSync(file, gatewayConfig(port, adminPort, appInstances, odd));
  const child = spawnNode('waygate', [bin, 'start', '--config', file], { env: { WAYGATE_LOG_LEVEL: 'warn' }, group: true });
  const gateway: Gateway = { child, port, admin: `http://127.0.0.1:${adminPort}`, logByMsg: new Map(), logFirst: [], logLines: 0 };
  for (const stream of [child.proc.stdout, child.proc.stderr]) {
    let partial = '';
    stream?.on('data', (chunk: string | Buffer) => {
      const lines = (partial + chunk.toString()).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        if (!line) continue;
        gateway.logLines += 1;
        if (gateway.logFirst.length < 10) gateway.logFirst.push(line.slice(0, 400));
        let msg = line.slice(0, 120);
        try {
          const entry = JSON.parse(line) as { msg?: string; level?: number };
          msg = `[${entry.level ?? '?'}] ${entry.msg ?? '(no msg)'}`;
        } catch {
          // not JSON: keep the raw start
        }
        if (gateway.logByMsg.size < 200 || gateway.logByMsg.has(msg)) gateway.logByMsg.set(msg, (gateway.logByMsg.get(msg) ?? 0) + 1);
      }
    });
  }
  await waitUntilReady(`${gateway.admin}/health/ready`, { child, timeoutMs: 60_000 });
  return gateway;
}

/** Prometheus text → `name{labels}` → value, for the waygate_ series. */
async function scrape(admin: string): Promise<Map<string, number> | undefined> {
  try {
    const text = await (await fetch(`${admin}/metrics`, { signal: AbortSignal.timeout(3000) })).text();
    const series = new Map<string, number>();
    for (const line of text.split('\n')) {
      if (!line.startsWith('waygate_')) continue;
      const cut = line.lastIndexOf(' ');
      series.set(line.slice(0, cut), Number(line.slice(cut + 1)));
    }
    return series;
  } catch {
    return undefined;
  }
}


function openFds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return undefined;
  }
}

// ───────────────────────────── clients ─────────────────────────────

interface Outcome {
  readonly kind: string;
  readonly detail?: string;
  /** For the slowloris stream: ms from connect until the gateway closed the socket. */
  readonly cutMs?: number;
}

function gatewayCode(body: string): string | undefined {
  try {
    return (JSON.parse(body) as { error?: { code?: string } }).error?.code;
  } catch {
    return undefined;
  }
}

const statusKind = (status: number, body: string) =>
  status >= 200 && status < 300 ? '2xx' : `${status} ${gatewayCode(body) ?? '(not a gateway error)'}`;

const errorKind = (error: NodeJS.ErrnoException) => {
  if (error.code === 'ECONNRESET' || error.code === 'EPIPE') return 'reset before response';
  if (error.code === 'ECONNREFUSED') return 'connection refused';
  return `client error ${error.code ?? error.message}`;
};

interface HttpCall {
  readonly port: number;
  readonly method: 'GET' | 'POST';
  readonly path: string;
  readonly agent: Agent | false;
  readonly headers?: Record<string, string | number>;
  readonly body?: Buffer;
  /** Send the headers only, never the announced body (the 413 probe). */
  readonly headersOnly?: boolean;
  readonly timeoutMs: number;
  /** Destroy the request this many ms after it was sent. */
  readonly abortAfterMs?: number;
  /** Checks a complete 2xx body; returns a problem description or undefined. */
  readonly check2xx?: (body: string) => string | undefined;
}

/** One HTTP/1.1 request; every way it can end becomes an Outcome (it never rejects). */
function callHttp(call: HttpCall): Promise<Outcome> {
  return new Promise<Outcome>((resolve) => {
    let settled = false;
    const timers: NodeJS.Timeout[] = [];
    const settle = (outcome: Outcome) => {
      if (settled) return;
      settled = true;
      for (const timer of timers) clearTimeout(timer);
      resolve(outcome);
    };
    const req = httpRequest({ host: '127.0.0.1', port: call.port, method: call.method, path: call.path, agent: call.agent, headers: call.headers });
    let responded = false;
    req.on('response', (res) => {
      responded = true;
      const chunks: Buffer[] = [];
      let bytes = 0;
      res.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        if (bytes <= 65_536) chunks.push(chunk);
      });
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        const status = res.statusCode ?? 0;
        const kind = statusKind(status, body);
        const problem = kind === '2xx' ? call.check2xx?.(body) : undefined;
        settle(problem ? { kind: '2xx with a wrong body', detail: `${problem}: ${body.slice(0, 200)}` } : { kind, detail: `${status} ${body.slice(0, 200)}` });
        if (call.headersOnly) req.destroy();
      });
      res.on('close', () => {
        if (!res.complete) settle({ kind: 'cut body', detail: `${res.statusCode} after ${bytes} of ${res.headers['content-length'] ?? '?'} bytes` });
      });
      res.on('error', () => undefined); // 'close' classifies it
    });
    req.on('error', (error: NodeJS.ErrnoException) => {
      if (!responded) settle({ kind: errorKind(error), detail: `${error.code ?? ''} ${error.message}` });
    });
    timers.push(setTimeout(() => {
      settle({ kind: 'client timeout', detail: `no ${responded ? 'end of body' : 'response'} within ${call.timeoutMs} ms` });
      req.destroy();
    }, call.timeoutMs));
    if (call.abortAfterMs !== undefined) {
      timers.push(setTimeout(() => {
        settle(responded ? { kind: 'response before the client abort' } : { kind: 'client abort' });
        req.destroy();
      }, call.abortAfterMs));
    }
    if (call.headersOnly) req.flushHeaders();
    else req.end(call.body);
  });
}

interface RawResponse {
  status?: number;
  body: string;
  complete: boolean;
}

function parseRaw(buffer: Buffer): RawResponse {
  const text = buffer.toString('latin1');
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1];
  const headEnd = text.indexOf('\r\n\r\n');
  if (headEnd === -1) return { status: status ? Number(status) : undefined, body: '', complete: false };
  const length = /\r\ncontent-length:\s*(\d+)/i.exec(text.slice(0, headEnd))?.[1];
  const body = text.slice(headEnd + 4);
  return { status: status ? Number(status) : undefined, body, complete: length !== undefined && body.length >= Number(length) };
}

/** Writes a whole raw request on a fresh socket and classifies what comes back. */
function callRaw(port: number, payload: string, label: string, timeoutMs: number): Promise<Outcome> {
  return new Promise<Outcome>((resolve) => {
    let settled = false;
    const chunks: Buffer[] = [];
    const socket = netConnect(port, '127.0.0.1');
    const timer = setTimeout(() => finish({ kind: 'client timeout', detail: `${label}: no complete answer within ${timeoutMs} ms` }), timeoutMs);
    function finish(outcome: Outcome): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(outcome);
    }
    const fromData = (): Outcome | undefined => {
      const raw = parseRaw(Buffer.concat(chunks));
      if (raw.status === undefined) return undefined;
      return { kind: statusKind(raw.status, raw.body), detail: `${label}: ${raw.status} ${raw.body.slice(0, 200)}` };
    };
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      if (parseRaw(Buffer.concat(chunks)).complete) finish(fromData()!);
    });
    socket.on('close', () => finish(fromData() ?? { kind: 'closed without a response', detail: label }));
    socket.on('error', (error: NodeJS.ErrnoException) => finish(fromData() ?? { kind: errorKind(error), detail: `${label}: ${error.message}` }));
    socket.write(payload);
  });
}

/** A slowloris client: a request line and Host, then one more header byte every 500 ms, forever. */
function slowloris(port: number): Promise<Outcome> {
  return new Promise<Outcome>((resolve) => {
    const startedAt = performance.now();
    const chunks: Buffer[] = [];
    let settled = false;
    const socket = netConnect(port, '127.0.0.1');
    const drip = setInterval(() => {
      if (socket.writable) socket.write('a');
    }, 500);
    const giveUp = setTimeout(() => finish('not cut', true), SLOWLORIS_GIVE_UP_MS);
    function finish(how: string, ourDoing = false): void {
      if (settled) return;
      settled = true;
      clearInterval(drip);
      clearTimeout(giveUp);
      socket.destroy();
      const cutMs = performance.now() - startedAt;
      if (ourDoing) {
        resolve({ kind: `slowloris ${how} within ${SLOWLORIS_GIVE_UP_MS / 1000} s`, detail: `still open after ${cutMs.toFixed(0)} ms` });
        return;
      }
      const raw = parseRaw(Buffer.concat(chunks));
      const answered = raw.status === undefined ? how : statusKind(raw.status, raw.body);
      const late = cutMs > SLOWLORIS_CUT_LIMIT_MS;
      resolve({ kind: late ? `cut late (> ${SLOWLORIS_CUT_LIMIT_MS} ms): ${answered}` : answered, detail: `${answered} after ${cutMs.toFixed(0)} ms`, cutMs });
    }
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('close', () => finish('closed without a response'));
    socket.on('error', (error: NodeJS.ErrnoException) => finish(error.code === 'ECONNRESET' || error.code === 'EPIPE' ? 'reset by the gateway' : `client error ${error.code}`));
    socket.write('GET /app/slowloris HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ');
  });
}

const BAD_HOSTS: ReadonlyArray<{ label: string; headers: string }> = [
  { label: 'space in Host', headers: 'Host: bad host\r\n' },
  { label: 'port out of range', headers: 'Host: 127.0.0.1:99999\r\n' },
  { label: 'two Host lines', headers: 'Host: 127.0.0.1\r\nHost: example.com\r\n' },
  { label: 'no Host', headers: '' },
  { label: 'userinfo in Host', headers: 'Host: user@127.0.0.1\r\n' },
];

// ───────────────────────────── streams ─────────────────────────────

type Group = 'plain' | 'aborts' | 'odd' | 'hostile';

interface StreamDef {
  readonly id: string;
  readonly group: Group;
  readonly what: string;
  /** Starts per second (times SOAK_RATE_SCALE). */
  readonly rate: number;
  /** A start that would exceed this many in flight is skipped (and counted). */
  readonly maxInFlight: number;
  /** The outcome kinds this stream must produce; anything else is unexpected. */
  readonly expected: readonly string[];
  readonly run: (i: number) => Promise<Outcome>;
}

interface StreamState {
  readonly def: StreamDef;
  scheduled: number;
  started: number;
  skipped: number;
  inFlight: number;
  completed: number;
  readonly kinds: Map<string, number>;
  readonly samples: Map<string, string[]>;
  /** ms, for 2xx answers of plain streams. */
  readonly latencies: number[];
  readonly cutTimes: number[];
}

function smallJson(i: number): Buffer {
  return Buffer.from(JSON.stringify({ id: i, kind: 'soak', at: Date.now(), tags: ['a', 'b', 'c'], note: 'x'.repeat(64 + (i % 128)) }));
}

function checkGet(body: string): string | undefined {
  try {
    return (JSON.parse(body) as { ok?: boolean }).ok === true ? undefined : 'ok is not true';
  } catch {
    return 'not JSON';
  }
}

function checkPost(sent: number): (body: string) => string | undefined {
  return (body) => {
    try {
      const parsed = JSON.parse(body) as { ok?: boolean; received?: number };
      return parsed.ok === true && parsed.received === sent ? undefined : `upstream received ${parsed.received} of ${sent} bytes`;
    } catch {
      return 'not JSON';
    }
  };
}

function buildStreams(port: number, slowlorisSockets: number): StreamDef[] {
  const keepAlive = new Agent({ keepAlive: true, maxSockets: 16, keepAliveMsecs: 1000 });
  const oddAgent = new Agent({ keepAlive: true, maxSockets: 32 });
  const json = { 'content-type': 'application/json' };
  const post = (agent: Agent | false) => (i: number) => {
    const body = smallJson(i);
    return callHttp({ port, method: 'POST', path: `/app/items?i=${i}`, agent, headers: { ...json, 'content-length': body.length }, body, timeoutMs: 10_000, check2xx: checkPost(body.length) });
  };
  const get = (agent: Agent | false) => (i: number) => callHttp({ port, method: 'GET', path: `/app/items/${i}`, agent, timeoutMs: 10_000, check2xx: checkGet });
  const odd = (route: string, timeoutMs: number) => () => callHttp({ port, method: 'GET', path: `/${route}/x`, agent: oddAgent, timeoutMs });
  // A slowloris socket lives ~2–3 s, so this rate keeps about `slowlorisSockets` of them open.
  const slowlorisRate = slowlorisSockets / 2.7;
  return [
    { id: 'ka-get', group: 'plain', what: 'GET /app/items/N, keep-alive (16 sockets)', rate: 90, maxInFlight: 32, expected: ['2xx'], run: get(keepAlive) },
    { id: 'ka-post', group: 'plain', what: 'POST /app/items, ~150 B JSON, keep-alive', rate: 45, maxInFlight: 32, expected: ['2xx'], run: post(keepAlive) },
    { id: 'fresh-get', group: 'plain', what: 'GET /app/items/N, new connection each', rate: 20, maxInFlight: 32, expected: ['2xx'], run: get(false) },
    { id: 'fresh-post', group: 'plain', what: 'POST /app/items, new connection each', rate: 10, maxInFlight: 32, expected: ['2xx'], run: post(false) },
    {
      id: 'abort', group: 'aborts', what: 'GET /app/slow (3 s), client destroys it after 3-20 ms', rate: 10, maxInFlight: 40, expected: ['client abort'],
      run: (i) => callHttp({ port, method: 'GET', path: '/app/slow', agent: false, timeoutMs: 10_000, abortAfterMs: 3 + (i * 7) % 18 }),
    },
    { id: 'reset', group: 'odd', what: '/reset: upstream sends 10000 of 100000 bytes, then destroys its socket', rate: 5, maxInFlight: 20, expected: ['cut body'], run: odd('reset', 10_000) },
    { id: 'drip', group: 'odd', what: '/drip: a byte every 200 ms for 3 s (route timeout 1 s = longest pause)', rate: 2, maxInFlight: 20, expected: ['2xx'], run: odd('drip', 10_000) },
    { id: 'stall', group: 'odd', what: '/stall: 100 bytes, then 3 s silent (route timeout 1 s)', rate: 2, maxInFlight: 20, expected: ['cut body'], run: odd('stall', 10_000) },
    { id: 'hang', group: 'odd', what: '/hang: no response headers (route timeout 1 s)', rate: 2, maxInFlight: 20, expected: ['504 UPSTREAM_TIMEOUT'], run: odd('hang', 10_000) },
    { id: 'huge-headers', group: 'odd', what: '/huge-headers: 80 KiB of response headers', rate: 5, maxInFlight: 20, expected: ['502 UPSTREAM_INVALID_RESPONSE'], run: odd('huge-headers', 10_000) },
    {
      id: 'slowloris', group: 'hostile', what: `slowloris: ~${slowlorisSockets} raw sockets adding a header byte every 500 ms`, rate: slowlorisRate, maxInFlight: Math.ceil(slowlorisSockets * 1.5),
      expected: ['408 REQUEST_TIMEOUT', 'closed without a response', 'reset by the gateway'], run: () => slowloris(port),
    },
    {
      id: 'big-headers', group: 'hostile', what: `GET with a ${BIG_REQUEST_HEADER_BYTES / 1024} KiB header, new connection`, rate: 5, maxInFlight: 20, expected: ['431 HEADERS_TOO_LARGE'],
      run: () => callHttp({ port, method: 'GET', path: '/app/big-headers', agent: false, headers: { 'x-filler': 'f'.repeat(BIG_REQUEST_HEADER_BYTES) }, timeoutMs: 10_000 }),
    },
    {
      id: 'bad-host', group: 'hostile', what: `raw request with a bad Host (${BAD_HOSTS.length} variants in turn)`, rate: 5, maxInFlight: 20, expected: ['400 BAD_REQUEST'],
      run: (i) => {
        const variant = BAD_HOSTS[i % BAD_HOSTS.length]!;
        return callRaw(port, `GET /app/bad-host HTTP/1.1\r\n${variant.headers}Connection: close\r\n\r\n`, variant.label, 10_000);
      },
    },
    {
      id: 'big-body', group: 'hostile', what: 'POST announcing Content-Length 2 MiB (limit 1 MiB), body never sent', rate: 2, maxInFlight: 20, expected: ['413 PAYLOAD_TOO_LARGE'],
      run: () => callHttp({ port, method: 'POST', path: '/app/upload', agent: false, headers: { ...json, 'content-length': 2 * MAX_BODY }, headersOnly: true, timeoutMs: 10_000 }),
    },
  ];
}

// ───────────────────────────── the run ─────────────────────────────

interface AppInstance {
  readonly index: number;
  readonly port: number;
  child: Child;
}

interface Flap {
  readonly instance: number;
  readonly port: number;
  readonly killedAtS: number;
  readyAtS?: number;
}

interface UnexpectedEvent {
  /** When the outcome arrived and when the request was sent, s since traffic start. */
  readonly tS: number;
  readonly sentAtS: number;
  readonly stream: string;
  readonly kind: string;
  readonly detail?: string;
  readonly inFlapWindow: boolean;
  readonly flap?: string;
}

interface MemorySample {
  readonly label: string;
  readonly tS: number;
  readonly rssMb?: number;
  readonly metricsRssMb?: number;
  readonly heapUsedMb?: number;
  readonly heapTotalMb?: number;
  readonly externalMb?: number;
  readonly fds?: number;
  readonly requests: number;
  readonly reqPerS?: number;
  readonly gatewayCpuPct?: number;
  readonly unexpected: number;
}

const fmt = (value: number | undefined, digits = 0) =>
  value === undefined || !Number.isFinite(value) ? '-' : value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

function percentile(values: readonly number[], p: number): number | undefined {
  if (!values.length) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function gitState(): { head: string; uncommittedSrcFiles: number } {
  const head = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim() || '?';
  const status = spawnSync('git', ['status', '--porcelain', '--', 'src'], { cwd: ROOT, encoding: 'utf8' }).stdout;
  return { head, uncommittedSrcFiles: status.split('\n').filter(Boolean).length };
}

async function soak(): Promise<void> {
  const startedAt = Date.now();
  const durationS = envSeconds('SOAK_DURATION', 600);
  const warmupS = Math.min(envSeconds('SOAK_WARMUP', 30), durationS);
  const sampleEveryS = envSeconds('SOAK_SAMPLE_EVERY', 60);
  const rateScale = envSeconds('SOAK_RATE_SCALE', 1);
  const flapEveryS = envSeconds('SOAK_FLAP_EVERY', 20, true);
  const flapDownS = envSeconds('SOAK_FLAP_DOWN', 5);
  const slowlorisSockets = envSeconds('SOAK_SLOWLORIS', 40);
  if (flapEveryS > 0 && flapDownS >= flapEveryS) throw new Error('SOAK_FLAP_DOWN must be shorter than SOAK_FLAP_EVERY');

  const machine = machineInfo();
  const git = gitState();
  process.stdout.write(`machine: ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, ${machine.platform}\n`);
  process.stdout.write(`1-min load average before: ${(os.loadavg()[0] ?? 0).toFixed(2)}\n`);
  const build = ensureBuilt();
  process.stdout.write(`waygate: ${build}, HEAD ${git.head}${git.uncommittedSrcFiles ? `, ${git.uncommittedSrcFiles} uncommitted file(s) under src/ in the checkout` : ''}\n`);

  const tmp = mkdtempSync(path.join(os.tmpdir(), 'waygate-soak-'));
  process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));
  const bin = snapshotWaygate(tmp);

  // Upstreams: 3 app instances, one process each (so one can be killed), and the odd one.
  const apps: AppInstance[] = [];
  for (let index = 0; index < 3; index++) {
    const port = await freePort();
    apps.push({ index, port, child: await spawnUpstream(`app-${index + 1}:${port}`, ['app', String(port)]) });
  }
  const oddPorts = {} as Record<OddKind, number>;
  for (const kind of ODD_KINDS) oddPorts[kind] = await freePort();
  await spawnUpstream('odd', ['odd', ...ODD_KINDS.map((kind) => `${kind}=${oddPorts[kind]}`)]);

  const gateway = await startGateway(bin, tmp, apps.map((a) => `http://127.0.0.1:${a.port}`), oddPorts as OddPorts);
  const gatewayPid = gateway.child.proc.pid;
  let crash: { atS: number; exit: number | string; tail: string[] } | undefined;
  const probe = await fetch(`http://127.0.0.1:${gateway.port}/app/probe`);
  const probeText = await probe.text();
  if (probe.status !== 200 || !probeText.includes('"ok":true')) throw new Error(`probe GET /app/probe answered ${probe.status}: ${probeText.slice(0, 200)}`);

  const streams: StreamState[] = buildStreams(gateway.port, slowlorisSockets).map((def) => ({
    def: { ...def, rate: def.rate * rateScale },
    scheduled: 0, started: 0, skipped: 0, inFlight: 0, completed: 0,
    kinds: new Map(), samples: new Map(), latencies: [], cutTimes: [],
  }));
  const totalRate = streams.reduce((sum, s) => sum + s.def.rate, 0);
  process.stdout.write(`traffic: ${streams.length} streams, ~${fmt(totalRate)} starts/s in all, for ${durationS} s; ` +
    `flapping: ${flapEveryS > 0 ? `one app instance SIGKILLed every ${flapEveryS} s, restarted ${flapDownS} s later` : 'off'}\n`);
  process.stdout.write(`samples: after ${warmupS} s, every ${sampleEveryS} s, at the end (under load) and after the drain + 5 s idle\n\n`);

  const t0 = performance.now();
  const nowS = () => (performance.now() - t0) / 1000;
  let stopping = false;
  let stopWake: () => void = () => undefined;
  const stopped = new Promise<void>((resolve) => (stopWake = resolve));
  const nap = (ms: number) => Promise.race([sleep(ms), stopped]);
  void gateway.child.exited.then((exit) => {
    if (stopping) return;
    crash = { atS: nowS(), exit, tail: [...gateway.child.tail] };
    process.stdout.write(`\nGATEWAY EXITED at ${crash.atS.toFixed(1)} s (${exit}); stopping the traffic\n${crash.tail.join('\n')}\n`);
    stopping = true;
    stopWake();
  });

  const flaps: Flap[] = [];
  const flapAt = (tS: number) => flaps.find((f) => tS >= f.killedAtS && tS <= (f.readyAtS ?? Number.POSITIVE_INFINITY) + FLAP_GRACE_MS / 1000);
  const unexpected: UnexpectedEvent[] = [];
  let unexpectedCount = 0;
  let unexpected5xx = 0;
  let unexpected5xxInFlap = 0;
  let completedTotal = 0;

  const record = (state: StreamState, outcome: Outcome, startS: number, latencyMs: number) => {
    state.completed += 1;
    completedTotal += 1;
    state.kinds.set(outcome.kind, (state.kinds.get(outcome.kind) ?? 0) + 1);
    const kept = state.samples.get(outcome.kind) ?? [];
    if (kept.length < 3 && outcome.detail) kept.push(outcome.detail);
    state.samples.set(outcome.kind, kept);
    if (outcome.cutMs !== undefined) state.cutTimes.push(outcome.cutMs);
    if (state.def.group === 'plain' && outcome.kind === '2xx') state.latencies.push(latencyMs);
    if (state.def.expected.includes(outcome.kind)) return;
    unexpectedCount += 1;
    const endS = nowS();
    // "In a flap window" if the request overlapped one (started or ended inside it).
    const flap = flapAt(startS) ?? flapAt(endS);
    const flapping = flap !== undefined;
    const is5xx = state.def.group === 'plain' && /^5\d\d /.test(outcome.kind);
    if (is5xx) {
      unexpected5xx += 1;
      if (flapping) unexpected5xxInFlap += 1;
    }
    if (unexpected.length < 300) {
      unexpected.push({
        tS: Number(endS.toFixed(3)), sentAtS: Number(startS.toFixed(3)), stream: state.def.id, kind: outcome.kind, detail: outcome.detail, inFlapWindow: flapping,
        flap: flap ? `instance #${flap.instance} killed at ${flap.killedAtS.toFixed(3)} s` : undefined,
      });
    }
  };

  const launch = (state: StreamState) => {
    const i = state.started++;
    state.inFlight += 1;
    const startS = nowS();
    const began = performance.now();
    state.def.run(i).then(
      (outcome) => record(state, outcome, startS, performance.now() - began),
      (error: Error) => record(state, { kind: `bench error ${error.name}`, detail: error.message }, startS, 0),
    ).finally(() => (state.inFlight -= 1));
  };

  // Open-loop pacing: every 10 ms each stream starts what its rate says is due by now.
  const driving = new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const elapsedS = nowS();
      if (elapsedS >= durationS || stopping) {
        clearInterval(timer);
        resolve();
        return;
      }
      for (const state of streams) {
        const due = Math.floor(elapsedS * state.def.rate);
        while (state.scheduled < due) {
          state.scheduled += 1;
          if (state.inFlight >= state.def.maxInFlight) state.skipped += 1;
          else launch(state);
        }
      }
    }, 10);
  });

  // Flapping: at flapEvery, 2*flapEvery, ... SIGKILL the next app instance; restart it flapDown s later.
  const flapping = (async () => {
    if (flapEveryS <= 0) return;
    for (let n = 1; ; n++) {
      const killAt = n * flapEveryS;
      if (killAt + flapDownS + 2 > durationS) return;
      await nap(killAt * 1000 - (performance.now() - t0));
      if (stopping) return;
      const app = apps[(n - 1) % apps.length]!;
      const flap: Flap = { instance: app.index + 1, port: app.port, killedAtS: Number(nowS().toFixed(3)) };
      flaps.push(flap);
      app.child.proc.kill('SIGKILL');
      await app.child.exited;
      await nap(flapDownS * 1000);
      if (stopping && crash) return;
      app.child = await spawnUpstream(`app-${app.index + 1}:${app.port}`, ['app', String(app.port)]);
      flap.readyAtS = Number(nowS().toFixed(2));
    }
  })();

  // Memory samples.
  const samples: MemorySample[] = [];
  let lastSample = { tS: 0, requests: 0, cpuMs: cpuTimeMs(gatewayPid) };
  const takeSample = async (label: string): Promise<void> => {
    const tS = nowS();
    const [rss, fds, cpuMs] = [vmRssBytes(gatewayPid), openFds(gatewayPid), cpuTimeMs(gatewayPid)];
    const metrics = await scrape(gateway.admin);
    const mb = (name: string) => {
      const value = metrics?.get(name);
      return value === undefined ? undefined : value / 1024 / 1024;
    };
    const dt = tS - lastSample.tS;
    samples.push({
      label,
      tS: Number(tS.toFixed(1)),
      rssMb: rss === undefined ? undefined : rss / 1024 / 1024,
      metricsRssMb: mb('waygate_process_resident_memory_bytes'),
      heapUsedMb: mb('waygate_nodejs_heap_size_used_bytes'),
      heapTotalMb: mb('waygate_nodejs_heap_size_total_bytes'),
      externalMb: mb('waygate_nodejs_external_memory_bytes'),
      fds,
      requests: completedTotal,
      reqPerS: dt > 0 ? (completedTotal - lastSample.requests) / dt : undefined,
      gatewayCpuPct: cpuMs !== undefined && lastSample.cpuMs !== undefined && dt > 0 ? ((cpuMs - lastSample.cpuMs) / (dt * 1000)) * 100 : undefined,
      unexpected: unexpectedCount,
    });
    lastSample = { tS, requests: completedTotal, cpuMs };
    const s = samples.at(-1)!;
    process.stdout.write(`[${label.padStart(8)}] t=${fmt(s.tS)} s  RSS ${fmt(s.rssMb, 1)} MB  heap ${fmt(s.heapUsedMb, 1)} MB  fds ${fmt(s.fds)}  ` +
      `requests ${fmt(s.requests)}  ${fmt(s.reqPerS)} req/s  gateway CPU ${fmt(s.gatewayCpuPct)} %  unexpected ${fmt(s.unexpected)}\n`);
  };
  const minuteLabel = (tS: number) => `${fmt(tS / 60, tS % 60 === 0 ? 0 : 1)} min`;
  const sampling = (async () => {
    const times = [warmupS];
    for (let t = sampleEveryS; t < durationS; t += sampleEveryS) if (t > warmupS) times.push(t);
    for (const t of times) {
      if (t >= durationS) break;
      await nap(t * 1000 - (performance.now() - t0));
      if (stopping) return;
      await takeSample(minuteLabel(t));
    }
  })();

  await driving;
  stopping = true;
  stopWake();
  await sampling;
  if (!crash) await takeSample(`${minuteLabel(durationS)} end`);
  // Let what is in flight finish (every client has its own timeout of at most 10 s).
  const drainDeadline = performance.now() + 15_000;
  while (streams.some((s) => s.inFlight > 0) && performance.now() < drainDeadline) await sleep(100);
  const leftInFlight = streams.reduce((sum, s) => sum + s.inFlight, 0);
  await flapping;
  if (!crash) {
    await sleep(5000);
    await takeSample('idle+5s');
  }
  const finalMetrics = crash ? undefined : await scrape(gateway.admin);

  // Stop the gateway on its own terms and note how it went.
  let shutdown: { exit: number | string; ms: number } | undefined;
  if (!crash) {
    const before = performance.now();
    await stopChild(gateway.child, 10_000);
    shutdown = { exit: await gateway.child.exited, ms: Math.round(performance.now() - before) };
  }
  await stopAll();
  const elapsedS = (Date.now() - startedAt) / 1000;

  // ───── report ─────
  process.stdout.write(`\nmachine: ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}; 1-min load average at the end ${(os.loadavg()[0] ?? 0).toFixed(2)}\n`);
  process.stdout.write(`waygate memory over time (RSS = VmRSS of the gateway process; heap/external from the admin /metrics; CPU % of one core):\n`);
  printTable(
    [
      { header: 'minute', align: 'left' },
      { header: 'RSS MB' },
      { header: 'heap used MB' },
      { header: 'heap total MB' },
      { header: 'external MB' },
      { header: 'fds' },
      { header: 'requests so far' },
      { header: 'req/s' },
      { header: 'gateway CPU %' },
      { header: 'unexpected so far' },
    ],
    samples.map((s) => [s.label, fmt(s.rssMb, 1), fmt(s.heapUsedMb, 1), fmt(s.heapTotalMb, 1), fmt(s.externalMb, 1), fmt(s.fds), fmt(s.requests), fmt(s.reqPerS), fmt(s.gatewayCpuPct), fmt(s.unexpected)]),
  );

  process.stdout.write('\nstreams (rate = starts/s; skipped = starts dropped because the stream had maxInFlight requests open):\n');
  printTable(
    [{ header: 'stream', align: 'left' }, { header: 'what', align: 'left' }, { header: 'rate' }, { header: 'started' }, { header: 'skipped' }, { header: 'done' }, { header: 'p50 ms' }, { header: 'p99 ms' }],
    streams.map((s) => [s.def.id, s.def.what, fmt(s.def.rate, 1), fmt(s.started), fmt(s.skipped), fmt(s.completed), fmt(percentile(s.latencies, 50), 1), fmt(percentile(s.latencies, 99), 1)]),
  );

  process.stdout.write('\noutcomes by kind:\n');
  const outcomeRows: string[][] = [];
  let expectedErrors = 0;
  for (const s of streams) {
    for (const [kind, count] of [...s.kinds].sort((a, b) => b[1] - a[1])) {
      const ok = s.def.expected.includes(kind);
      const verdict = ok ? (kind === '2xx' ? 'ok' : 'expected') : s.def.group === 'plain' && /^5\d\d /.test(kind) ? 'UNEXPECTED 5xx' : 'UNEXPECTED';
      if (ok && kind !== '2xx') expectedErrors += count;
      outcomeRows.push([s.def.id, kind, fmt(count), verdict]);
    }
  }
  printTable([{ header: 'stream', align: 'left' }, { header: 'outcome', align: 'left' }, { header: 'count' }, { header: 'verdict', align: 'left' }], outcomeRows);
  const slowlorisCuts = streams.find((s) => s.def.id === 'slowloris')?.cutTimes ?? [];
  if (slowlorisCuts.length) {
    process.stdout.write(`slowloris: gateway closed the socket after p50 ${fmt(percentile(slowlorisCuts, 50))} ms, p99 ${fmt(percentile(slowlorisCuts, 99))} ms, ` +
      `max ${fmt(Math.max(...slowlorisCuts))} ms (headersTimeout ${HEADERS_TIMEOUT_MS} ms; later than ${SLOWLORIS_CUT_LIMIT_MS} ms counts as unexpected)\n`);
  }
  process.stdout.write(`expected errors: ${fmt(expectedErrors)}; unexpected outcomes: ${fmt(unexpectedCount)} ` +
    `(of which 5xx on plain traffic: ${fmt(unexpected5xx)}, ${fmt(unexpected5xxInFlap)} of them in a flap window)\n`);
  if (unexpected.length) {
    process.stdout.write('first unexpected outcomes (t = s since traffic start):\n');
    for (const u of unexpected.slice(0, 15)) {
      process.stdout.write(`  sent t=${u.sentAtS.toFixed(3)}, ended t=${u.tS.toFixed(3)} ${u.stream}: ${u.kind}${u.flap ? ` [flap window: ${u.flap}]` : ''}${u.detail ? ` — ${u.detail}` : ''}\n`);
    }
  }
  if (flaps.length) process.stdout.write(`flaps: ${flaps.map((f) => `#${f.instance} ${fmt(f.killedAtS, 1)}→${fmt(f.readyAtS, 1)} s`).join(', ')}\n`);

  // Gateway's own view.
  const gatewayCounts: Record<string, number> = {};
  for (const [key, value] of finalMetrics ?? []) {
    const request = /^waygate_requests_total\{(.*)\}$/.exec(key);
    const attempt = /^waygate_upstream_attempts_total\{(.*)\}$/.exec(key);
    const retry = /^waygate_retries_total\{(.*)\}$/.exec(key);
    const ejections = /^waygate_outlier_ejections_total\{(.*)\}$/.exec(key);
    const match = request ?? attempt ?? retry ?? ejections;
    if (!match || !value) continue;
    const labels = Object.fromEntries([...(match[1] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    const name = request ? `requests ${labels['route']} ${labels['code']}` : attempt ? `attempts ${labels['service']} ${labels['outcome']}` : retry ? `retries ${labels['route']}` : `ejections ${labels['service']}`;
    gatewayCounts[name] = (gatewayCounts[name] ?? 0) + value;
  }
  if (finalMetrics) {
    process.stdout.write(`gateway /metrics at the end: ${Object.entries(gatewayCounts).sort().map(([k, v]) => `${k}=${fmt(v)}`).join(', ')}\n`);
  }
  process.stdout.write(`gateway log (level warn and up): ${fmt(gateway.logLines)} lines${gateway.logByMsg.size ? `; ${[...gateway.logByMsg].sort((a, b) => b[1] - a[1]).slice(0, 8).map(([m, c]) => `${c}x ${m}`).join('; ')}` : ''}\n`);
  if (leftInFlight) process.stdout.write(`WARNING: ${leftInFlight} request(s) still in flight 15 s after the traffic stopped\n`);
  if (shutdown) process.stdout.write(`gateway shutdown (SIGTERM): exit ${shutdown.exit} after ${shutdown.ms} ms\n`);
  if (crash) process.stdout.write(`GATEWAY CRASHED at ${crash.atS.toFixed(1)} s with ${crash.exit}\n`);

  // Targets.
  const base = samples.find((s) => s.tS >= 119 && !s.label.includes('end') && s.label !== 'idle+5s');
  const last = samples.find((s) => s.label.endsWith('end'));
  const growthPct = base?.rssMb && last?.rssMb ? ((last.rssMb - base.rssMb) / base.rssMb) * 100 : undefined;
  const warm = samples[0];
  const growthFromWarmPct = warm?.rssMb && last?.rssMb ? ((last.rssMb - warm.rssMb) / warm.rssMb) * 100 : undefined;
  const targets = [
    {
      name: 'RSS growth from minute 2 to the end < 10 %',
      value: growthPct,
      met: crash ? false : growthPct === undefined ? undefined : growthPct < 10,
      note: growthPct === undefined ? `needs a sample at minute 2 before the end (SOAK_DURATION > 120); from ${warm?.label ?? '?'} to the end: ${fmt(growthFromWarmPct, 1)} %` : `${fmt(base?.rssMb, 1)} → ${fmt(last?.rssMb, 1)} MB`,
    },
    {
      name: 'unexpected 5xx = 0',
      value: unexpected5xx,
      met: crash ? false : unexpected5xx === 0,
      note: `${unexpected5xxInFlap} in a flap window, ${unexpected5xx - unexpected5xxInFlap} outside`,
    },
  ];
  process.stdout.write('\ntargets:\n');
  for (const t of targets) {
    const verdict = t.met === undefined ? 'n/a' : t.met ? 'met' : 'MISSED';
    const value = t.value === undefined ? '-' : t.name.startsWith('RSS') ? `${fmt(t.value, 1)} %` : fmt(t.value);
    process.stdout.write(`  ${t.name}: ${value} — ${verdict} (${t.note})\n`);
  }
  process.stdout.write(`\ntook ${elapsedS.toFixed(0)} s\n`);

  const outDir = path.join(ROOT, 'benchmarks', 'results');
  mkdirSync(outDir, { recursive: true });
  const out = path.join(outDir, 'soak-latest.json');
  const report = {
    benchmark: 'soak',
    date: new Date().toISOString(),
    elapsedS: Math.round(elapsedS),
    machine,
    loadAverage1mAtEnd: os.loadavg()[0],
    waygate: { build, gitHead: git.head, uncommittedSrcFiles: git.uncommittedSrcFiles },
    settings: { durationS, warmupS, sampleEveryS, rateScale, flapEveryS, flapDownS, slowlorisSockets, headersTimeoutMs: HEADERS_TIMEOUT_MS, slowlorisCutLimitMs: SLOWLORIS_CUT_LIMIT_MS, shortRouteTimeoutMs: SHORT_TIMEOUT_MS },
    samples,
    streams: streams.map((s) => ({
      id: s.def.id,
      group: s.def.group,
      what: s.def.what,
      rate: s.def.rate,
      maxInFlight: s.def.maxInFlight,
      expected: s.def.expected,
      started: s.started,
      skipped: s.skipped,
      completed: s.completed,
      outcomes: Object.fromEntries(s.kinds),
      sampleDetails: Object.fromEntries(s.samples),
      latencyMs: s.latencies.length ? { p50: percentile(s.latencies, 50), p99: percentile(s.latencies, 99), max: Math.max(...s.latencies) } : undefined,
      cutMs: s.cutTimes.length ? { p50: percentile(s.cutTimes, 50), p99: percentile(s.cutTimes, 99), max: Math.max(...s.cutTimes) } : undefined,
    })),
    expectedErrors,
    unexpected: { total: unexpectedCount, fiveXxOnPlain: unexpected5xx, fiveXxInFlapWindow: unexpected5xxInFlap, events: unexpected },
    flaps,
    gatewayMetrics: gatewayCounts,
    gatewayLog: { lines: gateway.logLines, byMessage: Object.fromEntries(gateway.logByMsg), first: gateway.logFirst },
    leftInFlight,
    shutdown,
    crash,
    targets,
  };
  writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(`results written to ${path.relative(ROOT, out)}\n`);
}

if (isMain(import.meta.url)) {
  const role = process.argv[2];
  if (role === 'app') {
    await appMain(Number(process.argv[3]));
  } else if (role === 'odd') {
    await oddMain(process.argv.slice(3));
  } else {
    try {
      await soak();
    } catch (error) {
      process.stderr.write(`\nsoak failed: ${(error as Error).stack ?? String(error)}\n`);
      await stopAll();
      process.exitCode = 1;
    }
  }
}
