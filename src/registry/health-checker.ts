import type { HealthCheckConfig } from '../config/types.ts';
import type { Logger } from '../observability/logger.ts';

/** Pure bookkeeping of consecutive probe results for one instance. */
export class HealthVerdict {
  healthy = true;
  private failures = 0;
  private successes = 0;

  constructor(private readonly unhealthyThreshold: number, private readonly healthyThreshold: number) {}

  /** Records a probe result; returns true when the verdict flipped. */
  record(passed: boolean): boolean {
    if (passed) {
      this.failures = 0;
      this.successes += 1;
      if (!this.healthy && this.successes >= this.healthyThreshold) {
        this.healthy = true;
        return true;
      }
    } else {
      this.successes = 0;
      this.failures += 1;
      if (this.healthy && this.failures >= this.unhealthyThreshold) {
        this.healthy = false;
        return true;
      }
    }
    return false;
  }
}

/** One HTTP probe: 2xx within the timeout passes; anything else fails. */
export async function probe(url: string, timeoutMs: number): Promise<boolean> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: 'manual' });
    await response.body?.cancel();
    return response.status >= 200 && response.status < 300;
  } catch {
    return false;
  }
}

/**
 * Active HTTP health checks for a set of instances: probes each on its own interval and reports
 * verdict flips. A probe never overlaps the previous one for the same instance.
 */
export class HealthChecker {
  private readonly verdicts = new Map<string, HealthVerdict>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private stopped = false;

  constructor(
    private readonly config: HealthCheckConfig,
    private readonly onFlip: (url: string, healthy: boolean) => void,
    private readonly logger: Logger,
    private readonly probeFn: (url: string, timeoutMs: number) => Promise<boolean> = probe,
  ) {}

  isHealthy(url: string): boolean {
    return this.verdicts.get(url)?.healthy ?? true;
  }

  /** Starts probing; resolves after the first probe of every instance so start-up state is real. */
  async start(urls: readonly string[]): Promise<void> {
    await Promise.all(urls.map(async (url) => {
      this.verdicts.set(url, new HealthVerdict(this.config.unhealthyThreshold, this.config.healthyThreshold));
      await this.runProbe(url);
    }));
  }

  private schedule(url: string): void {
    if (this.stopped) return;
    const timer = setTimeout(() => void this.runProbe(url), this.config.intervalMs);
    timer.unref();
    this.timers.set(url, timer);
  }

  private async runProbe(url: string): Promise<void> {
    const passed = await this.probeFn(new URL(this.config.path, url + '/').href, this.config.timeoutMs);
    if (this.stopped) return;
    const verdict = this.verdicts.get(url);
    if (verdict && verdict.record(passed)) {
      this.logger.warn({ instance: url, healthy: verdict.healthy }, verdict.healthy ? 'instance passed health checks' : 'instance failed health checks');
      this.onFlip(url, verdict.healthy);
    }
    this.schedule(url);
  }

  stop(): void {
    this.stopped = true;
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
  }
}
