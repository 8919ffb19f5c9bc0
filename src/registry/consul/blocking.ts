/**
 * The bookkeeping rules of a Consul blocking-query loop (CONTRACT facts 1–7), kept pure so unit
 * tests can pin them without a server.
 */

/**
 * Consul indexes are uint64 Raft indexes (CONTRACT fact 29): above 2^53 a Number rounds them, which
 * either spins (rounded down) or misses changes (rounded up), so they are BigInts end to end.
 */
export type ConsulIndex = bigint;

/** Parses an X-Consul-Index value exactly; undefined unless it is a plain decimal uint64. */
export function parseIndex(header: string | undefined): ConsulIndex | undefined {
  if (header === undefined || !/^\d{1,20}$/.test(header)) return undefined;
  const value = BigInt(header);
  return value <= 0xffffffffffffffffn ? value : undefined;
}

/**
 * The index to send next, given the one we sent and the X-Consul-Index received. Resets to 0 when the
 * index went backwards (snapshot restore, leader change) and never goes below 1 after the first call.
 */
export function nextIndex(sent: ConsulIndex, received: ConsulIndex | undefined): ConsulIndex {
  if (received === undefined) return 0n;
  if (received < sent) return 0n;
  return received < 1n ? 1n : received;
}

/** True when the answer may carry new data (the index moved or reset), false for a plain timeout. */
export function indexChanged(sent: ConsulIndex, received: ConsulIndex): boolean {
  return sent === 0n || received !== sent;
}

/** Client-side timeout for a blocking call: wait plus the server's max jitter (wait/16) plus 1–5 s of slack. */
export function blockingTimeoutMs(waitMs: number): number {
  const slack = Math.min(5_000, Math.max(1_000, Math.ceil(waitMs / 10)));
  return waitMs + Math.ceil(waitMs / 16) + slack;
}

/** Consul's Go duration syntax for a wait in ms ("300000ms" is always valid). */
export function formatWait(waitMs: number): string {
  return `${Math.max(1, Math.round(waitMs))}ms`;
}

/**
 * A small token bucket that keeps a loop from spinning when Consul answers at once again and again
 * (as HashiCorp advises): `burst` calls back to back, then one per `intervalMs`.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(private readonly burst: number, private readonly intervalMs: number, now: number) {
    this.tokens = burst;
    this.last = now;
  }

  /** Milliseconds to wait before the next call may go (0 = now); takes the token. */
  take(now: number): number {
    this.tokens = Math.min(this.burst, this.tokens + (now - this.last) / this.intervalMs);
    this.last = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    const wait = Math.ceil((1 - this.tokens) * this.intervalMs);
    this.tokens -= 1;
    return wait;
  }
}

/** Exponential backoff with full jitter, reset on success. */
export class Backoff {
  private failures = 0;

  constructor(private readonly baseMs: number, private readonly maxMs: number) {}

  next(random: () => number = Math.random): number {
    const ceiling = Math.min(this.maxMs, this.baseMs * 2 ** this.failures);
    this.failures += 1;
    return Math.round(ceiling / 2 + (random() * ceiling) / 2);
  }

  reset(): void {
    this.failures = 0;
  }

  get attempts(): number {
    return this.failures;
  }
}
