import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** `npm run demo`: three `hello` instances plus the gateway on :8080, all stopped by one Ctrl-C. */
const root = fileURLToPath(new URL('..', import.meta.url));
const children: ChildProcess[] = [];

function run(args: string[]): ChildProcess {
  const child = spawn(process.execPath, args, { cwd: root, stdio: 'inherit' });
  children.push(child);
  return child;
}

for (const port of [3001, 3002, 3003]) run(['--import', 'tsx', 'scripts/hello-service.ts', String(port)]);
const gateway = run(['bin/waygate.js', 'start', '--config', 'config/demo.yaml']);

async function waitReady(): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    try {
      const response = await fetch('http://127.0.0.1:9901/health/ready');
      if (response.status === 200) return true;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return false;
}

const ready = await waitReady();
if (!ready) {
  process.stderr.write('demo: the gateway did not become ready; see the log above\n');
  shutdown(1);
} else {
  process.stdout.write(`
waygate demo is running. Try:
  curl localhost:8080/hello                      # answers rotate over hello-3001, hello-3002, hello-3003
  curl -i localhost:8080/hello/anything?x=1      # stripPrefix: the instance sees /anything?x=1
  curl -i localhost:8080/nope                    # 404 ROUTE_NOT_FOUND from the gateway
  curl localhost:9901/admin/routes               # the live routing table
  curl localhost:9901/metrics | grep waygate_    # Prometheus metrics
  curl localhost:9901/health/ready
Press Ctrl-C to stop everything.
`);
}

let stopping = false;
function shutdown(code: number): void {
  if (stopping) return;
  stopping = true;
  for (const child of children) child.kill('SIGTERM');
  setTimeout(() => process.exit(code), 3000).unref();
  let alive = children.length;
  for (const child of children) child.once('exit', () => { if (--alive === 0) process.exit(code); });
}
process.on('SIGINT', () => shutdown(0));
process.on('SIGTERM', () => shutdown(0));
gateway.once('exit', (code) => { if (!stopping) { process.stderr.write(`demo: gateway exited (${code})\n`); shutdown(1); } });
