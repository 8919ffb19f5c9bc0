import { type ChildProcess, fork } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';

/**
 * `npm run demo`: three sample `hello` instances (child processes) plus the gateway (in this process,
 * from config/demo.yaml) on :8080, with the gateway's JSON log lines printed as readable text.
 * Each instance answers `POST /crash` by dying on the spot; the demo restarts it after a pause.
 * One Ctrl-C stops everything; a second one (after a second) exits at once.
 *
 * `demo.ts instance PORT` is the sample instance itself (how the demo starts its children).
 */

const PORTS = [3001, 3002, 3003];
const CRASH_EXIT_CODE = 70;
const RESTART_AFTER_MS = 10_000;

// ---------------------------------------------------------------------------------------------------
// The sample instance

function runInstance(port: number): void {
  const name = `hello-${port}`;
  const sockets = new Set<Socket>();
  const server: Server = createServer((request, response) => {
    if (request.url === '/health') {
      response.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"UP"}');
      return;
    }
    if (request.method === 'POST' && request.url === '/crash') {
      // Answer, then die abruptly: no graceful close, every open connection (the gateway's pooled
      // keep-alive ones included) is destroyed and the port stops listening.
      const body = JSON.stringify({ instance: name, crashing: true }) + '\n';
      response.writeHead(200, { 'content-type': 'application/json' }).end(body, () => {
        server.close();
        for (const socket of sockets) socket.destroy();
        process.exit(CRASH_EXIT_CODE);
      });
      return;
    }
    const body = JSON.stringify({ instance: name, path: request.url, requestId: request.headers['x-request-id'] ?? null });
    response.writeHead(200, { 'content-type': 'application/json' }).end(body + '\n');
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.once('error', (error: NodeJS.ErrnoException) => {
    process.send?.({ type: 'failed', reason: error.code === 'EADDRINUSE' ? `port ${port} is in use` : error.message });
    process.exit(1);
  });
  server.listen(port, '127.0.0.1', () => process.send?.({ type: 'listening' }));
  // The IPC channel closes when the demo goes away, however it died: never outlive it.
  process.on('disconnect', () => process.exit(0));
}

// ---------------------------------------------------------------------------------------------------
// Log formatting: pino writes JSON lines into `prettyStream`, which prints one readable line each.

const color = process.stdout.isTTY === true && !process.env.NO_COLOR;
const paint = (code: string, text: string): string => (color ? `\x1b[${code}m${text}\x1b[0m` : text);
const LEVELS: Readonly<Record<number, { label: string; code: string }>> = {
  10: { label: 'TRACE', code: '90' },
  20: { label: 'DEBUG', code: '90' },
  30: { label: 'INFO ', code: '32' },
  40: { label: 'WARN ', code: '33' },
  50: { label: 'ERROR', code: '31' },
  60: { label: 'FATAL', code: '1;31' },
};

function clock(time: unknown): string {
  const date = new Date(typeof time === 'number' || typeof time === 'string' ? time : Date.now());
  const pad = (n: number, width = 2) => String(n).padStart(width, '0');
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

function fieldValue(value: unknown): string {
  if (typeof value === 'string') return /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value);
  if (typeof value === 'object' && value !== null) return JSON.stringify(value);
  return String(value);
}

/** One pino JSON line → `12:00:01.234 INFO  message  key=value …` (anything else is passed through). */
export function prettyLine(line: string): string {
  let entry: unknown;
  try {
    entry = JSON.parse(line);
  } catch {
    return line;
  }
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) return line;
  const { level, time, msg, err, pid: _pid, hostname: _hostname, name: _name, ...fields } = entry as Record<string, unknown>;
  const style = LEVELS[typeof level === 'number' ? level : 30] ?? { label: String(level).toUpperCase().padEnd(5), code: '0' };
  const parts = Object.entries(fields).map(([key, value]) => `${paint('90', `${key}=`)}${fieldValue(value)}`);
  let stack = '';
  if (typeof err === 'string') parts.push(`${paint('90', 'err=')}${fieldValue(err)}`);
  else if (typeof err === 'object' && err !== null) {
    const { message, stack: trace } = err as { message?: unknown; stack?: unknown };
    parts.push(`${paint('90', 'err=')}${fieldValue(message ?? err)}`);
    if (typeof trace === 'string' && typeof level === 'number' && level >= 50) stack = '\n' + paint('90', trace.replace(/^/gm, '    '));
  }
  const text = typeof msg === 'string' ? msg : '';
  return `${paint('90', clock(time))} ${paint(style.code, style.label)} ${text}${parts.length > 0 ? '  ' + parts.join(' ') : ''}${stack}`;
}

const prettyStream = {
  write(chunk: string): void {
    for (const line of chunk.split('\n')) if (line !== '') process.stdout.write(prettyLine(line) + '\n');
  },
};

/** The demo's own messages, in the same layout as the gateway's. */
function say(message: string): void {
  process.stdout.write(`${paint('90', clock(Date.now()))} ${paint('36', 'DEMO ')} ${message}\n`);
}

// ---------------------------------------------------------------------------------------------------
// The demo

