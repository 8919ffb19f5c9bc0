// A Consul HTTP API double: a real HTTP server on 127.0.0.1 that follows
// /work/shared/consul/CONTRACT.md and serves the documented fixture shapes.
//
// Index model (mirrors Consul's state store): one raft counter; every write that changes
// something takes the next value. Per-service index = last write touching that service's
// instances, their checks, or their node's checks. catalog/services uses the services-table
// index (any instance add/remove/modify, never check-status changes); health/state uses the
// checks-table index. No-op writes do not bump; touch() bumps with identical data (fact 3).
//
// CONTRACT facts 26-29 (opt-in or backwards compatible; defaults behave as before):
// - 26 consistency and leaders: route() rejects ?stale with ?consistent (400, text); consistencyOf()
//   picks default/consistent/stale; finish() writes X-Consul-KnownLeader, X-Consul-LastContact (0 unless
//   a stale read, then `lastContactMs`/setLastContact(), growing in real time while leaderless) and
//   X-Consul-Effective-Consistency on catalog/health reads. setLeader(false) (option `leader: false`):
//   default/consistent reads answer 500 "No cluster leader" (held ones at once, in blocking()'s render),
//   stale reads keep answering and blocking with KnownLeader false; /v1/status/leader answers "".
// - 27 cross-datacenter: option `datacenter` (default 'dc1', also every node's Datacenter), link()/unlink()
//   or option `peers`. route() sends `?dc=<other>` on /v1/catalog/*, /v1/health/* and /v1/status/leader
//   to forward(), which re-issues the request over HTTP to the linked double (blocking included: the
//   peer holds it and its index, data and headers come back); the ACL check stays local (handle()) and
//   the token is passed on. Unknown or unreachable datacenter: 500 "No path to datacenter".
// - 28 re-registration: upsertService() keeps the record when nothing changed (no index moves); an
//   address/port change stamps the service (ModifyIndex, per-service and catalog indexes) without touching
//   checks, so health/state (checks table) does not move. putCheck()/changeStatus() stamp a check's own
//   Create/ModifyIndex only when its status, fields or definition changed. catalog/service rows carry
//   CreateIndex/ModifyIndex as in the fixture; option `raftIndexFields` adds them to health answers'
//   Node, Service and Checks as real servers do. serviceIndexes()/checkIndexes() read them directly.
// - 29 uint64 indexes: every index is a bigint (option `startIndex`, e.g. 2n ** 53n + 1n); blocking()
//   parses ?index as a uint64 BigInt ("Invalid index" otherwise) and compares exactly; finish() prints
//   X-Consul-Index exactly and jsonText() writes bigint JSON fields as exact digits.
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type ConsulFault = 'refuse' | '5xx' | 'garbage' | 'hang' | 'no-index' | null;
export type CheckStatus = 'passing' | 'warning' | 'critical';

export interface DoubleServiceInput {
  node?: string;
  nodeAddress?: string;
  id: string;
  name: string;
  address?: string;
  port: number;
  tags?: string[];
  meta?: Record<string, string>;
  weights?: { Passing: number; Warning: number };
  status?: CheckStatus;
  /** Explicit Service.TaggedAddresses (e.g. the docs' lower-case `{address, port}` form). */
  taggedAddresses?: Record<string, unknown>;
  /** Node.Meta when the node is created by this call. */
  nodeMeta?: Record<string, string>;
}

export interface ConsulDoubleOptions {
  aclToken?: string;
  /** Seed the documented fixture entries (default false: an empty catalog with only the agent node). */
  seedFixtures?: boolean;
  /** Jitter added to `wait`, as a fraction of wait (Consul: 1/16). 0 makes timeouts exact. */
  maxJitterFraction?: number;
  /** Name/address of the agent's own node, where agent-API registrations land. */
  agentNode?: string;
  agentNodeAddress?: string;
  datacenter?: string;
  /** Consul clamps check intervals to >= 1s; tests may lower it. */
  minCheckIntervalMs?: number;
  /** Consul clamps DeregisterCriticalServiceAfter to >= 1m; tests may lower it. */
  minDeregisterCriticalMs?: number;
  /** http_max_conns_per_client (default 200, as Consul); 0 = unlimited. */
  maxConnsPerClient?: number;
  /** First raft index (default 1). Indexes are uint64: e.g. 2n ** 53n + 1n puts every index above 2^53 (fact 29). */
  startIndex?: bigint | number;
  /** Whether the cluster has a leader (default true); see setLeader() (fact 26). */
  leader?: boolean;
  /** X-Consul-LastContact (ms) on stale reads: the answering server is a follower (default 0 = the leader; fact 26). */
  lastContactMs?: number;
  /** Doubles of other datacenters to link with (both ways), as link() (fact 27). */
  peers?: ConsulDouble[];
  /** Add CreateIndex/ModifyIndex to Node, Service and Checks in health answers, as real servers do (the docs' samples omit them). */
  raftIndexFields?: boolean;
}

export type Consistency = 'default' | 'consistent' | 'stale';
export interface RaftIndexes {
  createIndex: bigint;
  modifyIndex: bigint;
}

export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string | string[]>;
  token?: string;
  at: number;
}

type StrMap = Record<string, string>;
interface Weights {
  Passing: number;
  Warning: number;
}
interface NodePub {
  ID: string;
  Node: string;
  Address: string;
  Datacenter: string;
  TaggedAddresses: StrMap;
  Meta: StrMap;
}
interface ServicePub {
  ID: string;
  Service: string;
  Tags: string[];
  Address: string;
  TaggedAddresses: Record<string, unknown>;
  Meta: StrMap;
  Port: number;
  Weights: Weights;
  Namespace?: string;
}
interface CheckPub {
  Node: string;
  CheckID: string;
  Name: string;
  Status: string;
  Notes: string;
  Output: string;
  ServiceID: string;
  ServiceName: string;
  ServiceTags: string[];
  Namespace?: string;
}

interface NodeRec {
  pub: NodePub;
  createIndex: bigint;
  modifyIndex: bigint;
}
interface SvcRec {
  node: string;
  pub: ServicePub;
  enableTagOverride: boolean;
  viaAgent: boolean;
  datacenter: string;
  proxy: unknown;
  connect: unknown;
  createIndex: bigint;
  modifyIndex: bigint;
}
type CheckKind = 'http' | 'tcp' | 'ttl' | 'passive';
interface CheckDef {
  kind: CheckKind;
  url?: string;
  method?: string;
  header?: Record<string, string[]>;
  body?: string;
  tlsSkipVerify?: boolean;
  tcp?: string;
  intervalMs: number;
  timeoutMs: number;
  ttlMs: number;
  deregisterAfterMs: number;
}
interface Runner {
  stopped: boolean;
  timer?: NodeJS.Timeout;
  inflight?: AbortController;
}
interface CheckRec {
  node: string;
  pub: CheckPub;
  def: CheckDef;
  viaAgent: boolean;
  liveOutput: string;
  runner?: Runner;
  ttlTimer?: NodeJS.Timeout;
  reapTimer?: NodeJS.Timeout;
  /** Raft indexes of this check's catalog row; putCheck() fills them in. */
  createIndex?: bigint;
  modifyIndex?: bigint;
}

type IndexKey = { kind: 'service'; name: string } | { kind: 'catalog' } | { kind: 'health' };
interface Reply {
  status: number;
  json?: unknown;
  text?: string;
  index: bigint;
  headers?: OutgoingHttpHeaders;
  /** Set on catalog/health reads: drives X-Consul-Effective-Consistency and LastContact (fact 26). */
  consistency?: Consistency;
}
interface Held {
  key: IndexKey;
  min: bigint;
  consistency: Consistency;
  res: ServerResponse;
  render: () => Reply;
  timer: NodeJS.Timeout;
}

const FIXTURE_DIR = new URL('../fixtures/consul/', import.meta.url);
const DEFAULT_WAIT_MS = 5 * 60_000;
const MAX_WAIT_MS = 10 * 60_000;
const TEXT = 'text/plain; charset=utf-8';
const JSON_TYPE = 'application/json';
const GARBAGE = '[{"Node":{"ID":"40e4a748-2192-161a-0510-9bf59fe950b5","Node":"foo';
const U64_MAX = 2n ** 64n - 1n;
const NO_LEADER = 'No cluster leader';
const NO_PATH = 'No path to datacenter';
/** Response headers a forwarded cross-datacenter answer brings back (fact 27). */
const RELAYED = ['content-type', 'x-consul-index', 'x-consul-knownleader', 'x-consul-lastcontact', 'x-consul-effective-consistency', 'x-cache', 'age', 'allow'];
const NODE_MAINT = '_node_maintenance';
const SVC_MAINT_PREFIX = '_service_maintenance:';

function readFixture<T>(name: string): T {
  return JSON.parse(readFileSync(new URL(name, FIXTURE_DIR), 'utf8')) as T;
}

interface Templates {
  node: NodePub;
  service: ServicePub;
  serviceCheck: CheckPub;
  nodeCheck: CheckPub;
  catalogProxy: unknown;
  catalogConnect: unknown;
}
let templateCache: Templates | undefined;
function templates(): Templates {
  if (templateCache) return templateCache;
  const entry = readFixture<Array<{ Node: NodePub; Service: ServicePub; Checks: CheckPub[] }>>('health-service.json')[0];
  const cat = readFixture<Array<Record<string, unknown>>>('catalog-service.json')[0];
  if (!entry || !cat) throw new Error('consul fixtures are empty');
  const serviceCheck = entry.Checks.find((c) => c.ServiceID !== '');
  const nodeCheck = entry.Checks.find((c) => c.ServiceID === '');
  if (!serviceCheck || !nodeCheck) throw new Error('health-service.json lacks a service or node check');
  templateCache = {
    node: entry.Node,
    service: entry.Service,
    serviceCheck,
    nodeCheck,
    catalogProxy: cat['ServiceProxy'],
    catalogConnect: cat['ServiceConnect'],
  };
  return templateCache;
}

/** Builds an object with exactly the fixture's key set; keys missing from `values` keep the fixture value. */
function shaped<T extends object>(template: T, values: Partial<T>): T {
  const out: Record<string, unknown> = {};
  const t = template as Record<string, unknown>;
  const v = values as Record<string, unknown>;
  for (const k of Object.keys(t)) out[k] = v[k] !== undefined ? v[k] : structuredClone(t[k]);
  return out as T;
}

