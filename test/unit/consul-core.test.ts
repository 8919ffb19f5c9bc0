import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { DEFAULTS } from '../../src/config/load.ts';
import { Backoff, blockingTimeoutMs, formatWait, indexChanged, nextIndex, TokenBucket } from '../../src/registry/consul/blocking.ts';
import { ConsulShapeError, digestHealthState, parseCatalogServices, parseHealthService } from '../../src/registry/consul/parse.ts';
import { registrationBody } from '../../src/registry/consul/self-registration.ts';
import { mergeRoutes, routesFromTags } from '../../src/registry/consul/tag-routes.ts';
import type { RouteConfig } from '../../src/config/types.ts';

const fixture = (name: string): unknown => JSON.parse(readFileSync(new URL(`../fixtures/consul/${name}`, import.meta.url), 'utf8'));

describe('blocking-query index rules (CONTRACT facts 2–7)', () => {
  test('the index grows with answers and never drops below 1 after the first call', () => {
    assert.equal(nextIndex(0n, 7n), 7n);
    assert.equal(nextIndex(7n, 9n), 9n);
    assert.equal(nextIndex(0n, 0n), 1n);
    assert.equal(nextIndex(7n, 7n), 7n);
  });

  test('an index that goes backwards resets to 0; a missing index also restarts', () => {
    assert.equal(nextIndex(9n, 3n), 0n);
    assert.equal(nextIndex(9n, undefined), 0n);
  });

  test('a timeout with the same index is not news; a first answer always is', () => {
    assert.equal(indexChanged(5n, 5n), false);
    assert.equal(indexChanged(5n, 6n), true);
    assert.equal(indexChanged(0n, 5n), true);
  });

  test('the client timeout exceeds wait + wait/16', () => {
    for (const wait of [1_000, 30_000, 300_000, 600_000]) assert.ok(blockingTimeoutMs(wait) > wait + wait / 16, String(wait));
    assert.equal(formatWait(300_000), '300000ms');
  });

  test('the token bucket lets a burst through, then spaces calls out', () => {
    const bucket = new TokenBucket(2, 100, 0);
    assert.equal(bucket.take(0), 0);
    assert.equal(bucket.take(0), 0);
    assert.equal(bucket.take(0), 100);
    assert.equal(bucket.take(1_000), 0);
  });

  test('backoff doubles up to its cap and resets', () => {
    const backoff = new Backoff(100, 1_000);
    const top = () => 1; // random() = 1 gives the ceiling
    assert.deepEqual([1, 2, 3, 4, 5].map(() => backoff.next(top)), [100, 200, 400, 800, 1_000]);
    backoff.reset();
    assert.equal(backoff.next(top), 100);
  });
});

describe('parsing Consul payloads (the documented fixtures)', () => {
  test('health/service fixture: Node/Service.ID identity, Service.Address, Weights.Passing, tags', () => {
    const { instances, rejected } = parseHealthService(fixture('health-service.json'), 'redis');
    assert.deepEqual(rejected, []);
    assert.deepEqual(instances, [{ id: 'foobar/redis', url: 'http://10.1.10.12:8000', weight: 10, tags: ['primary'], meta: { redis_version: '4.0' } }]);
  });

  test('an empty Service.Address falls back to Node.Address; missing Weights means 1; IPv6 is bracketed', () => {
    const body = [
      { Node: { Node: 'n1', Address: '10.0.0.5' }, Service: { ID: 'a', Service: 'x', Address: '', Port: 80, Tags: [] }, Checks: [] },
      { Node: { Node: 'n2', Address: '10.0.0.6' }, Service: { ID: 'b', Service: 'x', Address: 'fd00::1', Port: 81, Tags: null }, Checks: [] },
    ];
    assert.deepEqual(parseHealthService(body, 'x').instances, [
      { id: 'n1/a', url: 'http://10.0.0.5:80', weight: 1, tags: [] },
      { id: 'n2/b', url: 'http://[fd00::1]:81', weight: 1, tags: [] },
    ]);
  });

  test('a body that is not a list is rejected with a clear error', () => {
    assert.throws(() => parseHealthService({ not: 'a list' }, 'x'), ConsulShapeError);
    assert.throws(() => parseCatalogServices([]), ConsulShapeError);
  });

  test('malformed entries are skipped with their reason; the good ones are still used', () => {
    const good = { Node: { Node: 'n1', Address: '10.0.0.5' }, Service: { ID: 'ok', Service: 'x', Port: 80 } };
    const body = [
      good,
      { Node: { Node: 'n1', Address: '10.0.0.5' }, Service: { ID: 'zero', Service: 'x', Port: 0 } },
      { Node: { Node: 'n1', Address: '10.0.0.5' }, Service: { ID: 'big', Service: 'x', Port: 70000 } },
      { Node: { Node: 'n1', Address: '10.0.0.5' }, Service: { ID: 'text', Service: 'x', Port: 'eighty' } },
      { Node: { Node: 'n1' }, Service: { ID: 'noaddr', Service: 'x', Port: 81 } },
      { Service: { ID: 'nonode', Service: 'x', Port: 82 } },
      { Node: { Node: 'n1', Address: '10.0.0.5' } },
      { Node: { Node: 'n1', Address: '10.0.0.5' }, Service: { ID: 'tags', Service: 'x', Port: 83, Tags: 'v1' } },
      'not an object',
      good,
    ];
    const { instances, rejected } = parseHealthService(body, 'x');
    assert.deepEqual(instances.map((i) => i.id), ['n1/ok']);
    assert.equal(rejected.length, 9);
    assert.match(rejected[0]!, /zero: Service\.Port 0 is not a port/);
    assert.match(rejected.at(-1)!, /listed twice/);
  });

  test('catalog/services fixture parses to name -> tags', () => {
    const catalog = parseCatalogServices(fixture('catalog-services.json'));
    assert.ok(catalog.size >= 1);
    for (const tags of catalog.values()) assert.ok(Array.isArray(tags));
  });

  test('health/state digests change only for the service whose checks changed', () => {
    const state = fixture('health-state.json') as Array<Record<string, unknown>>;
    const before = digestHealthState(state, new Set(['redis']));
    const after = digestHealthState(state.map((check) => (check.CheckID === 'service:redis' ? { ...check, Status: 'critical' } : check)), new Set(['redis']));
    assert.notEqual(before.perService.get('redis'), after.perService.get('redis'));
    assert.equal(before.nodes.get('foobar'), after.nodes.get('foobar'));
  });
});

