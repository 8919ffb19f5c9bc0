import type { OutlierDetectionConfig } from '../config/types.ts';

interface OutlierRecord {
  consecutiveFailures: number;
  timesEjected: number;
  ejectedUntil: number;
}

/**
 * Outlier detection bookkeeping for one service (Envoy's "consecutive 5xx" detector):
 * N consecutive failures eject an instance for baseEjectionTime × times ejected, capped at
 * maxEjectionTime, and never more than maxEjectionPercent of the service at once. Pure: time is passed in.
 */
export class OutlierDetector {
  private readonly records = new Map<string, OutlierRecord>();

  constructor(private readonly config: OutlierDetectionConfig) {}

  private record(id: string): OutlierRecord {
    let record = this.records.get(id);
    if (!record) {
      record = { consecutiveFailures: 0, timesEjected: 0, ejectedUntil: 0 };
      this.records.set(id, record);
    }
    return record;
  }

  recordSuccess(id: string): void {
    const record = this.records.get(id);
    if (record) record.consecutiveFailures = 0;
  }

  /** Returns the ejection end time when this failure ejected the instance, else undefined. */
  recordFailure(id: string, now: number, serviceSize: number): number | undefined {
    const record = this.record(id);
    record.consecutiveFailures += 1;
    if (this.config.consecutiveFailures <= 0 || record.consecutiveFailures < this.config.consecutiveFailures) return undefined;
    if (record.ejectedUntil > now) return undefined;
    const ejectedNow = this.ejectedCount(now);
    if (((ejectedNow + 1) / Math.max(serviceSize, 1)) * 100 > this.config.maxEjectionPercent) return undefined;
    record.timesEjected += 1;
    record.consecutiveFailures = 0;
    const duration = Math.min(this.config.baseEjectionTimeMs * record.timesEjected, this.config.maxEjectionTimeMs);
    record.ejectedUntil = now + duration;
    return record.ejectedUntil;
  }

  isEjected(id: string, now: number): boolean {
    const record = this.records.get(id);
    return record !== undefined && record.ejectedUntil > now;
  }

  ejectedUntil(id: string, now: number): number | undefined {
    const record = this.records.get(id);
    return record && record.ejectedUntil > now ? record.ejectedUntil : undefined;
  }

  ejectedCount(now: number): number {
    let count = 0;
    for (const record of this.records.values()) if (record.ejectedUntil > now) count += 1;
    return count;
  }

  /** Forgets an instance that left the registry. */
  forget(id: string): void {
    this.records.delete(id);
  }
}