const clone = <T>(v: T): T => structuredClone(v);
const maxBig = (a: bigint, b: bigint): bigint => (a > b ? a : b);
const minBig = (a: bigint, b: bigint): bigint => (a < b ? a : b);

// JSON with uint64 fields: bigints are written as exact digits, never through Number (fact 29).
const BIG_MARK = '\u0000waygate-u64:';
const BIG_RE = /"\\u0000waygate-u64:(\d+)"/g;
export function jsonText(value: unknown): string {
  let big = false;
  const text = JSON.stringify(value, (_k, v: unknown) => {
    if (typeof v !== 'bigint') return v;
    big = true;
    return BIG_MARK + v.toString();
  });
  return big ? text.replace(BIG_RE, '$1') : text;
}
const sameJson = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);
const skey = (node: string, id: string): string => `${node}\u0000${id}`;
const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
function sortedObject<T>(entries: Array<[string, T]>): Record<string, T> {
  const out: Record<string, T> = {};
  for (const [k, v] of entries.sort((a, b) => cmp(a[0], b[0]))) out[k] = v;
  return out;
}

const UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, 'μs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Go time.ParseDuration, in milliseconds; undefined when invalid (a bare number other than 0 is invalid). */
export function parseGoDuration(s: string): number | undefined {
  if (/^[-+]?0$/.test(s)) return 0;
  const m = /^([-+]?)((?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+)$/.exec(s);
  if (!m || m[2] === undefined) return undefined;
  let total = 0;
  for (const part of m[2].matchAll(/(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)/g)) {
    total += parseFloat(part[1] ?? '0') * (UNIT_MS[part[2] ?? ''] ?? 0);
  }
  return m[1] === '-' ? -total : total;
}

/** Go JSON durations arrive as strings ("10s") or as integer nanoseconds. */
function durationField(v: unknown): number | undefined | 'invalid' {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v === 'number') return v / 1e6;
  if (typeof v === 'string') return parseGoDuration(v) ?? 'invalid';
  return 'invalid';
}

/** Go's strconv.ParseBool. */
function parseGoBool(s: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(s)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(s)) return false;
  return undefined;
}

/** Consul decodes JSON bodies case-insensitively and also accepts snake_case keys. */
function field(obj: Record<string, unknown>, name: string): unknown {
  const want = name.toLowerCase();
  for (const k of Object.keys(obj)) if (k.replace(/_/g, '').toLowerCase() === want) return obj[k];
  return undefined;
}
const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isStatus = (s: unknown): s is CheckStatus => s === 'passing' || s === 'warning' || s === 'critical';

class BadRequest extends Error {}

