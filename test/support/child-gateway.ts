import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from './gateway.ts';

const BIN = join(fileURLToPath(new URL('../../', import.meta.url)), 'bin', 'waygate.js');

export interface ChildGateway {
  readonly child: ChildProcess;
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Everything it wrote to stdout and stderr so far. */
  output(): string;
  /** Parsed JSON log lines with this msg. */
  logs(msg: string): Array<Record<string, unknown>>;
  /** PIDs of its child processes (the workers), from the kernel's process table. */
  workerPids(): number[];
  /** Kills it and every worker, if still running (for t.after). */
  kill(): void;
}

/** Runs `waygate start --config FILE` (dist/ must be built) and waits for /health/ready on the admin URL. */
export async function startChildGateway(config: string, admin: string, env: NodeJS.ProcessEnv = {}): Promise<ChildGateway> {
  const child = spawn(process.execPath, [BIN, 'start', '--config', config], { env: { ...process.env, WAYGATE_LOG_LEVEL: 'info', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const workerPids = () => {
    try {
      return execFileSync('ps', ['-o', 'pid=', '--ppid', String(child.pid)], { encoding: 'utf8' }).split('\n').map((line) => Number(line.trim())).filter((pid) => pid > 0);
    } catch {
      return []; // ps exits 1 when there are none
    }
  };
  const gateway: ChildGateway = {
    child,
    exit,
    output: () => output,
    logs: (msg) => output.split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => line.msg === msg),
    workerPids,
    kill: () => {
      for (const pid of workerPids()) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
  await waitFor('the child gateway to be ready', async () => {
    if (child.exitCode !== null) throw new Error(`exited early: ${output}`);
    return (await fetch(`${admin}/health/ready`)).status === 200;
  }, 30_000, 50);
  return gateway;
}