async function runDemo(): Promise<void> {
  const { loadConfigFile, ConfigError, formatProblem } = await import('../src/config/load.ts');
  const { ConfigReloader } = await import('../src/config/watch.ts');
  const { Gateway } = await import('../src/gateway.ts');

  const root = fileURLToPath(new URL('..', import.meta.url));
  const configFile = fileURLToPath(new URL('../config/demo.yaml', import.meta.url));
  const script = fileURLToPath(import.meta.url);
  const instances = new Map<number, ChildProcess>();
  const restarts = new Set<NodeJS.Timeout>();
  let gateway: InstanceType<typeof Gateway> | undefined;
  let reloader: InstanceType<typeof ConfigReloader> | undefined;
  let stoppingSince: number | undefined;

  /** Starts one instance; resolves once it listens (or rejects with why it could not). */
  function startInstance(port: number): Promise<void> {
    // fork(): same Node and loader flags (tsx) as this process, plus the IPC channel the child watches.
    const child = fork(script, ['instance', String(port)], { cwd: root, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    instances.set(port, child);
    let listening = false;
    const started = new Promise<void>((resolve, reject) => {
      child.on('message', (message: { type?: string; reason?: string }) => {
        if (message.type === 'listening') {
          listening = true;
          resolve();
        }
        if (message.type === 'failed') reject(new Error(`hello-${port}: ${message.reason ?? 'failed to start'}`));
      });
      child.once('exit', (code) => reject(new Error(`hello-${port} exited (${code}) before listening`)));
    });
    child.once('exit', (code, signal) => {
      if (instances.get(port) === child) instances.delete(port);
      if (stoppingSince !== undefined || !listening) return;
      const why = code === CRASH_EXIT_CODE ? 'crashed (POST /crash)' : `exited (${signal ?? code})`;
      say(`hello-${port} ${why}; the gateway routes around it. Restarting it in ${RESTART_AFTER_MS / 1000} s.`);
      const timer = setTimeout(() => {
        restarts.delete(timer);
        startInstance(port).then(
          () => say(`hello-${port} is back; its next passing health check returns it to the rotation.`),
          (error: Error) => say(`could not restart: ${error.message}`),
        );
      }, RESTART_AFTER_MS);
      restarts.add(timer);
    });
    return started;
  }

  async function shutdown(code: number): Promise<void> {
    const now = Date.now();
    if (stoppingSince !== undefined) {
      // `npm run demo` forwards Ctrl-C's SIGINT, which the terminal has already sent: ignore the echo.
      if (now - stoppingSince < 1_000) return;
      say('second signal: exiting now');
      for (const child of instances.values()) child.kill('SIGKILL');
      process.exit(1);
    }
    stoppingSince = now;
    say('stopping the gateway and the instances…');
    for (const timer of restarts) clearTimeout(timer);
    reloader?.stop();
    const exited = [...instances.values()].map((child) =>
      child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise<void>((resolve) => child.once('exit', () => resolve())),
    );
    for (const child of instances.values()) child.kill('SIGTERM');
    const everything = Promise.allSettled([gateway?.stop(), ...exited]);
    const force = setTimeout(() => {
      say('still running after 8 s: killing what is left');
      for (const child of instances.values()) child.kill('SIGKILL');
      process.exit(1);
    }, 8_000);
    force.unref();
    await everything;
    clearTimeout(force);
    process.exit(code);
  }

  process.on('SIGINT', () => void shutdown(0));
  process.on('SIGTERM', () => void shutdown(0));
  // A closed terminal sends SIGHUP: stop rather than linger on :8080. (The real CLI reloads on SIGHUP;
  // here the config file is still watched, and POST /admin/reload works.)
  process.on('SIGHUP', () => void shutdown(0));

  try {
    await Promise.all(PORTS.map((port) => startInstance(port)));
    const config = loadConfigFile(configFile, process.env);
    const logger = pino({ name: 'waygate', level: process.env.WAYGATE_LOG_LEVEL ?? 'info' }, prettyStream);
    gateway = new Gateway(config, { logger });
    reloader = new ConfigReloader(configFile, process.env, gateway, logger);
    const reload = reloader;
    gateway.configFile = configFile;
    gateway.reloadFromFile = () => reload.reloadNow();
    reloader.watch();
    await gateway.start();
  } catch (error) {
    if (error instanceof ConfigError) say(`invalid config:\n${error.problems.map(formatProblem).join('\n')}`);
    else if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') say(`cannot start: ${(error as Error).message} (is another demo or gateway running?)`);
    else say(`cannot start: ${(error as Error).message}`);
    await shutdown(1);
    return;
  }

  process.stdout.write(`
waygate demo is running. Try:
  curl localhost:8080/hello                      # answers rotate over hello-3001, hello-3002, hello-3003
  curl -i localhost:8080/hello/anything?x=1      # stripPrefix: the instance sees /anything?x=1
  curl -i localhost:8080/nope                    # 404 ROUTE_NOT_FOUND from the gateway
  curl localhost:9901/admin/routes               # the live routing table
  curl localhost:9901/metrics | grep waygate_    # Prometheus metrics
  curl localhost:9901/health/ready
  curl -X POST localhost:8080/hello/crash        # kills the instance that gets it; curl localhost:8080/hello keeps answering from the other two
Press Ctrl-C to stop everything.

`);
}

// Last, so every constant above is initialised before either mode runs.
if (process.argv[2] === 'instance') runInstance(Number(process.argv[3]));
else await runDemo();
