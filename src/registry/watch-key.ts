/**
 * What a registry watch is keyed by: a service name, or `name@dc` for a service read in another
 * datacenter ("@" cannot appear in a Consul service name).
 */
export function watchKey(service: string, datacenter?: string): string {
  return datacenter === undefined ? service : `${service}@${datacenter}`;
}

export function parseWatchKey(key: string): { name: string; datacenter: string | undefined } {
  const at = key.indexOf('@');
  return at === -1 ? { name: key, datacenter: undefined } : { name: key.slice(0, at), datacenter: key.slice(at + 1) };
}
