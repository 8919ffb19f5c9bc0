import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RouteConfig } from '../../src/config/types.ts';
import { routesFromTags } from '../../src/registry/consul/tag-routes.ts';
import { RegistrySet } from '../../src/registry/registry-set.ts';
import type { Registry } from '../../src/registry/types.ts';
import { DEFAULTS } from '../../src/config/load.ts';

const registry = (name: string) => ({ name }) as Registry;
const route = (registryName?: RouteConfig['registry']) => ({ name: 'r', registry: registryName }) as RouteConfig;

describe('which registry serves a route', () => {
  const isStatic = (service: string) => service === 'listed';

  it('one dynamic registry: static services stay static, the rest go to it', () => {
    const set = new RegistrySet([registry('static'), registry('consul')], isStatic);
    assert.equal(set.nameFor(route(), 'listed'), 'static');
    assert.equal(set.nameFor(route(), 'other'), 'consul');
  });

  it('two dynamic registries: a route must name one; a named one wins, an unknown name serves nothing', () => {
    const set = new RegistrySet([registry('static'), registry('consul'), registry('etcd')], isStatic);
    assert.equal(set.nameFor(route(), 'other'), undefined);
    assert.equal(set.nameFor(route('etcd'), 'other'), 'etcd');
    assert.equal(set.nameFor(route('consul'), 'listed'), 'consul');
    assert.equal(new RegistrySet([registry('static'), registry('consul')], isStatic).nameFor(route('etcd'), 'other'), undefined);
  });

  it('Consul tag routes name consul, so they still resolve when etcd is configured too', () => {
    const [tagRoute] = routesFromTags(new Map([['users', ['waygate.route=/users']]]), DEFAULTS.routeDefaults);
    const set = new RegistrySet([registry('static'), registry('consul'), registry('etcd')], isStatic);
    assert.equal(set.nameFor(tagRoute!, 'users'), 'consul');
  });
});
