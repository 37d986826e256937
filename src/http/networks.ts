/**
 * Client networks as the HTTP layer checks them: a CIDR list from the config (`http.adminNetworks`,
 * `metrics.networks`) compiled once into a BlockList, and the test "is this client address in it".
 * A malformed entry is a ConfigError naming its key, raised when the app is built.
 */
import { BlockList, isIP } from 'node:net';
import { ConfigError } from '../config/errors.js';

export interface Networks {
  /** The entries as configured (for messages and the start-up log). */
  readonly cidrs: readonly string[];
  has(ip: string): boolean;
}

export function compileNetworks(cidrs: readonly string[], key: string): Networks {
  const list = new BlockList();
  cidrs.forEach((cidr, i) => {
    const [address = '', bits, ...rest] = cidr.split('/');
    const family = isIP(address);
    const fail = (): ConfigError => ConfigError.expected(`${key}[${i}]`, 'an IP address or CIDR like "10.0.0.0/8"', cidr);
    if (family === 0 || rest.length > 0) throw fail();
    const type = family === 6 ? 'ipv6' : 'ipv4';
    try {
      if (bits === undefined) list.addAddress(address, type);
      else {
        if (!/^\d{1,3}$/.test(bits)) throw fail();
        list.addSubnet(address, Number(bits), type);
      }
    } catch {
      throw fail();
    }
  });
  return {
    cidrs: [...cidrs],
    has(ip: string): boolean {
      const bare = ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip;
      const v = isIP(bare);
      return v !== 0 && list.check(bare, v === 6 ? 'ipv6' : 'ipv4');
    },
  };
}

/** True when every address the list admits is a loopback address (what "local only" means in the log). */
export function loopbackOnly(cidrs: readonly string[]): boolean {
  return cidrs.every((c) => {
    const [addr = '', bits] = c.split('/');
    if (isIP(addr) === 4) return addr.startsWith('127.') && (bits === undefined || Number(bits) >= 8);
    return (addr === '::1' && (bits === undefined || bits === '128'));
  });
}
