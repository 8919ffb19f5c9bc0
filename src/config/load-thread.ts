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
/** Far beyond any real parse (about 100 ms for 1,000 routes); only a wedged thread gets near it. */
const LOAD_TIMEOUT_MS = 30_000;

interface Pending {
  readonly file: string;
  readonly env: NodeJS.ProcessEnv;
  readonly resolve: (result: LoadResult) => void;
}

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
  private thread: { readonly worker: Worker; readonly pending: Map<number, Pending> } | undefined;
  private nextId = 1;

  load(file: string, env: NodeJS.ProcessEnv): Promise<LoadResult> {
    return new Promise((resolve) => {
      let thread;
      try {
        thread = this.ensureThread();
      } catch {
        resolve(loadHere(file, env)); // no thread to be had: read it here rather than lose the reload
        return;
      }
      const id = this.nextId++;
      // A thread that does not answer in time is given up, and the file read here instead.
      const timer = setTimeout(() => this.abandon(thread), LOAD_TIMEOUT_MS);
      timer.unref();
      thread.pending.set(id, { file, env, resolve: (result) => { clearTimeout(timer); resolve(result); } });
      thread.worker.postMessage({ id, file, env } satisfies LoadRequest);
    });
  }

  close(): void {
    const thread = this.thread;
    this.thread = undefined;
    void thread?.worker.terminate();
  }

  private ensureThread(): { readonly worker: Worker; readonly pending: Map<number, Pending> } {
    if (this.thread) return this.thread;
    const worker = new Worker(new URL(import.meta.url), { workerData: THREAD_MARK });
    worker.unref();
    const thread = { worker, pending: new Map<number, Pending>() };
    worker.on('message', ({ id, result }: { id: number; result: LoadResult }) => {
      thread.pending.get(id)?.resolve(result);
      thread.pending.delete(id);
    });
    worker.once('error', () => this.abandon(thread));
    worker.once('exit', () => this.abandon(thread));
    this.thread = thread;
    return thread;
  }

  /** This thread is done for: what it still owed is read here, and the next load starts a new one. */
  private abandon(thread: { readonly worker: Worker; readonly pending: Map<number, Pending> }): void {
    if (this.thread === thread) this.thread = undefined;
    void thread.worker.terminate();
    for (const [id, { file, env, resolve }] of thread.pending) {
      thread.pending.delete(id);
      resolve(loadHere(file, env));
    }
  }
}

if (!isMainThread && workerData === THREAD_MARK) {
  parentPort!.on('message', ({ id, file, env }: LoadRequest) => parentPort!.postMessage({ id, result: loadHere(file, env) }));
}
