/**
 * A real etcd server for tests: the `etcd` binary (Debian's etcd-server) on free loopback ports with a
 * temporary data dir, in its own process group, killed (the whole group) when the test ends or the
 * process exits. Keys are written straight to etcd's JSON gateway, independent of waygate's client.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo, type Server, type Socket, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { readFileSync } from 'node:fs';
import { Agent, fetch } from 'undici';
import { join } from 'node:path';
import { deadPort } from './upstream.ts';

export const ETCD_MISSING = 'etcd not found: apt-get install etcd-server';

/** The etcd binary, or a thrown error saying how to install it (the etcd tests fail, never skip). */
export function etcdBinary(candidates: readonly string[] = ['/usr/bin/etcd', '/usr/local/bin/etcd'], searchPath = process.env.PATH ?? ''): string {
  for (const candidate of candidates) if (existsSync(candidate)) return candidate;
  try {
    const found = execFileSync('/bin/sh', ['-c', 'command -v etcd'], { encoding: 'utf8', env: { PATH: searchPath } }).trim();
    if (found) return found;
  } catch {
    // not on PATH either
  }
  throw new Error(ETCD_MISSING);
}


const running = new Set<ChildProcess>();
let guarded = false;

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

const b64 = (text: string) => Buffer.from(text).toString('base64');

export interface TestEtcd {
  /** http://127.0.0.1:PORT, the client URL. */
  readonly url: string;
  readonly dataDir: string;
  /** Last lines etcd printed, for failure messages. */
  output(): string;
  /** SIGKILL the group and wait for the exit. */
  kill(): Promise<void>;
  /** Start again on the same ports and wait until healthy: on the same data dir, or an empty one with `wipe`. */
  restart(options?: { wipe?: boolean }): Promise<void>;
  /** SIGSTOP / SIGCONT the group. */
  freeze(): void;
  thaw(): void;
  /** Kill and remove the data dir. */
  close(): Promise<void>;
  /** A unary JSON gateway call. */
  call(path: string, body: unknown): Promise<Record<string, unknown>>;
  put(key: string, value: string, lease?: string): Promise<bigint>;
  del(key: string): Promise<bigint>;
  /** The current revision. */
  revision(): Promise<bigint>;
  compact(revision: bigint): Promise<void>;
  grant(ttlSeconds: number): Promise<string>;
  revoke(lease: string): Promise<void>;
  /** The value and lease of one key, or undefined. */
  get(key: string): Promise<{ value: string; lease: string } | undefined>;
  /** Remaining TTL of a lease in seconds (-1 when gone). */
  ttl(lease: string): Promise<number>;
}

/** PEM files for an etcd that serves https and requires client certificates signed by `ca`. */
export interface EtcdTls {
  readonly ca: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly clientCert: string;
  readonly clientKey: string;
}