/** Collects what one write touched; applied as one raft index. */
class Txn {
  readonly services = new Set<string>();
  catalog = false;
  health = false;
  nodes = false;
  readonly stamp: SvcRec[] = [];
  readonly stampChecks: CheckRec[] = [];
  readonly stampNodes: NodeRec[] = [];
  get dirty(): boolean {
    return this.catalog || this.health || this.nodes || this.services.size > 0;
  }
}

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}
function many(v: string | string[] | undefined): string[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

function defaultServiceTagged(address: string, port: number): Record<string, unknown> {
  // The agent adds lan/wan_ipv4 (or _ipv6) when Address is an IP literal, in Go's {Address, Port} casing.
  const fam = net.isIP(address);
  if (fam === 0) return {};
  const v = fam === 4 ? 'ipv4' : 'ipv6';
  return { [`lan_${v}`]: { Address: address, Port: port }, [`wan_${v}`]: { Address: address, Port: port } };
}

export class ConsulDouble {
  readonly requests: RecordedRequest[] = [];

  private readonly agentNode: string;
  private readonly agentNodeAddress: string;
  /** This double's datacenter: every node's Datacenter, and the `?dc=` it serves locally (fact 27). */
  readonly datacenter: string;
  private readonly minCheckIntervalMs: number;
  private readonly minDeregisterCriticalMs: number;
  private readonly maxConnsPerClient: number;
  private jitterFraction: number;
  private aclToken: string | undefined;
  private fault: ConsulFault = null;
  private leader: boolean;
  private leaderLostAt = 0;
  private lastContactMs: number;
  private lastContactSetAt = 0;
  private readonly raftIndexFields: boolean;
  private readonly peers = new Map<string, ConsulDouble>();
  private forwardAgent: http.Agent | undefined;
  private readonly forwards = new Set<http.ClientRequest>();

  private readonly nodes = new Map<string, NodeRec>();
  private readonly services = new Map<string, SvcRec>();
  private readonly byName = new Map<string, Set<string>>();
  private readonly checks = new Map<string, Map<string, CheckRec>>();
  // Secondary indexes: checks by (node, ServiceID) ('' = node-level) and services by node.
  private readonly checksByOwner = new Map<string, Set<CheckRec>>();
  private readonly servicesByNode = new Map<string, Set<string>>();

  private raft = 0n;
  private readonly svcIdx = new Map<string, bigint>();
  private extinctionIdx = 0n;
  private catalogIdx = 0n;
  private healthIdx = 0n;
  private nodesIdx = 0n;

  private server: http.Server | undefined;
  private _port = 0;
  private running = false;
  private listenerOp: Promise<void> = Promise.resolve();
  private readonly sockets = new Set<Socket>();
  private readonly held = new Set<Held>();
  private readonly hung = new Set<ServerResponse>();

  constructor(opts: ConsulDoubleOptions = {}) {
    this.aclToken = opts.aclToken;
    this.jitterFraction = opts.maxJitterFraction ?? 1 / 16;
    this.agentNode = opts.agentNode ?? 'node-1';
    this.agentNodeAddress = opts.agentNodeAddress ?? '127.0.0.1';
    this.datacenter = opts.datacenter ?? 'dc1';
    this.minCheckIntervalMs = opts.minCheckIntervalMs ?? 1000;
    this.minDeregisterCriticalMs = opts.minDeregisterCriticalMs ?? 60_000;
    this.maxConnsPerClient = opts.maxConnsPerClient ?? 200;
    this.leader = opts.leader ?? true;
    this.lastContactMs = opts.lastContactMs ?? 0;
    this.raftIndexFields = opts.raftIndexFields ?? false;
    const start = BigInt(opts.startIndex ?? 1);
    if (start < 1n || start > U64_MAX) throw new Error('startIndex must be a uint64 >= 1');
    // The first write (the agent's node, just below) takes startIndex.
    this.raft = start - 1n;
    if (!this.leader) this.leaderLostAt = Date.now();
    templates();
    const txn = new Txn();
    this.upsertNode(this.agentNode, this.agentNodeAddress, undefined, txn);
    this.apply(txn);
    if (opts.seedFixtures) this.seed();
    if (opts.peers) this.link(...opts.peers);
  }

  // ---------------------------------------------------------------- lifecycle

  get port(): number {
    return this._port;
  }
  get address(): string {
    return `http://127.0.0.1:${this._port}`;
  }

  async start(port = 0): Promise<void> {
    if (this.server) throw new Error('ConsulDouble already started');
    const server = http.createServer((req, res) => this.handle(req, res));
    // Go's server has no idle/request timeout; held queries may last 10m.
    server.requestTimeout = 0;
    server.timeout = 0;
    server.keepAliveTimeout = 0;
    server.headersTimeout = 60_000;
    server.on('connection', (s: Socket) => this.onConnection(s));
    server.on('clientError', (_err, socket) => socket.destroy());
    this.server = server;
    await this.listen(port);
    this._port = (server.address() as AddressInfo).port;
    this.running = true;
    for (const c of this.allChecks()) this.startRunner(c);
  }

  async stop(): Promise<void> {
    this.running = false;
    for (const f of this.forwards) f.destroy();
    this.forwards.clear();
    this.forwardAgent?.destroy();
    this.forwardAgent = undefined;
    for (const c of this.allChecks()) this.stopRunner(c);
    for (const h of this.held) clearTimeout(h.timer);
    this.held.clear();
    this.hung.clear();
    await this.listenerOp.catch(() => undefined);
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    const server = this.server;
    this.server = undefined;
    if (server?.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private listen(port: number): Promise<void> {
    const server = this.server;
    if (!server) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      server.once('error', onError);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', onError);
        resolve();
      });
    });
  }

  private onConnection(s: Socket): void {
    if (this.fault === 'refuse' || !this.running) {
      s.destroy();
      return;
    }
    if (this.maxConnsPerClient > 0 && this.sockets.size >= this.maxConnsPerClient) {
      // Consul's connlimit answers 429 and closes (fact 20); every client here is 127.0.0.1.
      s.end('HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      s.destroySoon();
      return;
    }
    this.sockets.add(s);
    s.once('close', () => this.sockets.delete(s));
  }

  // ---------------------------------------------------------------- observation

  openConnections(): number {
    return this.sockets.size;
  }
  heldQueries(): number {
    return this.held.size;
  }
  /** Requests swallowed by the 'hang' fault and still open. */
  hungRequests(): number {
    return this.hung.size;
  }
  clearRequests(): void {
    this.requests.length = 0;
  }
  agentServices(): Record<string, unknown> {
    return this.renderAgentServices();
  }
  checkStatus(checkId: string, node?: string): string | undefined {
    return this.findCheck(checkId, node)?.pub.Status;
  }
  /** Current X-Consul-Index of /v1/health/service/:name (>= 1); a Number, so rounded above 2^53 (see serviceIndexBig). */
  serviceIndex(name: string): number {
    return Number(this.serviceIndexBig(name));
  }
  catalogIndex(): number {
    return Number(this.catalogIndexBig());
  }
  healthIndex(): number {
    return Number(this.healthIndexBig());
  }
  /** Exact X-Consul-Index of /v1/health/service/:name (and catalog/service, health/checks). */
  serviceIndexBig(name: string): bigint {
    return maxBig(1n, this.indexFor({ kind: 'service', name }));
  }
  /** Exact X-Consul-Index of /v1/catalog/services (services table). */
  catalogIndexBig(): bigint {
    return maxBig(1n, this.catalogIdx);
  }
  /** Exact X-Consul-Index of /v1/health/state/* and /v1/health/node/* (checks table). */
  healthIndexBig(): bigint {
    return maxBig(1n, this.healthIdx);
  }
  /** The last raft index written (what agent and error answers carry). */
  raftIndex(): bigint {
    return maxBig(1n, this.raft);
  }
  /** CreateIndex/ModifyIndex of a service instance (fact 28); undefined when not registered. */
  serviceIndexes(serviceId: string, node?: string): RaftIndexes | undefined {
    const s = this.findService(serviceId, node);
    return s ? { createIndex: s.createIndex, modifyIndex: s.modifyIndex } : undefined;
  }
  /** CreateIndex/ModifyIndex of a check (fact 28); undefined when not registered. */
  checkIndexes(checkId: string, node?: string): RaftIndexes | undefined {
    const c = this.findCheck(checkId, node);
    return c ? { createIndex: c.createIndex ?? 0n, modifyIndex: c.modifyIndex ?? 0n } : undefined;
  }
  /** Whether the cluster has a leader (fact 26). */
  hasLeader(): boolean {
    return this.leader;
  }
  /** Cross-datacenter requests this double is forwarding right now (fact 27). */
  inflightForwards(): number {
    return this.forwards.size;
  }
  /** The linked double serving `datacenter`, if any. */
  peer(datacenter: string): ConsulDouble | undefined {
    return this.peers.get(datacenter);
  }
  async waitFor(pred: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error(`ConsulDouble.waitFor timed out: ${what}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }
  waitForHeldQueries(count: number, timeoutMs = 5000): Promise<void> {
    return this.waitFor(() => this.held.size >= count, timeoutMs, `${count} held queries`);
  }

  // ---------------------------------------------------------------- configuration

  setAclToken(token: string | undefined): void {
    this.aclToken = token;
  }
  setJitterFraction(fraction: number): void {
    this.jitterFraction = fraction;
  }

  /**
   * Leader loss and recovery (fact 26). Without a leader, default and consistent reads answer
   * 500 "No cluster leader" (held ones at once) and stale reads keep answering and blocking with
   * X-Consul-KnownLeader false. Writes through the double still apply.
   */
  setLeader(on: boolean): void {
    if (on === this.leader) return;
    this.leader = on;
    if (on) return;
    this.leaderLostAt = Date.now();
    for (const h of [...this.held]) if (h.consistency !== 'stale') this.answer(h);
  }

  /**
   * X-Consul-LastContact of stale reads, in ms (fact 26). While leaderless it grows in real time from
   * the later of the leader's loss and this call, as a follower's last contact does.
   */
  setLastContact(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw new Error('setLastContact: ms must be >= 0');
    this.lastContactMs = ms;
    this.lastContactSetAt = Date.now();
  }

  private staleLastContact(): number {
    if (this.leader) return Math.round(this.lastContactMs);
    return Math.round(this.lastContactMs + Date.now() - Math.max(this.leaderLostAt, this.lastContactSetAt));
  }

  /**
   * WAN-links doubles of other datacenters, both ways (fact 27): `?dc=<their datacenter>` on catalog and
   * health reads is forwarded to them over HTTP. Throws on a datacenter name clash.
   */
  link(...others: ConsulDouble[]): void {
    for (const o of others) {
      if (o === this) continue;
      if (o.datacenter === this.datacenter) throw new Error(`link: both doubles are datacenter ${o.datacenter}`);
      const mine = this.peers.get(o.datacenter);
      const theirs = o.peers.get(this.datacenter);
      if ((mine && mine !== o) || (theirs && theirs !== this)) throw new Error(`link: datacenter ${o.datacenter} or ${this.datacenter} is already linked to another double`);
      this.peers.set(o.datacenter, o);
      o.peers.set(this.datacenter, this);
    }
  }

  /** Removes a link made by link(); forwarding to it then answers 500 "No path to datacenter". */
  unlink(other: ConsulDouble): void {
    if (this.peers.get(other.datacenter) === other) this.peers.delete(other.datacenter);
    if (other.peers.get(this.datacenter) === this) other.peers.delete(this.datacenter);
  }

  /**
   * Returns a promise for the listener change ('refuse' closes the listening socket,
   * leaving it re-listens on the same port); callers may ignore it.
   */
  setFault(fault: ConsulFault): Promise<void> {
    const prev = this.fault;
    this.fault = fault;
    let op = this.listenerOp;
    if (fault === 'refuse' && prev !== 'refuse') {
      op = op.then(() => this.closeListener());
    } else if (fault !== 'refuse' && prev === 'refuse') {
      op = op.then(() => (this.server && this.running ? this.listen(this._port) : undefined));
    }
    this.listenerOp = op.catch(() => undefined);
    op.catch(() => undefined);
    return op;
  }

  private closeListener(): Promise<void> {
    for (const h of this.held) clearTimeout(h.timer);
    this.held.clear();
    this.hung.clear();
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    if (!server?.listening) return Promise.resolve();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  }

  // ---------------------------------------------------------------- catalog mutations

  register(svc: DoubleServiceInput): void {
    if (!svc.id || !svc.name) throw new Error('register: id and name are required');
    if (!Number.isInteger(svc.port)) throw new Error('register: port must be an integer');
    const txn = new Txn();
    const node = svc.node ?? this.agentNode;
    this.upsertNode(node, svc.nodeAddress, svc.nodeMeta, txn);
    const address = svc.address ?? '';
    const rec = this.upsertService(
      node,
      {
        ID: svc.id,
        Service: svc.name,
        Tags: [...(svc.tags ?? [])],
        Address: address,
        TaggedAddresses: svc.taggedAddresses ? clone(svc.taggedAddresses) : defaultServiceTagged(address, svc.port),
        Meta: { ...(svc.meta ?? {}) },
        Port: svc.port,
        Weights: svc.weights ? { ...svc.weights } : { Passing: 1, Warning: 1 },
      },
      { viaAgent: false },
      txn,
    );
    const checkId = `service:${svc.id}`;
    const existing = this.checks.get(node)?.get(checkId);
    this.putCheck(
      {
        node,
        pub: this.makeServiceCheckPub(rec, checkId, `Service '${svc.name}' check`, svc.status ?? 'passing', ''),
        def: existing?.def ?? passiveDef(),
        viaAgent: existing?.viaAgent ?? false,
        liveOutput: '',
      },
      txn,
    );
    this.apply(txn);
  }

  /** Removes one instance; returns false when it was not registered. */
  deregister(serviceId: string, node?: string): boolean {
    const rec = this.findService(serviceId, node);
    if (!rec) return false;
    const txn = new Txn();
    this.removeService(rec, txn);
    this.apply(txn);
    return true;
  }

  /** 'maintenance' adds the `_service_maintenance:<id>` critical check; other statuses clear it and set the service's checks. */
  setServiceStatus(serviceId: string, status: CheckStatus | 'maintenance', node?: string): void {
    const rec = this.findService(serviceId, node);
    if (!rec) throw new Error(`setServiceStatus: unknown service ID ${serviceId}`);
    const txn = new Txn();
    const maintId = SVC_MAINT_PREFIX + rec.pub.ID;
    if (status === 'maintenance') {
      this.putCheck(this.serviceMaintCheck(rec, ''), txn);
    } else {
      const maint = this.checks.get(rec.node)?.get(maintId);
      if (maint) this.deleteCheck(maint, txn);
      const own = this.serviceChecks(rec).filter((c) => !c.pub.CheckID.startsWith(SVC_MAINT_PREFIX));
      if (own.length === 0) {
        const id = `service:${rec.pub.ID}`;
        this.putCheck(
          { node: rec.node, pub: this.makeServiceCheckPub(rec, id, `Service '${rec.pub.Service}' check`, status, ''), def: passiveDef(), viaAgent: rec.viaAgent, liveOutput: '' },
          txn,
        );
      }
      for (const c of own) this.changeStatus(c, status, c.pub.Output, txn);
    }
    this.apply(txn);
  }

  setNodeHealth(node: string, status: CheckStatus): void {
    const n = this.nodes.get(node);
    if (!n) throw new Error(`setNodeHealth: unknown node ${node}`);
    const txn = new Txn();
    const c = this.checks.get(node)?.get('serfHealth');
    const output = status === 'passing' ? 'Agent alive and reachable' : 'Agent not live or unreachable';
    if (c) this.changeStatus(c, status, output, txn);
    else this.putCheck(this.serfCheck(node, status), txn);
    this.apply(txn);
  }

  setMaintenance(node: string, on: boolean, reason = ''): void {
    if (!this.nodes.has(node)) throw new Error(`setMaintenance: unknown node ${node}`);
    const txn = new Txn();
    const existing = this.checks.get(node)?.get(NODE_MAINT);
    if (on && !existing) {
      const pub = shaped(templates().nodeCheck, {
        Node: node,
        CheckID: NODE_MAINT,
        Name: 'Node Maintenance Mode',
        Status: 'critical',
        Notes: reason || 'Maintenance mode is enabled for this node, but no reason was provided. This is a default message.',
        Output: '',
        ServiceID: '',
        ServiceName: '',
        ServiceTags: [],
      });
      this.putCheck({ node, pub, def: passiveDef(), viaAgent: node === this.agentNode, liveOutput: '' }, txn);
    } else if (!on && existing) {
      this.deleteCheck(existing, txn);
    }
    this.apply(txn);
  }

  /** Bumps the service's index with identical data (fact 3). */
  touch(service: string): void {
    const txn = new Txn();
    txn.services.add(service);
    this.apply(txn);
  }

  /** Indexes go backwards (snapshot restore); every held query answers at once with the lower index. */
  resetIndex(to: number | bigint = 1): void {
    const t = BigInt(to);
    this.raft = t;
    for (const k of this.svcIdx.keys()) this.svcIdx.set(k, t);
    this.extinctionIdx = minBig(this.extinctionIdx, t);
    this.catalogIdx = this.healthIdx = this.nodesIdx = t;
    const lower = (r: { createIndex?: bigint; modifyIndex?: bigint }): void => {
      r.createIndex = minBig(r.createIndex ?? 0n, t);
      r.modifyIndex = minBig(r.modifyIndex ?? 0n, t);
    };
    for (const s of this.services.values()) lower(s);
    for (const n of this.nodes.values()) lower(n);
    for (const c of this.allChecks()) lower(c);
    for (const h of [...this.held]) this.answer(h);
  }

  // ---------------------------------------------------------------- state internals

  private allChecks(): CheckRec[] {
    const out: CheckRec[] = [];
    for (const m of this.checks.values()) out.push(...m.values());
    return out;
  }

  private findService(id: string, node?: string): SvcRec | undefined {
    if (node !== undefined) return this.services.get(skey(node, id));
    const local = this.services.get(skey(this.agentNode, id));
    if (local) return local;
    for (const s of this.services.values()) if (s.pub.ID === id) return s;
    return undefined;
  }

  private findCheck(id: string, node?: string): CheckRec | undefined {
    if (node !== undefined) return this.checks.get(node)?.get(id);
    const local = this.checks.get(this.agentNode)?.get(id);
    if (local) return local;
    for (const m of this.checks.values()) {
      const c = m.get(id);
      if (c) return c;
    }
    return undefined;
  }

  private servicesOnNode(node: string): SvcRec[] {
    const out: SvcRec[] = [];
    for (const k of this.servicesByNode.get(node) ?? []) {
      const s = this.services.get(k);
      if (s) out.push(s);
    }
    return out;
  }

  private ownedChecks(owner: string): CheckRec[] {
    const set = this.checksByOwner.get(owner);
    return set ? [...set].sort((a, b) => cmp(a.pub.CheckID, b.pub.CheckID)) : [];
  }

  private serviceChecks(rec: SvcRec): CheckRec[] {
    return this.ownedChecks(skey(rec.node, rec.pub.ID));
  }

  private nodeChecks(node: string): CheckRec[] {
    return this.ownedChecks(skey(node, ''));
  }

  private indexSet<T>(map: Map<string, Set<T>>, key: string, value: T, add: boolean): void {
    let set = map.get(key);
    if (add) {
      if (!set) map.set(key, (set = new Set()));
      set.add(value);
    } else if (set) {
      set.delete(value);
      if (set.size === 0) map.delete(key);
    }
  }

  private upsertNode(name: string, address: string | undefined, meta: StrMap | undefined, txn: Txn, pub?: NodePub): NodeRec {
    const existing = this.nodes.get(name);
    if (existing) {
      if (address !== undefined && address !== existing.pub.Address) {
        existing.pub.Address = address;
        existing.pub.TaggedAddresses = nodeTagged(address);
        txn.nodes = true;
        txn.stampNodes.push(existing);
        for (const s of this.servicesOnNode(name)) txn.services.add(s.pub.Service);
      }
      return existing;
    }
    const addr = address ?? '127.0.0.1';
    const rec: NodeRec = {
      createIndex: 0n,
      modifyIndex: 0n,
      pub:
        pub ??
        shaped(templates().node, {
          ID: randomUUID(),
          Node: name,
          Address: addr,
          Datacenter: this.datacenter,
          TaggedAddresses: nodeTagged(addr),
          Meta: { ...(meta ?? {}) },
        }),
    };
    this.nodes.set(name, rec);
    txn.nodes = true;
    txn.stampNodes.push(rec);
    this.putCheck(this.serfCheck(name, 'passing'), txn);
    return rec;
  }

  private serfCheck(node: string, status: CheckStatus): CheckRec {
    const pub = shaped(templates().nodeCheck, {
      Node: node,
      CheckID: 'serfHealth',
      Name: 'Serf Health Status',
      Status: status,
      Notes: '',
      Output: status === 'passing' ? 'Agent alive and reachable' : 'Agent not live or unreachable',
      ServiceID: '',
      ServiceName: '',
      ServiceTags: [],
    });
    return { node, pub, def: passiveDef(), viaAgent: false, liveOutput: pub.Output };
  }

  private makeServiceCheckPub(rec: SvcRec, checkId: string, name: string, status: string, notes: string): CheckPub {
    return shaped(templates().serviceCheck, {
      Node: rec.node,
      CheckID: checkId,
      Name: name,
      Status: status,
      Notes: notes,
      Output: '',
      ServiceID: rec.pub.ID,
      ServiceName: rec.pub.Service,
      ServiceTags: [...rec.pub.Tags],
    });
  }

  private serviceMaintCheck(rec: SvcRec, reason: string): CheckRec {
    const pub = this.makeServiceCheckPub(
      rec,
      SVC_MAINT_PREFIX + rec.pub.ID,
      'Service Maintenance Mode',
      'critical',
      reason || 'Maintenance mode is enabled for this service, but no reason was provided. This is a default message.',
    );
    return { node: rec.node, pub, def: passiveDef(), viaAgent: rec.viaAgent, liveOutput: '' };
  }

  /** Inserts or replaces a service instance; `values` lacks only Namespace (kept from the fixture shape). */
  private upsertService(
    node: string,
    values: Omit<ServicePub, 'Namespace'>,
    extra: { viaAgent: boolean; enableTagOverride?: boolean; namespace?: string },
    txn: Txn,
    pubOverride?: ServicePub,
  ): SvcRec {
    const key = skey(node, values.ID);
    const prev = this.services.get(key);
    const pub = pubOverride ?? shaped(templates().service, values as Partial<ServicePub>);
    if (extra.namespace !== undefined && 'Namespace' in pub) pub.Namespace = extra.namespace;
    const rec: SvcRec = {
      node,
      pub,
      enableTagOverride: extra.enableTagOverride ?? false,
      viaAgent: prev?.viaAgent === true || extra.viaAgent,
      datacenter: this.datacenter,
      proxy: prev?.proxy ?? clone(templates().catalogProxy),
      connect: prev?.connect ?? clone(templates().catalogConnect),
      createIndex: prev?.createIndex ?? 0n,
      modifyIndex: prev?.modifyIndex ?? 0n,
    };
    if (prev && sameJson(prev.pub, rec.pub) && prev.enableTagOverride === rec.enableTagOverride && prev.viaAgent === rec.viaAgent) {
      return prev;
    }
    if (prev && prev.pub.Service !== pub.Service) {
      this.byName.get(prev.pub.Service)?.delete(key);
      if (this.byName.get(prev.pub.Service)?.size === 0) this.byName.delete(prev.pub.Service);
      txn.services.add(prev.pub.Service);
    }
    this.services.set(key, rec);
    this.indexSet(this.servicesByNode, node, key, true);
    let set = this.byName.get(pub.Service);
    if (!set) this.byName.set(pub.Service, (set = new Set()));
    set.add(key);
    txn.catalog = true;
    txn.services.add(pub.Service);
    txn.stamp.push(rec);
    // Checks carry the service's name and tags: only those changes rewrite them (an address or port
    // change leaves the checks, and so the checks-table index, alone: fact 28).
    if (prev) {
      for (const c of this.serviceChecks(prev)) {
        if (c.pub.ServiceName !== pub.Service || !sameJson(c.pub.ServiceTags, pub.Tags)) {
          c.pub.ServiceName = pub.Service;
          c.pub.ServiceTags = [...pub.Tags];
          txn.health = true;
          txn.stampChecks.push(c);
        }
      }
    }
    return rec;
  }

  private removeService(rec: SvcRec, txn: Txn): void {
    const key = skey(rec.node, rec.pub.ID);
    if (this.services.get(key) !== rec) return;
    for (const c of this.serviceChecks(rec)) this.deleteCheck(c, txn);
    this.services.delete(key);
    this.indexSet(this.servicesByNode, rec.node, key, false);
    const set = this.byName.get(rec.pub.Service);
    set?.delete(key);
    if (set?.size === 0) this.byName.delete(rec.pub.Service);
    txn.catalog = true;
    txn.services.add(rec.pub.Service);
  }

  private affected(c: CheckRec, txn: Txn): void {
    txn.health = true;
    if (c.pub.ServiceID) {
      const s = this.services.get(skey(c.node, c.pub.ServiceID));
      txn.services.add(s ? s.pub.Service : c.pub.ServiceName);
    } else {
      for (const s of this.servicesOnNode(c.node)) txn.services.add(s.pub.Service);
    }
  }

  private putCheck(c: CheckRec, txn: Txn): void {
    let m = this.checks.get(c.node);
    if (!m) this.checks.set(c.node, (m = new Map()));
    const prev = m.get(c.pub.CheckID);
    if (prev === c) return;
    if (prev) {
      this.stopRunner(prev);
      this.indexSet(this.checksByOwner, skey(prev.node, prev.pub.ServiceID), prev, false);
    }
    m.set(c.pub.CheckID, c);
    this.indexSet(this.checksByOwner, skey(c.node, c.pub.ServiceID), c, true);
    c.createIndex = prev?.createIndex ?? 0n;
    c.modifyIndex = prev?.modifyIndex ?? 0n;
    // A check is rewritten when its fields or its definition changed (ensureCheckTxn; fact 28).
    if (!prev || !sameJson(prev.pub, c.pub) || !sameJson(prev.def, c.def)) {
      this.affected(c, txn);
      txn.stampChecks.push(c);
    }
    if (this.running) this.startRunner(c);
  }

  private deleteCheck(c: CheckRec, txn: Txn): void {
    const m = this.checks.get(c.node);
    if (m?.get(c.pub.CheckID) !== c) return;
    this.stopRunner(c);
    m.delete(c.pub.CheckID);
    this.indexSet(this.checksByOwner, skey(c.node, c.pub.ServiceID), c, false);
    this.affected(c, txn);
  }

  private changeStatus(c: CheckRec, status: CheckStatus, output: string, txn: Txn): void {
    c.liveOutput = output;
    // Output-only changes are deferred by the agent (check_update_interval), so they do not bump the index.
    if (c.pub.Status === status) return;
    c.pub.Status = status;
    c.pub.Output = output;
    this.affected(c, txn);
    txn.stampChecks.push(c);
    this.armReaper(c);
  }

  private isLive(c: CheckRec): boolean {
    return this.checks.get(c.node)?.get(c.pub.CheckID) === c;
  }

  private apply(txn: Txn): void {
    if (!txn.dirty) return;
    const idx = ++this.raft;
    for (const r of [...txn.stamp, ...txn.stampChecks, ...txn.stampNodes]) {
      if (!r.createIndex) r.createIndex = idx;
      r.modifyIndex = idx;
    }
    for (const name of txn.services) {
      if (this.byName.has(name)) this.svcIdx.set(name, idx);
      else if (this.svcIdx.delete(name)) this.extinctionIdx = idx;
    }
    if (txn.catalog) this.catalogIdx = idx;
    if (txn.health) this.healthIdx = idx;
    if (txn.nodes) this.nodesIdx = idx;
    this.wake();
  }

  private indexFor(key: IndexKey): bigint {
    switch (key.kind) {
      case 'catalog':
        return this.catalogIdx;
      case 'health':
        return this.healthIdx;
      case 'service': {
        const idx = this.svcIdx.get(key.name);
        if (idx !== undefined) return idx;
        // A missing service reports the last service-extinction index, else the tables' max (as Consul's state store).
        return this.extinctionIdx > 0n ? this.extinctionIdx : maxBig(this.catalogIdx, maxBig(this.healthIdx, this.nodesIdx));
      }
    }
  }

  // ---------------------------------------------------------------- check runners

  private startRunner(c: CheckRec): void {
    this.stopRunner(c);
    if (!this.running) return;
    const d = c.def;
    if (d.kind === 'http' || d.kind === 'tcp') {
      const r: Runner = { stopped: false };
      c.runner = r;
      const tick = (): void => {
        if (r.stopped) return;
        const ac = new AbortController();
        r.inflight = ac;
        void this.probe(d, ac.signal).then(([status, output]) => {
          r.inflight = undefined;
          if (r.stopped || !this.isLive(c)) return;
          const txn = new Txn();
          this.changeStatus(c, status, output, txn);
          this.apply(txn);
          r.timer = setTimeout(tick, d.intervalMs);
          r.timer.unref();
        });
      };
      // Consul staggers the first run randomly within Interval; running at once keeps tests deterministic.
      r.timer = setTimeout(tick, 0);
      r.timer.unref();
    } else if (d.kind === 'ttl') {
      this.armTtl(c);
    }
    this.armReaper(c);
  }

  private stopRunner(c: CheckRec): void {
    if (c.runner) {
      c.runner.stopped = true;
      if (c.runner.timer) clearTimeout(c.runner.timer);
      c.runner.inflight?.abort();
      c.runner = undefined;
    }
    if (c.ttlTimer) clearTimeout(c.ttlTimer);
    if (c.reapTimer) clearTimeout(c.reapTimer);
    c.ttlTimer = c.reapTimer = undefined;
  }

  private armTtl(c: CheckRec): void {
    if (c.ttlTimer) clearTimeout(c.ttlTimer);
    c.ttlTimer = undefined;
    if (c.def.kind !== 'ttl' || !this.running) return;
    c.ttlTimer = setTimeout(() => {
      c.ttlTimer = undefined;
      if (!this.isLive(c)) return;
      const txn = new Txn();
      this.changeStatus(c, 'critical', 'TTL expired', txn);
      this.apply(txn);
    }, c.def.ttlMs);
    c.ttlTimer.unref();
  }

  private armReaper(c: CheckRec): void {
    const ms = c.def.deregisterAfterMs;
    if (!ms || !this.running) return;
    if (c.pub.Status !== 'critical') {
      if (c.reapTimer) clearTimeout(c.reapTimer);
      c.reapTimer = undefined;
      return;
    }
    if (c.reapTimer) return;
    c.reapTimer = setTimeout(() => {
      c.reapTimer = undefined;
      if (!this.isLive(c) || c.pub.Status !== 'critical') return;
      const rec = this.services.get(skey(c.node, c.pub.ServiceID));
      if (!rec) return;
      const txn = new Txn();
      this.removeService(rec, txn);
      this.apply(txn);
    }, ms);
    c.reapTimer.unref();
  }

  private probe(d: CheckDef, signal: AbortSignal): Promise<[CheckStatus, string]> {
    return d.kind === 'http' ? this.probeHttp(d, signal) : this.probeTcp(d, signal);
  }

  private probeHttp(d: CheckDef, signal: AbortSignal): Promise<[CheckStatus, string]> {
    const url = d.url ?? '';
    const method = (d.method || 'GET').toUpperCase();
    return new Promise((resolve) => {
      let settled = false;
      const done = (s: CheckStatus, out: string): void => {
        if (!settled) {
          settled = true;
          resolve([s, out]);
        }
      };
      let target: URL;
      try {
        target = new URL(url);
      } catch (err) {
        done('critical', `Get "${url}": ${(err as Error).message}`);
        return;
      }
      const mod = target.protocol === 'https:' ? https : http;
      const headers: Record<string, string[] | string> = { 'User-Agent': 'Consul Health Check', Accept: 'text/plain, text/*, */*' };
      for (const [k, v] of Object.entries(d.header ?? {})) headers[k] = v;
      const req = mod.request(target, { method, headers, agent: false, timeout: d.timeoutMs, rejectUnauthorized: !d.tlsSkipVerify, signal }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (b: Buffer) => {
          if (size < 4096) chunks.push(b);
          size += b.length;
        });
        res.on('error', () => undefined);
        res.on('end', () => {
          const code = res.statusCode ?? 0;
          const body = Buffer.concat(chunks).toString('utf8').slice(0, 4096);
          const out = `HTTP ${method} ${url}: ${code} ${res.statusMessage ?? ''} Output: ${body}`;
          done(code >= 200 && code < 300 ? 'passing' : code === 429 ? 'warning' : 'critical', out);
        });
      });
      req.on('timeout', () => req.destroy(new Error(`context deadline exceeded (Client.Timeout exceeded while awaiting headers)`)));
      req.on('error', (err) => done('critical', `${method} "${url}": ${err.message}`));
      req.end(d.body ?? undefined);
    });
  }

  private probeTcp(d: CheckDef, signal: AbortSignal): Promise<[CheckStatus, string]> {
    const addr = d.tcp ?? '';
    const i = addr.lastIndexOf(':');
    const host = addr.slice(0, i).replace(/^\[|\]$/g, '');
    const port = Number(addr.slice(i + 1));
    return new Promise((resolve) => {
      const sock = net.connect({ host, port });
      sock.setTimeout(d.timeoutMs);
      const finish = (s: CheckStatus, out: string): void => {
        sock.destroy();
        resolve([s, out]);
      };
      sock.once('connect', () => finish('passing', `TCP connect ${addr}: Success`));
      sock.once('timeout', () => finish('critical', `dial tcp ${addr}: i/o timeout`));
      sock.once('error', (err) => finish('critical', `dial tcp ${addr}: ${err.message}`));
      signal.addEventListener('abort', () => finish('critical', 'check stopped'), { once: true });
    });
  }

  // ---------------------------------------------------------------- rendering

  private instances(name: string, tags: string[]): SvcRec[] {
    const keys = this.byName.get(name);
    if (!keys) return [];
    const want = tags.map((t) => t.toLowerCase());
    return [...keys]
      .map((k) => this.services.get(k))
      .filter((s): s is SvcRec => s !== undefined)
      // Consul's tag filter is case-insensitive and every tag must match.
      .filter((s) => want.every((t) => s.pub.Tags.some((x) => x.toLowerCase() === t)))
      .sort((a, b) => cmp(a.node, b.node) || cmp(a.pub.ID, b.pub.ID));
  }

  private renderHealthService(name: string, tags: string[], passingOnly: boolean): unknown[] {
    const out: unknown[] = [];
    for (const s of this.instances(name, tags)) {
      const node = this.nodes.get(s.node);
      if (!node) continue;
      const checks = [...this.serviceChecks(s), ...this.nodeChecks(s.node)];
      if (passingOnly && checks.some((c) => c.pub.Status !== 'passing')) continue;
      out.push({ Node: this.withRaft(node.pub, node), Service: this.withRaft(s.pub, s), Checks: checks.map((c) => this.withRaft(c.pub, c)) });
    }
    return out;
  }

  /** A clone of `pub`, plus CreateIndex/ModifyIndex when the raftIndexFields option is on (fact 28). */
  private withRaft<T extends object>(pub: T, r: { createIndex?: bigint; modifyIndex?: bigint }): T {
    const out = clone(pub);
    if (this.raftIndexFields) Object.assign(out, { CreateIndex: r.createIndex ?? 0n, ModifyIndex: r.modifyIndex ?? 0n });
    return out;
  }

  private renderCatalogService(name: string, tags: string[]): unknown[] {
    return this.instances(name, tags).flatMap((s) => {
      const n = this.nodes.get(s.node);
      if (!n) return [];
      const row: Record<string, unknown> = {
        ID: n.pub.ID,
        Node: n.pub.Node,
        Address: n.pub.Address,
        Datacenter: n.pub.Datacenter,
        TaggedAddresses: clone(n.pub.TaggedAddresses),
        NodeMeta: clone(n.pub.Meta),
        CreateIndex: s.createIndex,
        ModifyIndex: s.modifyIndex,
        ServiceAddress: s.pub.Address,
        ServiceEnableTagOverride: s.enableTagOverride,
        ServiceID: s.pub.ID,
        ServiceName: s.pub.Service,
        ServicePort: s.pub.Port,
        ServiceMeta: clone(s.pub.Meta),
        ServiceTaggedAddresses: clone(s.pub.TaggedAddresses),
        ServiceTags: [...s.pub.Tags],
        ServiceProxy: clone(s.proxy),
        ServiceConnect: clone(s.connect),
      };
      if (s.pub.Namespace !== undefined) row['Namespace'] = s.pub.Namespace;
      return [row];
    });
  }

  private renderCatalogServices(): Record<string, string[]> {
    const entries: Array<[string, string[]]> = [];
    for (const [name, keys] of this.byName) {
      const tags: string[] = [];
      for (const k of keys) for (const t of this.services.get(k)?.pub.Tags ?? []) if (!tags.includes(t)) tags.push(t);
      entries.push([name, tags]);
    }
    return sortedObject(entries);
  }

  private renderAgentServices(): Record<string, unknown> {
    const entries: Array<[string, unknown]> = [];
    for (const s of this.services.values()) {
      if (s.node !== this.agentNode || !s.viaAgent) continue;
      const row: Record<string, unknown> = {
        ID: s.pub.ID,
        Service: s.pub.Service,
        Tags: [...s.pub.Tags],
        TaggedAddresses: clone(s.pub.TaggedAddresses),
        Meta: clone(s.pub.Meta),
      };
      if (s.pub.Namespace !== undefined) row['Namespace'] = s.pub.Namespace;
      Object.assign(row, {
        Port: s.pub.Port,
        Address: s.pub.Address,
        EnableTagOverride: s.enableTagOverride,
        Datacenter: s.datacenter,
        Weights: clone(s.pub.Weights),
      });
      entries.push([s.pub.ID, row]);
    }
    return sortedObject(entries);
  }

  private renderAgentChecks(): Record<string, unknown> {
    const entries: Array<[string, unknown]> = [];
    for (const c of this.checks.get(this.agentNode)?.values() ?? []) {
      if (!c.viaAgent) continue;
      const typ = c.def.kind === 'passive' ? '' : c.def.kind;
      entries.push([c.pub.CheckID, { ...clone(c.pub), Output: c.liveOutput || c.pub.Output, Type: typ }]);
    }
    return sortedObject(entries);
  }

  private renderChecks(filter: (c: CheckRec) => boolean): unknown[] {
    return this.allChecks()
      .filter(filter)
      .sort((a, b) => cmp(a.node, b.node) || cmp(a.pub.CheckID, b.pub.CheckID))
      .map((c) => this.withRaft(c.pub, c));
  }

  // ---------------------------------------------------------------- HTTP

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const query: Record<string, string | string[]> = {};
    for (const [k, v] of url.searchParams) {
      const prev = query[k];
      query[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
    }
    const method = req.method ?? 'GET';
    const token = tokenOf(req, url);
    const rec: RecordedRequest = { method, path: url.pathname, query, at: Date.now() };
    if (token !== undefined) rec.token = token;
    this.requests.push(rec);

    res.on('error', () => undefined);
    const fault = this.fault;
    if (fault === 'hang' || fault === '5xx' || fault === 'refuse' || (fault === 'garbage' && method !== 'GET')) {
      this.finish(res, { status: 200, index: this.raft });
      req.resume();
      return;
    }
    const p = url.pathname;
    if (this.aclToken !== undefined && p !== '/v1/status/leader' && token !== this.aclToken) {
      this.finish(res, { status: 403, text: 'Permission denied', index: this.raft });
      req.resume();
      return;
    }
    try {
      this.route(method, p, query, req, res);
    } catch (err) {
      this.finish(res, { status: 500, text: (err as Error).message, index: this.raft });
    }
  }

  private route(method: string, p: string, q: Record<string, string | string[]>, req: IncomingMessage, res: ServerResponse): void {
    const text = (status: number, body: string): void => this.finish(res, { status, text: body, index: this.raft });
    const wrongMethod = (allowed: string): boolean => {
      if (method === allowed) return false;
      req.resume();
      this.finish(res, { status: 405, text: `method ${method} not allowed`, index: this.raft, headers: { Allow: allowed } });
      return true;
    };
    const dec = (s: string): string => decodeURIComponent(s);
    let m: RegExpExecArray | null;

    if (method === 'GET') {
      // The agent parses consistency before the RPC is routed to a datacenter (fact 26).
      if (q['stale'] !== undefined && q['consistent'] !== undefined) return text(400, 'Cannot specify ?stale with ?consistent, conflicting semantics.');
      const dc = one(q['dc']);
      // Catalog, health and status reads are RPCs routed by datacenter; agent endpoints are local and ignore ?dc (fact 27).
      const routed = p.startsWith('/v1/catalog/') || p.startsWith('/v1/health/') || p === '/v1/status/leader';
      if (routed && dc && dc !== this.datacenter) return this.forward(dc, req, res);
    }
    const extra: OutgoingHttpHeaders | undefined = q['cached'] !== undefined ? { 'X-Cache': 'MISS', Age: '0' } : undefined;

    if (p === '/v1/status/leader') {
      if (wrongMethod('GET')) return;
      // Status.Leader answers "" while the cluster has no leader.
      return this.finish(res, { status: 200, json: this.leader ? '127.0.0.1:8300' : '', index: this.raft });
    }
    if ((m = /^\/v1\/health\/service\/([^/]+)$/.exec(p))) {
      if (wrongMethod('GET')) return;
      const name = dec(m[1] ?? '');
      let passing = false;
      const pv = q['passing'];
      if (pv !== undefined) {
        const raw = one(pv) ?? '';
        const b = raw === '' ? true : parseGoBool(raw);
        if (b === undefined) return text(400, 'Invalid value for ?passing');
        passing = b;
      }
      const tags = many(q['tag']);
      return this.blocking(res, q, { kind: 'service', name }, () => this.renderHealthService(name, tags, passing), extra);
    }
    if ((m = /^\/v1\/health\/checks\/([^/]+)$/.exec(p))) {
      if (wrongMethod('GET')) return;
      const name = dec(m[1] ?? '');
      return this.blocking(res, q, { kind: 'service', name }, () => this.renderChecks((c) => c.pub.ServiceID !== '' && c.pub.ServiceName === name), extra);
    }
    if ((m = /^\/v1\/health\/state\/([^/]+)$/.exec(p))) {
      if (wrongMethod('GET')) return;
      const state = dec(m[1] ?? '');
      if (state !== 'any' && !isStatus(state)) return text(400, 'Invalid check state');
      return this.blocking(res, q, { kind: 'health' }, () => this.renderChecks((c) => state === 'any' || c.pub.Status === state), extra);
    }
    if ((m = /^\/v1\/health\/node\/([^/]+)$/.exec(p))) {
      if (wrongMethod('GET')) return;
      const node = dec(m[1] ?? '');
      return this.blocking(res, q, { kind: 'health' }, () => this.renderChecks((c) => c.node === node), extra);
    }
    if (p === '/v1/catalog/services') {
      if (wrongMethod('GET')) return;
      return this.blocking(res, q, { kind: 'catalog' }, () => this.renderCatalogServices(), extra);
    }
    if ((m = /^\/v1\/catalog\/service\/([^/]+)$/.exec(p))) {
      if (wrongMethod('GET')) return;
      const name = dec(m[1] ?? '');
      const tags = many(q['tag']);
      return this.blocking(res, q, { kind: 'service', name }, () => this.renderCatalogService(name, tags), extra);
    }
    if (p === '/v1/agent/services') {
      if (wrongMethod('GET')) return;
      return this.finish(res, { status: 200, json: this.renderAgentServices(), index: this.raft });
    }
    if (p === '/v1/agent/checks') {
      if (wrongMethod('GET')) return;
      return this.finish(res, { status: 200, json: this.renderAgentChecks(), index: this.raft });
    }
    if (p === '/v1/agent/service/register') {
      if (wrongMethod('PUT')) return;
      return this.withBody(req, res, (body) => this.agentRegister(body));
    }
    if ((m = /^\/v1\/agent\/service\/deregister\/(.+)$/.exec(p))) {
      if (wrongMethod('PUT')) return;
      const id = dec(m[1] ?? '');
      req.resume();
      const rec = this.localService(id);
      if (!rec) return text(404, `Unknown service ID "${id}". Ensure that the service ID is passed, not the service name.`);
      const txn = new Txn();
      this.removeService(rec, txn);
      this.apply(txn);
      return this.finish(res, { status: 200, index: this.raft });
    }
    if ((m = /^\/v1\/agent\/service\/maintenance\/(.+)$/.exec(p))) {
      if (wrongMethod('PUT')) return;
      req.resume();
      const id = dec(m[1] ?? '');
      const enable = parseGoBool(one(q['enable']) ?? '');
      if (one(q['enable']) === undefined) return text(400, 'Missing value for enable');
      if (enable === undefined) return text(400, 'Invalid value for enable');
      const rec = this.localService(id);
      if (!rec) return text(404, `Unknown service ID "${id}". Ensure that the service ID is passed, not the service name.`);
      const txn = new Txn();
      const existing = this.checks.get(rec.node)?.get(SVC_MAINT_PREFIX + id);
      if (enable && !existing) this.putCheck(this.serviceMaintCheck(rec, one(q['reason']) ?? ''), txn);
      if (!enable && existing) this.deleteCheck(existing, txn);
      this.apply(txn);
      return this.finish(res, { status: 200, index: this.raft });
    }
    if (p === '/v1/agent/maintenance') {
      if (wrongMethod('PUT')) return;
      req.resume();
      const raw = one(q['enable']);
      if (raw === undefined) return text(400, 'Missing value for enable');
      const enable = parseGoBool(raw);
      if (enable === undefined) return text(400, 'Invalid value for enable');
      this.setMaintenance(this.agentNode, enable, one(q['reason']) ?? '');
      return this.finish(res, { status: 200, index: this.raft });
    }
    if ((m = /^\/v1\/agent\/check\/(pass|warn|fail)\/(.+)$/.exec(p))) {
      if (wrongMethod('PUT')) return;
      req.resume();
      const status: CheckStatus = m[1] === 'pass' ? 'passing' : m[1] === 'warn' ? 'warning' : 'critical';
      return this.ttlUpdate(res, dec(m[2] ?? ''), status, one(q['note']) ?? '');
    }
    if ((m = /^\/v1\/agent\/check\/update\/(.+)$/.exec(p))) {
      if (wrongMethod('PUT')) return;
      const id = dec(m[1] ?? '');
      return this.withBody(req, res, (body) => {
        if (!isObj(body)) throw new BadRequest('Request decode failed: expected an object');
        const st = field(body, 'Status');
        if (!isStatus(st)) throw new BadRequest(`Invalid check status: "${String(st ?? '')}"`);
        const out = field(body, 'Output');
        return { apply: () => this.ttlUpdate(res, id, st, typeof out === 'string' ? out : '') };
      });
    }
    req.resume();
    text(404, `404 page not found`);
  }

  /**
   * Cross-datacenter read (fact 27): re-issued over HTTP to the linked double of `dc`, as the agent
   * forwards the RPC to a server there; that server answers (and holds a blocking query) with its own
   * data, index and headers. Aborting the client's request aborts the forwarded one.
   */
  private forward(dc: string, req: IncomingMessage, res: ServerResponse): void {
    req.resume();
    const noPath = (): void => this.finish(res, { status: 500, text: NO_PATH, index: 0n });
    const peer = this.peers.get(dc);
    if (!peer || peer._port === 0) return noPath();
    const headers: OutgoingHttpHeaders = { Accept: 'application/json' };
    for (const h of ['x-consul-token', 'authorization']) {
      const v = req.headers[h];
      if (typeof v === 'string') headers[h] = v;
    }
    this.forwardAgent ??= new http.Agent({ keepAlive: true });
    const out = http.request({ host: '127.0.0.1', port: peer._port, method: 'GET', path: req.url ?? '/', headers, agent: this.forwardAgent });
    this.forwards.add(out);
    const done = (): void => {
      this.forwards.delete(out);
    };
    const onClientGone = (): void => {
      if (!res.writableEnded) out.destroy();
    };
    res.once('close', onClientGone);
    out.on('response', (up) => {
      const chunks: Buffer[] = [];
      up.on('data', (b: Buffer) => chunks.push(b));
      up.on('error', () => {
        done();
        res.destroy();
      });
      up.on('end', () => {
        done();
        if (res.writableEnded || res.destroyed) return;
        const body = Buffer.concat(chunks);
        const relayed: OutgoingHttpHeaders = { 'Content-Length': body.length };
        for (const h of RELAYED) {
          const v = up.headers[h];
          if (v !== undefined) relayed[h] = v;
        }
        res.writeHead(up.statusCode ?? 502, relayed);
        res.end(body);
      });
    });
    out.on('error', () => {
      done();
      // Refused, reset or the peer went away: the datacenter cannot be reached.
      if (!res.headersSent) noPath();
      else res.destroy();
    });
    out.end();
  }

  private localService(id: string): SvcRec | undefined {
    const rec = this.services.get(skey(this.agentNode, id));
    return rec?.viaAgent ? rec : undefined;
  }

  private ttlUpdate(res: ServerResponse, id: string, status: CheckStatus, output: string): void {
    const c = this.checks.get(this.agentNode)?.get(id);
    if (!c || !c.viaAgent) {
      return this.finish(res, { status: 404, text: `Unknown check ID "${id}". Ensure that the check ID is passed, not the check name.`, index: this.raft });
    }
    if (c.def.kind !== 'ttl') {
      return this.finish(res, { status: 500, text: `CheckID "${id}" does not have associated TTL`, index: this.raft });
    }
    const txn = new Txn();
    this.changeStatus(c, status, output, txn);
    this.apply(txn);
    this.armTtl(c);
    this.finish(res, { status: 200, index: this.raft });
  }

  /** Reads a JSON body; `fn` validates (throwing BadRequest) and returns the write to apply. */
  private withBody(req: IncomingMessage, res: ServerResponse, fn: (body: unknown) => { apply: () => void } | void): void {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (b: Buffer) => {
      size += b.length;
      if (size <= 1 << 20) chunks.push(b);
    });
    req.on('error', () => undefined);
    req.on('end', () => {
      if (size > 1 << 20) return this.finish(res, { status: 413, text: 'Request body too large', index: this.raft });
      let body: unknown;
      try {
        const raw = Buffer.concat(chunks).toString('utf8');
        body = raw.trim() === '' ? undefined : JSON.parse(raw);
        if (body === undefined) throw new Error('EOF');
      } catch (err) {
        return this.finish(res, { status: 400, text: `Request decode failed: ${(err as Error).message}`, index: this.raft });
      }
      try {
        const w = fn(body);
        if (w) w.apply();
        else this.finish(res, { status: 200, index: this.raft });
      } catch (err) {
        const status = err instanceof BadRequest ? 400 : 500;
        this.finish(res, { status, text: (err as Error).message, index: this.raft });
      }
    });
  }

  private agentRegister(body: unknown): void {
    if (!isObj(body)) throw new BadRequest('Request decode failed: expected a JSON object');
    const name = field(body, 'Name');
    if (typeof name !== 'string' || name === '') throw new BadRequest('Missing service name');
    const idRaw = field(body, 'ID');
    const id = typeof idRaw === 'string' && idRaw !== '' ? idRaw : name;
    const tags = field(body, 'Tags') ?? [];
    if (!Array.isArray(tags) || tags.some((t) => typeof t !== 'string')) throw new BadRequest('Request decode failed: Tags must be a list of strings');
    const address = field(body, 'Address') ?? '';
    if (typeof address !== 'string') throw new BadRequest('Request decode failed: Address must be a string');
    const port = field(body, 'Port') ?? 0;
    if (typeof port !== 'number' || !Number.isInteger(port)) throw new BadRequest('Request decode failed: Port must be an integer');
    const meta = field(body, 'Meta') ?? {};
    if (!isObj(meta) || Object.values(meta).some((v) => typeof v !== 'string')) throw new BadRequest('Request decode failed: Meta must map strings to strings');
    let weights: Weights = { Passing: 1, Warning: 1 };
    const w = field(body, 'Weights');
    if (w !== undefined && w !== null) {
      if (!isObj(w)) throw new BadRequest('Request decode failed: Weights must be an object');
      const passing = field(w, 'Passing');
      const warning = field(w, 'Warning') ?? 0;
      if (typeof passing !== 'number' || passing < 1) throw new BadRequest('Invalid Weights: Passing must be greater than 0');
      if (typeof warning !== 'number' || warning < 0) throw new BadRequest('Invalid Weights: Warning must be >= 0');
      weights = { Passing: passing, Warning: warning };
    }
    const tagged = field(body, 'TaggedAddresses');
    if (tagged !== undefined && tagged !== null && !isObj(tagged)) throw new BadRequest('Request decode failed: TaggedAddresses must be an object');
    const eto = field(body, 'EnableTagOverride') === true;
    const ns = field(body, 'Namespace');

    const checkBodies: unknown[] = [];
    const checksField = field(body, 'Checks');
    const checkField = field(body, 'Check');
    if (Array.isArray(checksField)) checkBodies.push(...checksField);
    if (isObj(checkField)) checkBodies.unshift(checkField);
    const multi = checkBodies.length > 1;
    const parsed = checkBodies.map((cb, i) => {
      if (!isObj(cb)) throw new BadRequest('Request decode failed: check must be an object');
      const def = this.parseCheckDef(cb);
      const cid = field(cb, 'CheckID') ?? field(cb, 'ID');
      const checkId = typeof cid === 'string' && cid !== '' ? cid : multi ? `service:${id}:${i + 1}` : `service:${id}`;
      const cname = field(cb, 'Name');
      const notes = field(cb, 'Notes');
      const st = field(cb, 'Status');
      if (st !== undefined && st !== '' && !isStatus(st)) throw new BadRequest(`Invalid check status: "${String(st)}"`);
      return {
        def,
        checkId,
        name: typeof cname === 'string' && cname !== '' ? cname : `Service '${name}' check`,
        notes: typeof notes === 'string' ? notes : '',
        status: isStatus(st) ? st : undefined,
      };
    });

    return this.applyAgentRegister({
      id,
      name,
      tags: tags as string[],
      address,
      port,
      meta: meta as StrMap,
      weights,
      tagged: isObj(tagged) ? tagged : undefined,
      eto,
      ns: typeof ns === 'string' && ns !== '' ? ns : undefined,
      checks: parsed,
    });
  }

  private applyAgentRegister(r: {
    id: string;
    name: string;
    tags: string[];
    address: string;
    port: number;
    meta: StrMap;
    weights: Weights;
    tagged: Record<string, unknown> | undefined;
    eto: boolean;
    ns: string | undefined;
    checks: Array<{ def: CheckDef; checkId: string; name: string; notes: string; status: CheckStatus | undefined }>;
  }): void {
    const txn = new Txn();
    const node = this.agentNode;
    const rec = this.upsertService(
      node,
      {
        ID: r.id,
        Service: r.name,
        Tags: [...r.tags],
        Address: r.address,
        TaggedAddresses: r.tagged ? clone(r.tagged) : defaultServiceTagged(r.address, r.port),
        Meta: { ...r.meta },
        Port: r.port,
        Weights: r.weights,
      },
      { viaAgent: true, enableTagOverride: r.eto, namespace: r.ns },
      txn,
    );
    rec.viaAgent = true;
    const keep = new Set(r.checks.map((c) => c.checkId));
    for (const c of this.serviceChecks(rec)) {
      if (!keep.has(c.pub.CheckID) && !c.pub.CheckID.startsWith(SVC_MAINT_PREFIX)) this.deleteCheck(c, txn);
    }
    for (const c of r.checks) {
      const prev = this.checks.get(node)?.get(c.checkId);
      // New checks start critical (fact 13); a re-registered check keeps its status unless Status is given.
      const status = c.status ?? (prev?.pub.Status as CheckStatus | undefined) ?? 'critical';
      const pub = this.makeServiceCheckPub(rec, c.checkId, c.name, status, c.notes);
      if (prev && prev.pub.Status === status) pub.Output = prev.pub.Output;
      this.putCheck({ node, pub, def: c.def, viaAgent: true, liveOutput: pub.Output }, txn);
    }
    this.apply(txn);
  }

  private parseCheckDef(cb: Record<string, unknown>): CheckDef {
    const dur = (key: string): number | undefined => {
      const v = durationField(field(cb, key));
      if (v === 'invalid') throw new BadRequest(`Request decode failed: invalid duration for ${key}`);
      return v;
    };
    const interval = dur('Interval');
    const timeout = dur('Timeout');
    const ttl = dur('TTL');
    const dereg = dur('DeregisterCriticalServiceAfter');
    const httpUrl = field(cb, 'HTTP');
    const tcp = field(cb, 'TCP');
    const scriptish = ['Args', 'ScriptArgs', 'Script', 'GRPC', 'H2PING', 'UDP', 'OSService'].some((k) => {
      const v = field(cb, k);
      return v !== undefined && v !== null && v !== '' && !(Array.isArray(v) && v.length === 0);
    });
    const alias = ['AliasService', 'AliasNode'].some((k) => typeof field(cb, k) === 'string' && field(cb, k) !== '');
    const base: CheckDef = {
      kind: 'passive',
      intervalMs: 0,
      timeoutMs: timeout !== undefined && timeout > 0 ? timeout : 10_000,
      ttlMs: 0,
      deregisterAfterMs: dereg !== undefined && dereg > 0 ? Math.max(dereg, this.minDeregisterCriticalMs) : 0,
    };
    const needInterval = (): number => {
      if (interval === undefined || interval <= 0) throw new BadRequest('Interval must be > 0 for Script, HTTP, H2PING, TCP or UDP checks');
      return Math.max(interval, this.minCheckIntervalMs);
    };
    if (typeof httpUrl === 'string' && httpUrl !== '') {
      const header = field(cb, 'Header');
      const hdr: Record<string, string[]> = {};
      if (isObj(header)) for (const [k, v] of Object.entries(header)) hdr[k] = Array.isArray(v) ? v.map(String) : [String(v)];
      const method = field(cb, 'Method');
      const body = field(cb, 'Body');
      return {
        ...base,
        kind: 'http',
        url: httpUrl,
        method: typeof method === 'string' && method ? method : 'GET',
        header: hdr,
        body: typeof body === 'string' && body !== '' ? body : undefined,
        tlsSkipVerify: field(cb, 'TLSSkipVerify') === true,
        intervalMs: needInterval(),
      };
    }
    if (typeof tcp === 'string' && tcp !== '') return { ...base, kind: 'tcp', tcp, intervalMs: needInterval() };
    if (scriptish) {
      // Script/gRPC/H2PING/UDP/OSService checks are accepted but never executed: their status stays as registered.
      needInterval();
      return base;
    }
    if (ttl !== undefined) {
      if (ttl <= 0) throw new BadRequest('TTL must be > 0 for TTL checks');
      return { ...base, kind: 'ttl', ttlMs: ttl };
    }
    if (alias) return base;
    throw new BadRequest('Invalid check: one of Args, HTTP, TCP, UDP, GRPC, H2PING, TTL or AliasService/AliasNode is required');
  }

  private blocking(res: ServerResponse, q: Record<string, string | string[]>, key: IndexKey, body: () => unknown, extra?: OutgoingHttpHeaders): void {
    const idxRaw = one(q['index']);
    const waitRaw = one(q['wait']);
    let min = 0n;
    if (idxRaw !== undefined && idxRaw !== '') {
      // strconv.ParseUint(idx, 10, 64): exact, no sign, no exponent, at most 2^64-1 (fact 29).
      const idx = /^\d+$/.test(idxRaw) ? BigInt(idxRaw) : undefined;
      if (idx === undefined || idx > U64_MAX) return this.finish(res, { status: 400, text: 'Invalid index', index: this.raft });
      min = idx;
    }
    let waitMs = DEFAULT_WAIT_MS;
    if (waitRaw !== undefined && waitRaw !== '') {
      const w = parseGoDuration(waitRaw);
      if (w === undefined) return this.finish(res, { status: 400, text: 'Invalid wait time', index: this.raft });
      if (w > 0) waitMs = Math.min(w, MAX_WAIT_MS);
    }
    const consistency = consistencyOf(q);
    const render = (): Reply => {
      // Default and consistent reads need the leader; stale reads are answered by any server (fact 26).
      if (!this.leader && consistency !== 'stale') return { status: 500, text: NO_LEADER, index: 0n };
      const r: Reply = { status: 200, json: body(), index: this.indexFor(key), consistency };
      if (extra) r.headers = extra;
      return r;
    };
    if (min === 0n || !(this.leader || consistency === 'stale') || this.fault === 'garbage' || this.fault === 'no-index' || this.indexFor(key) > min) {
      return this.finish(res, render());
    }
    const jitter = this.jitterFraction > 0 ? Math.random() * waitMs * this.jitterFraction : 0;
    const h: Held = { key, min, consistency, res, render, timer: setTimeout(() => this.answer(h), waitMs + jitter) };
    h.timer.unref();
    this.held.add(h);
    res.once('close', () => {
      clearTimeout(h.timer);
      this.held.delete(h);
    });
  }

  private wake(): void {
    for (const h of [...this.held]) if (this.indexFor(h.key) > h.min) this.answer(h);
  }

  private answer(h: Held): void {
    if (!this.held.delete(h)) return;
    clearTimeout(h.timer);
    this.finish(h.res, h.render());
  }

  private finish(res: ServerResponse, r: Reply): void {
    if (res.writableEnded || res.destroyed) return;
    const fault = this.fault;
    if (fault === 'refuse') {
      res.destroy();
      return;
    }
    if (fault === 'hang') {
      this.hung.add(res);
      res.once('close', () => this.hung.delete(res));
      return;
    }
    let status = r.status;
    let payload: string;
    let type: string;
    if (fault === '5xx') {
      status = 500;
      payload = 'No cluster leader';
      type = TEXT;
    } else if (fault === 'garbage') {
      status = 200;
      payload = GARBAGE;
      type = JSON_TYPE;
    } else if (r.text !== undefined) {
      payload = r.text;
      type = TEXT;
    } else {
      payload = r.json === undefined ? '' : jsonText(r.json);
      type = JSON_TYPE;
    }
    const headers: OutgoingHttpHeaders = {
      'Content-Type': type,
      'Content-Length': Buffer.byteLength(payload),
      // The leader (default/consistent reads, writes) reports 0; a stale read may be answered by a follower (fact 26).
      'X-Consul-KnownLeader': String(this.leader),
      'X-Consul-LastContact': String(r.consistency === 'stale' && fault === null ? this.staleLastContact() : 0),
      ...(fault === null ? r.headers : {}),
    };
    if (fault === null && r.consistency !== undefined) headers['X-Consul-Effective-Consistency'] = r.consistency;
    // Consul never reports an index below 1 (fact 4); uint64, printed exactly (fact 29).
    if (fault !== 'no-index') headers['X-Consul-Index'] = maxBig(1n, r.index).toString();
    res.writeHead(status, headers);
    res.end(payload);
  }

  // ---------------------------------------------------------------- fixtures

  private seed(): void {
    const tpl = templates();
    // health-service.json: nodes, services and checks verbatim.
    {
      const txn = new Txn();
      for (const e of readFixture<Array<{ Node: NodePub; Service: ServicePub; Checks: CheckPub[] }>>('health-service.json')) {
        this.upsertNode(e.Node.Node, undefined, undefined, txn, clone(e.Node));
        this.upsertService(e.Node.Node, e.Service, { viaAgent: false }, txn, clone(e.Service));
        for (const c of e.Checks) {
          this.putCheck({ node: e.Node.Node, pub: clone(c), def: passiveDef(), viaAgent: false, liveOutput: c.Output }, txn);
        }
      }
      this.apply(txn);
    }
    // catalog-service.json: written at its documented ModifyIndex when that is still ahead of us.
    for (const e of readFixture<Array<Record<string, unknown>>>('catalog-service.json')) {
      const txn = new Txn();
      const nodeName = String(e['Node']);
      const nodePub = shaped(tpl.node, {
        ID: String(e['ID']),
        Node: nodeName,
        Address: String(e['Address']),
        Datacenter: String(e['Datacenter']),
        TaggedAddresses: clone(e['TaggedAddresses'] as StrMap),
        Meta: clone(e['NodeMeta'] as StrMap),
      });
      this.upsertNode(nodeName, undefined, undefined, txn, nodePub);
      const pub = shaped(tpl.service, {
        ID: String(e['ServiceID']),
        Service: String(e['ServiceName']),
        Tags: clone(e['ServiceTags'] as string[]),
        Address: String(e['ServiceAddress']),
        TaggedAddresses: clone(e['ServiceTaggedAddresses'] as Record<string, unknown>),
        Meta: clone(e['ServiceMeta'] as StrMap),
        Port: Number(e['ServicePort']),
        Weights: { Passing: 1, Warning: 1 },
      });
      if (typeof e['Namespace'] === 'string') pub.Namespace = e['Namespace'];
      const rec = this.upsertService(nodeName, pub, { viaAgent: false, enableTagOverride: e['ServiceEnableTagOverride'] === true }, txn, pub);
      rec.proxy = clone(e['ServiceProxy']);
      rec.connect = clone(e['ServiceConnect']);
      const big = (v: unknown): bigint | undefined => (typeof v === 'number' && Number.isSafeInteger(v) && v > 0 ? BigInt(v) : undefined);
      const at = big(e['ModifyIndex']);
      if (at !== undefined && at > this.raft + 1n) this.raft = at - 1n;
      this.apply(txn);
      const created = big(e['CreateIndex']);
      // Only when the documented ModifyIndex was honoured (a higher startIndex is already past it).
      if (created !== undefined && rec.modifyIndex === at && created <= rec.modifyIndex) rec.createIndex = created;
    }
    // agent-services.json: the agent's own registrations (no checks documented).
    {
      const txn = new Txn();
      const agent = readFixture<Record<string, Record<string, unknown>>>('agent-services.json');
      for (const s of Object.values(agent)) {
        const pub = shaped(tpl.service, {
          ID: String(s['ID']),
          Service: String(s['Service']),
          Tags: clone(s['Tags'] as string[]),
          Address: String(s['Address']),
          TaggedAddresses: clone(s['TaggedAddresses'] as Record<string, unknown>),
          Meta: clone(s['Meta'] as StrMap),
          Port: Number(s['Port']),
          Weights: clone(s['Weights'] as Weights),
        });
        if (typeof s['Namespace'] === 'string') pub.Namespace = s['Namespace'];
        const rec = this.upsertService(this.agentNode, pub, { viaAgent: true, enableTagOverride: s['EnableTagOverride'] === true }, txn, pub);
        if (typeof s['Datacenter'] === 'string') rec.datacenter = s['Datacenter'];
      }
      this.apply(txn);
    }
    // catalog-services.json: names not seeded above get one instance on the agent node carrying the listed tags.
    {
      const txn = new Txn();
      const ports: Record<string, number> = { consul: 8300, postgresql: 5432 };
      for (const [name, tags] of Object.entries(readFixture<Record<string, string[]>>('catalog-services.json'))) {
        if (this.byName.has(name)) continue;
        this.upsertService(
          this.agentNode,
          {
            ID: name,
            Service: name,
            Tags: [...tags],
            Address: '',
            TaggedAddresses: {},
            Meta: {},
            Port: ports[name] ?? 8000,
            Weights: { Passing: 1, Warning: 1 },
          },
          { viaAgent: false },
          txn,
        );
      }
      this.apply(txn);
    }
  }
}

/** ?stale and ?consistent are flags: presence counts, whatever the value (agent/http.go parseConsistency). */
function consistencyOf(q: Record<string, string | string[]>): Consistency {
  if (q['stale'] !== undefined) return 'stale';
  if (q['consistent'] !== undefined) return 'consistent';
  return 'default';
}

function passiveDef(): CheckDef {
  return { kind: 'passive', intervalMs: 0, timeoutMs: 10_000, ttlMs: 0, deregisterAfterMs: 0 };
}

function nodeTagged(address: string): StrMap {
  const fam = net.isIP(address);
  const out: StrMap = { lan: address, wan: address };
  if (fam === 4) Object.assign(out, { lan_ipv4: address, wan_ipv4: address });
  if (fam === 6) Object.assign(out, { lan_ipv6: address, wan_ipv6: address });
  return out;
}

function tokenOf(req: IncomingMessage, url: URL): string | undefined {
  const h = req.headers['x-consul-token'];
  if (typeof h === 'string' && h !== '') return h;
  const auth = req.headers['authorization'];
  if (typeof auth === 'string') {
    const m = /^Bearer\s+(.+)$/i.exec(auth.trim());
    if (m?.[1]) return m[1];
  }
  const q = url.searchParams.get('token');
  return q ? q : undefined;
}
