/**
 * The two per-request series, kept as plain numbers on the hot path and rendered for Prometheus only
 * when scraped: prom-client's label hashing and validation cost more than the proxying around them.
 * Each class is a prom-client "metric" (name, help, type, get) so it sits in the same registry.
 */

type Sample = { metricName?: string; labels: Record<string, string | number>; value: number };

interface CustomMetric {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'histogram';
  get(): Promise<{ name: string; help: string; type: string; values: Sample[]; aggregator: 'sum' }>;
  reset(): void;
}

/** `waygate_requests_total{route,method,code}` */
export class RequestCounter implements CustomMetric {
  readonly name = 'waygate_requests_total';
  readonly help = 'Requests answered, by route, method and status code';
  readonly type = 'counter';
  private readonly counts = new Map<string, { route: string; method: string; code: string; value: number }>();

  inc(route: string, method: string, status: number): void {
    const key = `${route}\u0000${method}\u0000${status}`;
    const entry = this.counts.get(key);
    if (entry) entry.value += 1;
    else this.counts.set(key, { route, method, code: String(status), value: 1 });
  }

  async get() {
    const values = [...this.counts.values()].map(({ route, method, code, value }) => ({ labels: { route, method, code }, value }));
    return { name: this.name, help: this.help, type: this.type, values, aggregator: 'sum' as const };
  }

  reset(): void {
    this.counts.clear();
  }
}

export const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** `waygate_request_duration_seconds{route}` histogram */
export class RequestDurationHistogram implements CustomMetric {
  readonly name = 'waygate_request_duration_seconds';
  readonly help = 'Time from request arrival to response end, by route';
  readonly type = 'histogram';
  private readonly perRoute = new Map<string, { buckets: Float64Array; sum: number; count: number }>();

  observe(route: string, seconds: number): void {
    let entry = this.perRoute.get(route);
    if (!entry) {
      entry = { buckets: new Float64Array(DURATION_BUCKETS.length), sum: 0, count: 0 };
      this.perRoute.set(route, entry);
    }
    entry.sum += seconds;
    entry.count += 1;
    for (let i = 0; i < DURATION_BUCKETS.length; i++) {
      if (seconds <= DURATION_BUCKETS[i]!) {
        entry.buckets[i]! += 1;
        break;
      }
    }
  }

  async get() {
    const values: Sample[] = [];
    for (const [route, entry] of this.perRoute) {
      let cumulative = 0;
      DURATION_BUCKETS.forEach((le, i) => {
        cumulative += entry.buckets[i]!;
        values.push({ metricName: `${this.name}_bucket`, labels: { le, route }, value: cumulative });
      });
      values.push({ metricName: `${this.name}_bucket`, labels: { le: '+Inf', route }, value: entry.count });
      values.push({ metricName: `${this.name}_sum`, labels: { route }, value: entry.sum });
      values.push({ metricName: `${this.name}_count`, labels: { route }, value: entry.count });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: 'sum' as const };
  }

  reset(): void {
    this.perRoute.clear();
  }
}

/** One series of a LabeledCounter, bound to its label values once so the hot path only adds. */
export interface CounterSeries {
  inc(): void;
}

/**
 * A counter with fixed label names whose series are plain numbers: `series(...)` is looked up once
 * (per pool or route) and `inc()` costs an addition, where prom-client would hash labels each time.
 */
export class LabeledCounter implements CustomMetric {
  readonly type = 'counter';
  private readonly all = new Map<string, { labels: Record<string, string>; value: number }>();

  constructor(readonly name: string, readonly help: string, private readonly labelNames: readonly string[]) {}

  series(...values: string[]): CounterSeries {
    const key = values.join('\u0000');
    let entry = this.all.get(key);
    if (!entry) {
      const labels: Record<string, string> = {};
      this.labelNames.forEach((name, i) => { labels[name] = values[i] ?? ''; });
      entry = { labels, value: 0 };
      this.all.set(key, entry);
    }
    const target = entry;
    return { inc: () => { target.value += 1; } };
  }

  async get() {
    const values = [...this.all.values()].map(({ labels, value }) => ({ labels: { ...labels }, value }));
    return { name: this.name, help: this.help, type: this.type, values, aggregator: 'sum' as const };
  }

  reset(): void {
    this.all.clear();
  }
}
