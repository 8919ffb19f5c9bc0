import type { Logger } from '../../observability/logger.ts';
import { Backoff } from '../consul/blocking.ts';
import { sleep } from '../consul/loop.ts';
import { EtcdCallError, type EtcdClient } from './client.ts';

/** The value the gateway writes for itself: grpc-go's endpoint JSON, which EtcdRegistry reads too. */
export function registrationValue(address: string): string {
  return JSON.stringify({ Addr: address });
}

/**
 * The gateway's own key under a lease: granted and written once serving, renewed every third of the
 * TTL, granted and written again when etcd says the lease is gone, revoked (deleting the key) at drain start.
 */
export class EtcdSelfRegistration {
  private lease: string | undefined;
  private readonly stopController = new AbortController();
  private running: Promise<void> | undefined;
  private failing: string | undefined;
  private readonly backoff = new Backoff(200, 5_000);

  constructor(
    private readonly client: EtcdClient,
    readonly key: string,
    private readonly value: string,
    private readonly ttlMs: number,
    private readonly logger: Logger,
  ) {}

  /** Registers now (resolving true on success) and keeps the lease alive from then on, retrying on failure. */
  async start(): Promise<boolean> {
    let ok = true;
    try {
      await this.create();
    } catch (error) {
      ok = false;
      this.failed(error);
    }
    this.running ??= this.keepAlive();
    return ok;
  }

  /** Stops renewing and revokes the lease, which deletes the key. */
  async revoke(): Promise<void> {
    this.stopController.abort();
    await this.running;
    const lease = this.lease;
    this.lease = undefined;
    if (lease !== undefined) await this.client.leaseRevoke(lease);
  }

  private async create(): Promise<void> {
    const ttlSeconds = Math.max(1, Math.ceil(this.ttlMs / 1000));
    const { id } = await this.client.leaseGrant(ttlSeconds);
    try {
      await this.client.put(this.key, this.value, id);
    } catch (error) {
      // A lease without the key would be renewed for nothing: drop it and start over next time.
      await this.client.leaseRevoke(id).catch(() => undefined);
      throw error;
    }
    this.lease = id;
    this.logger.info({ registry: 'etcd', key: this.key, lease: id, ttlSeconds }, `etcd: registered the gateway at ${this.key}`);
  }

  private async keepAlive(): Promise<void> {
    const signal = this.stopController.signal;
    const interval = Math.max(500, Math.floor(this.ttlMs / 3));
    let wait = interval;
    while (await sleep(wait, signal)) {
      try {
        if (this.lease === undefined) await this.create();
        else if ((await this.client.leaseKeepAlive(this.lease)) <= 0) {
          this.logger.warn({ registry: 'etcd', key: this.key, lease: this.lease }, 'etcd: the registration lease is gone (expired or revoked); registering again');
          this.lease = undefined;
          await this.create();
        }
        if (this.failing !== undefined) this.logger.warn({ registry: 'etcd', key: this.key }, 'etcd: registration lease renewed again');
        this.failing = undefined;
        this.backoff.reset();
        wait = interval;
      } catch (error) {
        if (signal.aborted) return;
        this.failed(error);
        this.client.rotate();
        wait = Math.min(interval, this.backoff.next());
      }
    }
  }

  private failed(error: unknown): void {
    const kind = error instanceof EtcdCallError ? error.kind : 'bad-answer';
    if (this.failing === kind) return;
    this.failing = kind;
    this.logger.error({ registry: 'etcd', key: this.key, kind, err: (error as Error).message }, 'etcd: cannot keep the gateway registered; retrying');
  }
}
