/**
 * Where an upstream's requests, credentials and trust may go. An upstream names other places —
 * redirect targets (Docker Hub's blob CDN), token realms (auth.docker.io) — and each is a chance
 * to send the configured credentials, or this process's requests, somewhere they must not go:
 *
 * - Basic credentials go only to the upstream's own origin (scheme + host + port) and to the
 *   realms listed in its `realmHosts`. No "same registrable domain" guess: `myreg.azurecr.io`
 *   and `attacker.azurecr.io` share one, and so do `example.co.uk` and `evil.co.uk`.
 * - A redirect or a realm must use https, or the upstream's own scheme.
 * - A redirect or a realm never leads to a loopback, link-local, private or otherwise internal
 *   address unless the upstream itself is on one (a registry on the LAN may send its blobs to a
 *   storage host on the LAN; Docker Hub may not send this process to 169.254.169.254). Names are
 *   checked at connection time by a guarded DNS lookup, so a public name that resolves to an
 *   internal address is refused too.
 */
import { isIP } from 'node:net';
import { lookup as dnsLookup } from 'node:dns';
import type { LookupFunction } from 'node:net';

/** The error code of a connection refused by the address guard. */
export const REFUSED_ADDRESS = 'BERTH_ADDRESS_REFUSED';

/** Parse one `realmHosts` entry (host, host:port, or an origin) into an origin, in the upstream's scheme by default. */
export function realmOrigin(entry: string, base: URL): string {
  const url = /^[a-z]+:\/\//i.test(entry) ? new URL(entry) : new URL(`${base.protocol}//${entry}`);
  return url.origin;
}

function ipv4Private(ip: string): boolean {
  const p = ip.split('.').map(Number);
  const [a = 0, b = 0, c = 0] = p;
  return (
    a === 0 || a === 10 || a === 127 || a >= 224 || // this network, private, loopback, multicast and reserved
    (a === 100 && b >= 64 && b <= 127) || // carrier-grade NAT
    (a === 169 && b === 254) || // link-local (cloud metadata)
    (a === 172 && b >= 16 && b <= 31) ||
    (a === 192 && b === 168) ||
    (a === 192 && b === 0 && c === 0) || // IETF protocol assignments
    (a === 198 && (b === 18 || b === 19)) // benchmarking
  );
}

/** Loopback, link-local, private, unique-local, multicast or unspecified: not the public internet. */
export function isInternalAddress(address: string): boolean {
  const ip = address.replace(/^\[|\]$/g, '').split('%')[0] ?? '';
  const v = isIP(ip);
  if (v === 4) return ipv4Private(ip);
  if (v !== 6) return false;
  const lower = ip.toLowerCase();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
  if (mapped?.[1] !== undefined) return ipv4Private(mapped[1]);
  if (lower === '::' || lower === '::1') return true;
  const first = parseInt(lower.split(':')[0] || '0', 16);
  return (
    (first & 0xfe00) === 0xfc00 || // unique local fc00::/7
    (first & 0xffc0) === 0xfe80 || // link-local fe80::/10
    (first & 0xff00) === 0xff00 // multicast
  );
}

/** True for an internal IP literal or a localhost name; false for a public literal; null for a name to resolve. */
export function hostIsInternal(hostname: string): boolean | null {
  const h = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (isIP(h) !== 0) return isInternalAddress(h);
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  return null;
}

export class OriginPolicy {
  private readonly credentialOrigins: Set<string>;
  /** The upstream itself is internal (an IP literal, localhost, or its name resolved to one). */
  private upstreamInternal: boolean;

  constructor(
    readonly base: URL,
    realmHosts: readonly string[],
  ) {
    this.credentialOrigins = new Set([base.origin, ...realmHosts.map((e) => realmOrigin(e, base))]);
    this.upstreamInternal = hostIsInternal(base.hostname) === true;
  }

  /** May the configured credentials be sent to this URL? */
  credentialsAllowed(target: URL): boolean {
    return this.credentialOrigins.has(target.origin);
  }

  /** May a redirect or a token realm take a request here? Null when yes, else the reason. */
  refusal(target: URL): string | null {
    if (target.origin === this.base.origin) return null;
    if (target.protocol !== 'https:' && target.protocol !== this.base.protocol) {
      return `${target.protocol}// is neither https nor the upstream's own scheme`;
    }
    if (!this.upstreamInternal && hostIsInternal(target.hostname) === true) {
      return `${target.hostname} is an internal address and the upstream is not`;
    }
    return null;
  }

  /**
   * A DNS lookup for the upstream's connections that refuses internal addresses for any host
   * but the upstream's own, unless the upstream itself turned out to be internal.
   */
  guardLookup(inner: LookupFunction = dnsLookup as unknown as LookupFunction): LookupFunction {
    const own = this.base.hostname.replace(/^\[|\]$/g, '').toLowerCase();
    const guarded = (hostname: string, options: unknown, callback: (...args: unknown[]) => void): void => {
      const call = inner as unknown as (h: string, o: unknown, cb: (...args: unknown[]) => void) => void;
      call(hostname, options, (err: unknown, address: unknown, family: unknown) => {
        if (err) return callback(err);
        const list = Array.isArray(address) ? (address as { address: string }[]).map((a) => a.address) : [String(address)];
        const internal = list.some((a) => isInternalAddress(a));
        if (hostname.toLowerCase() === own) {
          if (internal) this.upstreamInternal = true;
        } else if (internal && !this.upstreamInternal) {
          const e = Object.assign(new Error(`${hostname} resolves to an internal address (${list.join(', ')}) and the upstream is not internal`), {
            code: REFUSED_ADDRESS,
          });
          return callback(e);
        }
        callback(null, address, family);
      });
    };
    return guarded as unknown as LookupFunction;
  }
}
