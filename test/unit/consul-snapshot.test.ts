import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { pino } from 'pino';
import type { ConsulConfig } from '../../src/config/types.ts';
import type { Logger } from '../../src/observability/logger.ts';
import { GatewayMetrics } from '../../src/observability/metrics.ts';
import type { ConsulClient } from '../../src/registry/consul/client.ts';
import { ConsulRegistry } from '../../src/registry/consul/registry.ts';
import { readSavedState } from '../../src/registry/consul/snapshot-file.ts';
import { waitFor } from '../support/gateway.ts';

const ADDRESS = 'http://127.0.0.1:8500';
const instance = (port: number) => ({ id: `n1/i${port}`, url: `http://127.0.0.1:${port}`, weight: 1, tags: [] });

test('a service Consul has not confirmed yet keeps its entry in every rewrite of the snapshot file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'waygate-snapfile-'));
  const file = join(dir, 'consul.json');
  writeFileSync(file, JSON.stringify({ version: 1, address: ADDRESS, datacenter: null, savedAt: new Date().toISOString(), services: {
    web: { index: '7', instances: [instance(1)] },
    other: { index: '9', instances: [instance(2)] },
  } }));
  // Consul answers for web at once and never for other (its read hangs until stopped).
  const client = {
    address: ADDRESS,
    get: (path: string, _query: unknown, _timeout: number, signal?: AbortSignal) => {
      if (path.endsWith('/web')) return Promise.resolve({ status: 200, index: 8n, lastContactMs: 0, knownLeader: true, body: [{ Node: { Node: 'n1', Address: '127.0.0.1' }, Service: { ID: 'i3', Service: 'web', Port: 3 } }] });
      return new Promise((_resolve, reject) => signal?.addEventListener('abort', () => reject(Object.assign(new Error('stopped'), { kind: 'client-error' }))));
    },
  } as unknown as ConsulClient;
  const config: ConsulConfig = { address: ADDRESS, waitMs: 60_000, consistency: 'stale', tagRoutes: false, snapshotFile: file };
  const registry = new ConsulRegistry(config, client, pino({ level: 'silent' }) as unknown as Logger, new GatewayMetrics({ processMetrics: false }));
  try {
    registry.track(['web', 'other']);
    await registry.start();
    assert.equal(registry.status().synced, true, 'ready from the file');
    await waitFor('web to be confirmed and written', () => {
      const saved = readSavedState(file, { address: ADDRESS, datacenter: undefined });
      return typeof saved !== 'string' && saved.services.web?.instances[0]?.url === 'http://127.0.0.1:3';
    });
    await registry.stop();
    const saved = readSavedState(file, { address: ADDRESS, datacenter: undefined });
    assert.ok(typeof saved !== 'string', String(saved));
    assert.deepEqual(Object.keys(saved.services).sort(), ['other', 'web']);
    assert.deepEqual(saved.services.other, { index: '9', instances: [instance(2)] }, 'the unconfirmed service keeps the file\'s entry and index');
  } finally {
    await registry.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
