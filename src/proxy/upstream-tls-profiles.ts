import type { GatewayConfig, UpstreamTlsConfig } from '../config/types.ts';
import type { Logger } from '../observability/logger.ts';
import { type UpstreamTls, upstreamTls, VERIFY_WITH_SYSTEM_ROOTS } from './upstream-tls.ts';

/** How each pool's https:// instances are verified; every file is read once, when the profiles are made. */
export class UpstreamTlsProfiles {
  private constructor(
    private readonly byStaticService: ReadonlyMap<string, UpstreamTls>,
    private readonly byRegistry: ReadonlyMap<string, UpstreamTls>,
  ) {}

  /** Throws, naming the service or registry, when a CA file is missing or holds no certificate. */
  static load(config: GatewayConfig, logger: Logger): UpstreamTlsProfiles {
    const byStatic = new Map<string, UpstreamTls>();
    for (const [name, service] of Object.entries(config.registry.static.services)) {
      if (service.tls) byStatic.set(name, loadProfile(service.tls, `service ${name}`, logger));
    }
    const byRegistry = new Map<string, UpstreamTls>();
    const consulInstances = config.registry.consul?.instanceTls;
    if (consulInstances) byRegistry.set('consul', loadProfile(consulInstances, 'consul instances', logger));
    const etcdInstances = config.registry.etcd?.instanceTls;
    if (etcdInstances) byRegistry.set('etcd', loadProfile(etcdInstances, 'etcd instances', logger));
    return new UpstreamTlsProfiles(byStatic, byRegistry);
  }

  for(pool: { readonly registry: string; readonly name: string }): UpstreamTls {
    if (pool.registry === 'static') return this.byStaticService.get(pool.name) ?? VERIFY_WITH_SYSTEM_ROOTS;
    return this.byRegistry.get(pool.registry) ?? VERIFY_WITH_SYSTEM_ROOTS;
  }
}

function loadProfile(config: UpstreamTlsConfig, what: string, logger: Logger): UpstreamTls {
  if (config.insecureSkipVerify) logger.warn({ for: what }, 'tls: insecureSkipVerify is set: certificates of these instances are NOT verified');
  try {
    return upstreamTls(config);
  } catch (error) {
    throw new Error(`${what}: ${(error as Error).message}`);
  }
}
