import { createServer } from 'node:http';

/** The demo's sample upstream: answers who it is, so rotation is visible. Usage: hello-service.ts PORT */
const port = Number(process.argv[2] ?? 3001);
const name = `hello-${port}`;

const server = createServer((request, response) => {
  if (request.url === '/health') {
    response.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"UP"}');
    return;
  }
  const body = JSON.stringify({ instance: name, path: request.url, requestId: request.headers['x-request-id'] ?? null });
  response.writeHead(200, { 'content-type': 'application/json' }).end(body + '\n');
});
server.listen(port, '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
process.on('SIGINT', () => server.close(() => process.exit(0)));