/** Starts etcd and resolves once /health answers; with `tls`, clients must present a certificate. */
export async function startEtcd(options: { tls?: EtcdTls } = {}): Promise<TestEtcd> {
  const tls = options.tls;
  const binary = etcdBinary();
  if (!guarded) {
    guarded = true;
    process.on('exit', () => {
      for (const child of running) killGroup(child, 'SIGKILL');
    });
  }
  const dataDir = mkdtempSync(join(tmpdir(), 'waygate-etcd-'));
  // Free ports: bound to 0 on loopback, then closed.
  const clientPort = await deadPort();
  const peerPort = await deadPort();
  const url = `${tls ? 'https' : 'http'}://127.0.0.1:${clientPort}`;
  const dispatcher = new Agent(tls ? { connect: { ca: readFileSync(tls.ca), cert: readFileSync(tls.clientCert), key: readFileSync(tls.clientKey) } } : {});
  const peer = `http://127.0.0.1:${peerPort}`;
  const tail: string[] = [];
  let child: ChildProcess | undefined;

  const launch = async () => {
    child = spawn(binary, [
      '--name', 'test',
      '--data-dir', join(dataDir, 'data'),
      '--listen-client-urls', url, '--advertise-client-urls', url,
      '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
      '--initial-cluster', `test=${peer}`,
      '--logger', 'zap', '--log-level', 'warn',
      ...(tls ? ['--cert-file', tls.serverCert, '--key-file', tls.serverKey, '--client-cert-auth', '--trusted-ca-file', tls.ca] : []),
    ], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(child);
    const started = child;
    started.once('exit', () => running.delete(started));
    for (const stream of [child.stdout!, child.stderr!]) {
      stream.on('data', (chunk: Buffer) => {
        tail.push(...String(chunk).split('\n').filter(Boolean));
        tail.splice(0, Math.max(0, tail.length - 40));
      });
    }
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (started.exitCode !== null) throw new Error(`etcd exited with ${started.exitCode}:\n${tail.join('\n')}`);
      try {
        const response = await fetch(`${url}/health`, { dispatcher });
        const body = (await response.json()) as { health?: string };
        if (response.status === 200 && body.health === 'true') return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`etcd did not become healthy:\n${tail.join('\n')}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };

  const kill = async () => {
    const current = child;
    if (!current || current.exitCode !== null || current.signalCode !== null) return;
    const exited = new Promise((resolve) => current.once('exit', resolve));
    killGroup(current, 'SIGCONT');
    killGroup(current, 'SIGKILL');
    await exited;
  };

  const call = async (path: string, body: unknown): Promise<Record<string, unknown>> => {
    const response = await fetch(`${url}${path}`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' }, dispatcher });
    const answer = (await response.json()) as Record<string, unknown>;
    if (response.status !== 200) throw new Error(`etcd ${path} answered ${response.status}: ${JSON.stringify(answer)}`);
    return answer;
  };
  const headerRevision = (answer: Record<string, unknown>) => BigInt(String((answer.header as { revision?: string } | undefined)?.revision ?? '0'));

  await launch();
  return {
    url,
    dataDir,
    output: () => tail.join('\n'),
    kill,
    restart: async ({ wipe = false } = {}) => {
      await kill();
      if (wipe) rmSync(join(dataDir, 'data'), { recursive: true, force: true });
      await launch();
    },
    freeze: () => { if (child) killGroup(child, 'SIGSTOP'); },
    thaw: () => { if (child) killGroup(child, 'SIGCONT'); },
    close: async () => {
      await kill();
      await dispatcher.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
    call,
    put: async (key, value, lease) => headerRevision(await call('/v3/kv/put', { key: b64(key), value: b64(value), ...(lease ? { lease } : {}) })),
    del: async (key) => headerRevision(await call('/v3/kv/deleterange', { key: b64(key) })),
    revision: async () => headerRevision(await call('/v3/kv/range', { key: b64('\0'), count_only: true })),
    compact: async (revision) => { await call('/v3/kv/compaction', { revision: revision.toString(), physical: true }); },
    grant: async (ttlSeconds) => String((await call('/v3/lease/grant', { TTL: ttlSeconds })).ID),
    revoke: async (lease) => { await call('/v3/lease/revoke', { ID: lease }); },
    get: async (key) => {
      const kvs = (await call('/v3/kv/range', { key: b64(key) })).kvs as Array<{ value?: string; lease?: string }> | undefined;
      const kv = kvs?.[0];
      return kv ? { value: Buffer.from(kv.value ?? '', 'base64').toString(), lease: kv.lease ?? '0' } : undefined;
    },
    ttl: async (lease) => Number((await call('/v3/lease/timetolive', { ID: lease })).TTL ?? -1),
  };
}

/**
 * A TCP relay in front of etcd that a test can cut (every connection reset, new ones refused by
 * an immediate reset) and restore, while etcd itself keeps running and taking writes.
 */
export interface CuttableLink {
  readonly url: string;
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

export async function startLink(target: string): Promise<CuttableLink> {
  const { hostname, port } = new URL(target);
  const sockets = new Set<Socket>();
  let open = true;
  const server: Server = createServer((inbound) => {
    if (!open) {
      inbound.resetAndDestroy();
      return;
    }
    const outbound = connect(Number(port), hostname);
    sockets.add(inbound);
    sockets.add(outbound);
    inbound.pipe(outbound);
    outbound.pipe(inbound);
    const drop = () => {
      inbound.destroy();
      outbound.destroy();
      sockets.delete(inbound);
      sockets.delete(outbound);
    };
    inbound.on('error', drop);
    outbound.on('error', drop);
    inbound.on('close', drop);
    outbound.on('close', drop);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port: own } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${own}`,
    cut: () => {
      open = false;
      for (const socket of sockets) socket.resetAndDestroy();
      sockets.clear();
    },
    restore: () => {
      open = true;
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
