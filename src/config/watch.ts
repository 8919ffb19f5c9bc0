import { type Stats, statSync, unwatchFile, watchFile } from 'node:fs';
import type { Logger } from '../observability/logger.ts';
import { ConfigLoadThread } from './load-thread.ts';
import type { GatewayConfig } from './types.ts';

/** What one reload attempt gave: the version now served, or every problem (nothing was applied). */
export type ReloadOutcome = { readonly ok: true; readonly version: number } | { readonly ok: false; readonly errors: readonly string[] };

/** How the file is polled (fs.watchFile; tests hand in their own to drive each poll). */
export type StatPoller = (file: string, intervalMs: number, listener: (now: Stats, before: Stats) => void) => void;

/** The part of the gateway a reload talks to. */
export interface Reloadable {
  reload(next: GatewayConfig): Promise<unknown>;
  reloadFailed(errors: readonly string[]): unknown;
  readonly configVersion: number;
}

/**
 * Re-reads the config file on demand (SIGHUP, POST /admin/reload) or when it changes. The file's stat
 * is polled, which sees writes in place and renames onto the path alike (editors, Kubernetes
 * ConfigMaps). Reloads run one at a time; a request that arrives meanwhile runs once more after.
 */
export class ConfigReloader {
  private running: Promise<ReloadOutcome> | undefined;
  private again = false;
  private watching = false;
  /** The file as the last attempt found it, so the poll does not load again what SIGHUP or POST just did. */
  private lastSeen: string | undefined;
  private readonly loader = new ConfigLoadThread();

  constructor(
    private readonly file: string,
    private readonly env: NodeJS.ProcessEnv,
    private readonly target: Reloadable,
    private readonly logger: Logger,
  ) {}

  reloadNow(): Promise<ReloadOutcome> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = this.attempt().finally(() => {
      this.running = undefined;
      if (this.again) {
        this.again = false;
        void this.reloadNow();
      }
    });
    return this.running;
  }

  private async attempt(): Promise<ReloadOutcome> {
    try {
      this.lastSeen = identity(statSync(this.file));
    } catch {
      this.lastSeen = undefined; // the thread reports the missing file
    }
    const loaded = await this.loader.load(this.file, this.env);
    if (!loaded.ok) {
      const { errors } = loaded;
      for (const line of errors) this.logger.error({ file: this.file }, line);
      this.logger.error({ file: this.file, problems: errors.length }, 'config reload refused; the previous config keeps serving');
      this.target.reloadFailed(errors);
      return { ok: false, errors };
    }
    try {
      await this.target.reload(loaded.config);
    } catch (error) {
      const errors = [`${this.file}: ${(error as Error).message}`];
      this.logger.error({ file: this.file, err: (error as Error).message }, 'config reload failed while applying');
      this.target.reloadFailed(errors);
      return { ok: false, errors };
    }
    return { ok: true, version: this.target.configVersion };
  }

  /** Polls the file (every 500 ms, so a change is applied well within 2 s). */
  watch(intervalMs = 500, poll: StatPoller = (file, interval, listener) => watchFile(file, { interval, persistent: false }, listener)): void {
    if (this.watching) return;
    this.watching = true;
    poll(this.file, intervalMs, (now, before) => {
      if (now.mtimeMs === before.mtimeMs && now.ino === before.ino && now.size === before.size) return;
      if (now.nlink === 0 && now.size === 0) return; // the file is gone for a moment during a rename
      if (identity(now) === this.lastSeen) return;
      void this.reloadNow();
    });
  }

  stop(): void {
    this.loader.close();
    if (!this.watching) return;
    this.watching = false;
    unwatchFile(this.file);
  }
}

function identity(stats: Stats): string {
  return `${stats.ino}:${stats.mtimeMs}:${stats.size}`;
}
