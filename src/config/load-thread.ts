import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { ConfigError, formatProblem, loadConfigFile } from './load.ts';
import type { GatewayConfig } from './types.ts';

/** What reading a config file gave: the config, or every problem already formatted as FILE:LINE:COL path: reason. */
export type LoadResult = { readonly ok: true; readonly config: GatewayConfig } | { readonly ok: false; readonly errors: readonly string[] };

interface LoadRequest {
  readonly id: number;
  readonly file: string;
  readonly env: NodeJS.ProcessEnv;
}

const THREAD_MARK = 'waygate-config-loader';

function loadHere(file: string, env: NodeJS.ProcessEnv): LoadResult {
  try {
    return { ok: true, config: loadConfigFile(file, env) };
  } catch (error) {
    return { ok: false, errors: error instanceof ConfigError ? error.problems.map(formatProblem) : [`${file}: ${(error as Error).message}`] };
  }
}

/**
 * Reads, parses and checks config files on one worker thread, started on first use and kept (unref'd):
 * parsing a large YAML file takes tens of milliseconds (about 90 ms for 1,000 routes), which on the
 * main thread would hold up every request in flight.
 */
export class ConfigLoadThread {
  private thread: Worker | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, { file: string; env: NodeJS.ProcessEnv; resolve: (result: LoadResult) => void }>();

  load(file: string, env: NodeJS.ProcessEnv): Promise<LoadResult> {
    return new Promise((resolve) => {
      const id = this.nextId++;
      this.pending.set(id, { file, env, resolve });
      this.ensureThread().postMessage({ id, file, env } satisfies LoadRequest);
    });
  }

  close(): void {
    void this.thread?.terminate();
    this.thread = undefined;
  }

  private ensureThread(): Worker {
    if (this.thread) return this.thread;
    const thread = new Worker(new URL(import.meta.url), { workerData: THREAD_MARK });
    thread.unref();
    thread.on('message', ({ id, result }: { id: number; result: LoadResult }) => {
      this.pending.get(id)?.resolve(result);
      this.pending.delete(id);
    });
    // A thread that cannot run must not lose a reload: what it still owed is read here instead.
    const lost = () => {
      if (this.thread === thread) this.thread = undefined;
      for (const [id, { file, env, resolve }] of this.pending) {
        this.pending.delete(id);
        resolve(loadHere(file, env));
      }
    };
    thread.once('error', lost);
    thread.once('exit', lost);
    this.thread = thread;
    return thread;
  }
}

if (!isMainThread && workerData === THREAD_MARK) {
  parentPort!.on('message', ({ id, file, env }: LoadRequest) => parentPort!.postMessage({ id, result: loadHere(file, env) }));
}
