import type { RouteConfig } from '../config/types.ts';
import type { Registry } from './types.ts';

/** The registries of one gateway, and the rule that says which one serves a route's service. */
export class RegistrySet {
  readonly all: readonly Registry[];
  private readonly byName: ReadonlyMap<string, Registry>;
  private readonly dynamic: readonly Registry[];

  /** `isStatic` names the services the static registry lists (they change on reload). */
  constructor(registries: readonly Registry[], private readonly isStatic: (service: string) => boolean) {
    this.all = registries;
    this.byName = new Map(registries.map((registry) => [registry.name, registry]));
    this.dynamic = registries.filter((registry) => registry.name !== 'static');
  }

  get(name: string): Registry | undefined {
    return this.byName.get(name);
  }

  /**
   * A route's `registry:` wins; else a service listed statically is static; else the one dynamic
   * registry. With several dynamic registries a route must say which (config validation insists).
   */
  nameFor(route: RouteConfig, service: string): string | undefined {
    if (route.registry !== undefined) return this.byName.has(route.registry) ? route.registry : undefined;
    if (this.isStatic(service)) return 'static';
    return this.dynamic.length === 1 ? this.dynamic[0]!.name : undefined;
  }
}
