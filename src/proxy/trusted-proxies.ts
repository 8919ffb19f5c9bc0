import { BlockList, isIP } from 'node:net';

/** One `trustedProxies` entry, parsed. */
export interface IpRange {
  readonly address: string;
  readonly prefix: number;
  readonly family: 'ipv4' | 'ipv6';
}

/** Parses "10.0.0.1", "10.0.0.0/8", "::1" or "fd00::/8"; undefined when it is none of these. */
export function parseIpOrCidr(text: string): IpRange | undefined {
  const slash = text.indexOf('/');
  const address = slash === -1 ? text : text.slice(0, slash);
  const version = isIP(address);
  if (version === 0) return undefined;
  const family = version === 4 ? 'ipv4' : 'ipv6';
  const max = version === 4 ? 32 : 128;
  if (slash === -1) return { address, prefix: max, family };
  const bits = text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(bits) || Number(bits) > max) return undefined;
  return { address, prefix: Number(bits), family };
}

/** `::ffff:10.0.0.1` (how a dual-stack socket reports IPv4 peers) compares as 10.0.0.1. */
function unmapped(ip: string): string {
  return ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip;
}

/** The set of peers whose forwarding headers are believed. Empty by default: nobody is. */
export class TrustedProxies {
  private readonly list = new BlockList();
  readonly empty: boolean;

  constructor(entries: readonly string[]) {
    for (const entry of entries) {
      const range = parseIpOrCidr(entry);
      if (!range) throw new Error(`not an IP or CIDR: ${entry}`);
      this.list.addSubnet(range.address, range.prefix, range.family);
    }
    this.empty = entries.length === 0;
  }

  trusts(ip: string | undefined): boolean {
    if (this.empty || !ip) return false;
    const plain = unmapped(ip.trim());
    const version = isIP(plain);
    return version !== 0 && this.list.check(plain, version === 4 ? 'ipv4' : 'ipv6');
  }

  /**
   * The client's address: walking the X-Forwarded-For chain from the right (nearest hop first),
   * the first address that is not a trusted proxy. The peer itself is the last hop.
   */
  clientIp(peer: string, forwardedFor: string | undefined): string {
    if (!this.trusts(peer) || !forwardedFor) return peer;
    const hops = forwardedFor.split(',');
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = hops[i]!.trim();
      if (hop === '') continue;
      if (!this.trusts(hop)) return hop;
    }
    return hops[0]!.trim() || peer; // every hop is trusted: the left-most is the best we know
  }
}
