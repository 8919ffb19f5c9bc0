import { readFileSync } from 'node:fs';
import type { UpstreamTlsConfig } from '../config/types.ts';

/** TLS options for dialling one service's https:// instances, with a key naming the profile. */
export interface UpstreamTls {
  /** Same settings, same key: instances that share a profile share an undici Agent. */
  readonly key: string;
  readonly ca?: string | undefined;
  readonly servername?: string | undefined;
  readonly rejectUnauthorized: boolean;
}

/** The default: Node's bundled roots, the instance's own host name, verification on. */
export const VERIFY_WITH_SYSTEM_ROOTS: UpstreamTls = { key: 'system', rejectUnauthorized: true };

/** Reads the CA file once, at start, so a missing or unreadable file is a start-up error, not a 502 later. */
export function upstreamTls(config: UpstreamTlsConfig | undefined, readFile: (path: string) => string = (path) => readFileSync(path, 'utf8')): UpstreamTls {
  if (!config) return VERIFY_WITH_SYSTEM_ROOTS;
  let ca: string | undefined;
  if (config.ca !== undefined) {
    try {
      ca = readFile(config.ca);
    } catch (error) {
      throw new Error(`cannot read the CA file ${config.ca}: ${(error as Error).message}`);
    }
    if (!ca.includes('-----BEGIN CERTIFICATE-----')) throw new Error(`the CA file ${config.ca} holds no PEM certificate`);
  }
  return {
    key: `ca=${config.ca ?? ''}|name=${config.serverName ?? ''}|skip=${config.insecureSkipVerify}`,
    ca,
    servername: config.serverName,
    rejectUnauthorized: !config.insecureSkipVerify,
  };
}