describe('tag routes', () => {
  const yaml = (prefix: string): RouteConfig => ({ ...DEFAULTS.routeDefaults, name: `yaml${prefix}`, match: { pathPrefix: prefix }, service: 'y', stripPrefix: false, loadBalancer: 'round-robin', tags: [], source: 'yaml' });

  test('waygate.route=/path [strip] becomes a route; other tags and malformed ones are ignored', () => {
    const routes = routesFromTags(new Map([
      ['shop', ['waygate.route=/shop strip', 'v2']],
      ['blog', ['waygate.route=/blog', 'waygate.route=nope', 'waygate.route=/x bogus']],
    ]), DEFAULTS.routeDefaults);
    assert.deepEqual(routes.map((r) => [r.name, r.match.pathPrefix, r.service, r.stripPrefix, r.source]), [
      ['consul:blog:/blog', '/blog', 'blog', false, 'consul-tags'],
      ['consul:shop:/shop', '/shop', 'shop', true, 'consul-tags'],
    ]);
  });

  test('YAML wins on a prefix conflict', () => {
    const { routes } = mergeRoutes([yaml('/shop')], routesFromTags(new Map([['shop', ['waygate.route=/shop']], ['blog', ['waygate.route=/blog']]]), DEFAULTS.routeDefaults));
    assert.deepEqual(routes.map((r) => [r.match.pathPrefix, r.source]), [['/shop', 'yaml'], ['/blog', 'consul-tags']]);
  });

  test('a tag route under a YAML prefix is refused; a neighbour sharing only letters is not; a YAML "/" claims nothing', () => {
    const tags = routesFromTags(new Map([
      ['evil', ['waygate.route=/login/callback']],
      ['same', ['waygate.route=/login']],
      ['near', ['waygate.route=/loginx']],
      ['other', ['waygate.route=/other']],
    ]), DEFAULTS.routeDefaults);
    const { routes, refused } = mergeRoutes([yaml('/login'), yaml('/')], tags);
    assert.deepEqual(routes.map((r) => r.match.pathPrefix), ['/login', '/', '/loginx', '/other']);
    assert.deepEqual(refused.map((r) => [r.route.match.pathPrefix, r.ownedBy]), [['/login/callback', 'yaml/login'], ['/login', 'yaml/login']]);
  });
});

test('self-registration body: HTTP check on the admin /health/ready', () => {
  const body = registrationBody({ name: 'waygate', id: 'waygate-1', address: '10.0.0.9', port: 8080, tags: ['edge'], checkIntervalMs: 10_000 }, { host: '0.0.0.0', port: 9901 });
  assert.equal(body.ID, 'waygate-1');
  assert.equal(body.Port, 8080);
  assert.deepEqual(body.Check, {
    CheckID: 'service:waygate-1',
    Name: 'waygate readiness',
    HTTP: 'http://10.0.0.9:9901/health/ready',
    Interval: '10000ms',
    Timeout: '5000ms',
    DeregisterCriticalServiceAfter: '10m',
  });
});

test('vendored fixtures are byte-for-byte the shared Consul fixtures (when the shared folder is present)', (t) => {
  const shared = new URL('../../../shared/consul/fixtures/', import.meta.url);
  if (!existsSync(shared)) {
    t.skip('../shared/consul/fixtures is not next to this checkout');
    return;
  }
  for (const name of readdirSync(shared).filter((file) => file.endsWith('.json'))) {
    assert.equal(readFileSync(new URL(`../fixtures/consul/${name}`, import.meta.url), 'utf8'), readFileSync(new URL(name, shared), 'utf8'), name);
  }
});
