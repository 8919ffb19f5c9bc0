/** reg-name characters (RFC 3986 §3.2.2: unreserved, pct-encoded, sub-delims). */
const REG_NAME = /^[A-Za-z0-9\-._~!$&'()*+,;=%]+$/;
const IPV6_LITERAL = /^\[[0-9A-Fa-f:.]+(%25[A-Za-z0-9\-._~]+)?\]$/;
const PORT = /^[0-9]{1,5}$/;

/**
 * Whether a Host header value is a valid `uri-host [ ":" port ]` (RFC 9112 §3.2): no whitespace,
 * no userinfo, a closed IPv6 literal, and a numeric port from 0 to 65535 when one is given.
 */
export function isValidHost(value: string): boolean {
  if (value.length === 0 || value.length > 255 + 7) return false;
  let host = value;
  let port: string | undefined;
  if (value.charCodeAt(0) === 91 /* [ */) {
    const end = value.indexOf(']');
    if (end === -1) return false;
    host = value.slice(0, end + 1);
    const rest = value.slice(end + 1);
    if (rest !== '') {
      if (rest.charCodeAt(0) !== 58 /* : */) return false;
      port = rest.slice(1);
    }
    if (!IPV6_LITERAL.test(host)) return false;
  } else {
    const colon = value.indexOf(':');
    if (colon !== -1) {
      host = value.slice(0, colon);
      port = value.slice(colon + 1);
    }
    if (!REG_NAME.test(host)) return false;
  }
  return port === undefined || (PORT.test(port) && Number(port) <= 65535);
}

/** How many Host lines a request carried (Node keeps only the first in `headers.host`). */
export function hostLineCount(rawHeaders: readonly string[]): number {
  let count = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    if (name.length === 4 && name.toLowerCase() === 'host') count += 1;
  }
  return count;
}
