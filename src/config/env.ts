/** Environment fallbacks (WAYGATE_*, and CONSUL_* as the consul CLI reads them). */
import type { Segment } from './positions.ts';
import type { Report } from './problems.ts';

/** Go's strconv.ParseBool, which is what the Consul CLI uses for CONSUL_HTTP_SSL & co. */
export function parseEnvBool(value: string): boolean | undefined {
  if (['1', 't', 'T', 'true', 'TRUE', 'True'].includes(value)) return true;
  if (['0', 'f', 'F', 'false', 'FALSE', 'False'].includes(value)) return false;
  return undefined;
}

export const ADMIN_TOKEN_ENV = 'WAYGATE_ADMIN_TOKEN';

/** The consul CLI's variables, by the `registry.consul` key each stands in for. */
export const CONSUL_ENV = {
  address: 'CONSUL_HTTP_ADDR',
  /** Scheme for an address given without one. */
  ssl: 'CONSUL_HTTP_SSL',
  token: 'CONSUL_HTTP_TOKEN',
  tokenFile: 'CONSUL_HTTP_TOKEN_FILE',
  /** false means tls.insecureSkipVerify. */
  sslVerify: 'CONSUL_HTTP_SSL_VERIFY',
  ca: 'CONSUL_CACERT',
  cert: 'CONSUL_CLIENT_CERT',
  key: 'CONSUL_CLIENT_KEY',
  serverName: 'CONSUL_TLS_SERVER_NAME',
} as const;

/** Credentials for `registry.etcd` when the YAML leaves them out. */
export const ETCD_ENV = { username: 'ETCD_USERNAME', password: 'ETCD_PASSWORD' } as const;

/** Reads env vars, treating empty as unset; a malformed value is reported at the YAML block it stands in for. */
export class EnvReader {
  constructor(
    private readonly env: NodeJS.ProcessEnv,
    private readonly report: Report,
  ) {}

  string(name: string): string | undefined {
    const value = this.env[name];
    return value === undefined || value === '' ? undefined : value;
  }

  /** A boolean the way Consul reads it; anything else is reported at `at` (where the YAML would set it). */
  bool(name: string, at: readonly Segment[]): boolean | undefined {
    const value = this.string(name);
    if (value === undefined) return undefined;
    const parsed = parseEnvBool(value);
    if (parsed === undefined) this.report(at, `env ${name}="${value}" must be true, false, 1 or 0`);
    return parsed;
  }
}
