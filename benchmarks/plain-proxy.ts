/**
 * The Node peer proxies of `npm run bench`, each a small self-contained program:
 *
 *   plain         node:http + one undici Pool: the floor a Node proxy cannot go below
 *   fastify       a bare @fastify/http-proxy ({ upstream }, logger off)
 *   fast-gateway  fast-gateway 3.4.7 (one route, prefix '')
 *
 * Usage: node plain-proxy.mjs ROLE PORT UPSTREAM_URL PROJECT_ROOT
 *
 * benchmarks/proxy.ts transpiles this file to plain JavaScript (TypeScript's transpileModule) and
 * runs it with bare `node`, no loader: tsx would add an esbuild helper process and ~30 MB to the
 * measured process group, which waygate (run from the compiled dist/) does not pay. That is why
 * this file imports only node: builtins and loads packages through createRequire(PROJECT_ROOT).
 * It also runs as is under tsx (`node --import tsx benchmarks/plain-proxy.ts plain 8081 http://...`).
 */
import { createServer, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';

type Require = (id: string) => unknown;

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'te', 'trailer']);
const isHopByHop = (name: string) => HOP_BY_HOP.has(name) || name.startsWith('proxy-');

/** Header names arrive lower-cased from both node:http and undici. */
function endToEnd(headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const name in headers) if (!isHopByHop(name)) out[name] = headers[name];
  return out;
}

/** The plainest Node proxy there is: every request goes through one undici Pool to the one upstream. */
function plainMain(port: number, upstream: string, load: Require): void {
  const { Pool } = load('undici') as typeof import('undici');
  const pool = new Pool(upstream);
  const server = createServer((req, res) => {
    const bodyless = req.method === 'GET' || req.method === 'HEAD';
    pool.request({ method: req.method as 'GET', path: req.url ?? '/', headers: endToEnd(req.headers) as Record<string, string>, body: bodyless ? null : req })
      .then(({ statusCode, headers, body }) => {
        res.writeHead(statusCode, endToEnd(headers));
        body.on('error', () => res.destroy()).pipe(res);
      })
      .catch(() => {
        if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
        res.end('bad gateway');
      });
  });
  server.listen(port, '127.0.0.1');
}

async function fastifyMain(port: number, upstream: string, load: Require): Promise<void> {
  const Fastify = load('fastify') as typeof import('fastify').default;
  const httpProxy = load('@fastify/http-proxy') as typeof import('@fastify/http-proxy').default;
  const app = Fastify({ logger: false });
  await app.register(httpProxy, { upstream });
  await app.listen({ host: '127.0.0.1', port });
}

async function fastGatewayMain(port: number, upstream: string, load: Require): Promise<void> {
  const gateway = load('fast-gateway') as typeof import('fast-gateway');
  // prefix '' with the default pathRegex '/*' forwards every path unchanged.
  const server = gateway({ routes: [{ prefix: '', target: upstream }] });
  await server.start(port, '127.0.0.1');
}

const [role, portArg, upstream, root] = process.argv.slice(2);
const port = Number(portArg);
if (!role || !Number.isInteger(port) || !upstream || !root) {
  process.stderr.write('usage: plain-proxy ROLE(plain|fastify|fast-gateway) PORT UPSTREAM_URL PROJECT_ROOT\n');
  process.exit(2);
}
const load = createRequire(path.join(root, 'package.json')) as Require;
// The bench talks to us over IPC; when it goes away (even SIGKILLed) so do we.
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
if (role === 'plain') plainMain(port, upstream, load);
else if (role === 'fastify') await fastifyMain(port, upstream, load);
else if (role === 'fast-gateway') await fastGatewayMain(port, upstream, load);
else {
  process.stderr.write(`unknown role ${role}\n`);
  process.exit(2);
}
