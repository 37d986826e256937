/**
 * Kubernetes service links. For every Service in a pod's namespace the kubelet injects (unless
 * the pod sets `enableServiceLinks: false`) variables named after the Service, upper-cased with
 * `-` as `_`. For a Service `berth` with port 5000/TCP and one `berth-redis` with 6379/TCP:
 *
 *   BERTH_SERVICE_HOST=10.0.0.11            BERTH_REDIS_SERVICE_HOST=10.0.0.12
 *   BERTH_SERVICE_PORT=5000                 BERTH_REDIS_SERVICE_PORT=6379
 *   BERTH_SERVICE_PORT_HTTP=5000            (one per named port)
 *   BERTH_PORT=tcp://10.0.0.11:5000         BERTH_REDIS_PORT=tcp://10.0.0.12:6379
 *   BERTH_PORT_5000_TCP=tcp://10.0.0.11:5000
 *   BERTH_PORT_5000_TCP_PROTO=tcp
 *   BERTH_PORT_5000_TCP_PORT=5000
 *   BERTH_PORT_5000_TCP_ADDR=10.0.0.11
 *
 * They share Berth's BERTH_ prefix but are not configuration. A variable is taken for one only
 * when its name AND its value have exactly the kubelet's shape; the loader asks only about names
 * that address no config key, so a genuine config variable is never skipped, and a typo such as
 * `BERTH_HTTP_PROT=5001` or `BERTH_PORT=5000` (a port, not `tcp://host:port`) still fails.
 */
import { isIP } from 'node:net';

const PROTO = '(TCP|UDP|SCTP)';
/** The Service part: what the kubelet makes of a DNS-1035 label (`berth-redis` → `BERTH_REDIS`). */
const SERVICE = '[A-Z][A-Z0-9_]*';

const HOST = new RegExp(`^${SERVICE}_SERVICE_HOST$`);
const SERVICE_PORT = new RegExp(`^${SERVICE}_SERVICE_PORT(?:_[A-Z0-9_]+)?$`);
const LINK = new RegExp(`^${SERVICE}_PORT$`);
const PORT_LINK = new RegExp(`^${SERVICE}_PORT_(\\d{1,5})_${PROTO}$`);
const PORT_PART = new RegExp(`^${SERVICE}_PORT_(\\d{1,5})_${PROTO}_(PROTO|PORT|ADDR)$`);

/** `tcp://10.0.0.11:5000`, `udp://[fd00::1]:53`, as the kubelet writes a link. */
function linkValue(value: string, port?: string, proto?: string): boolean {
  const m = /^(tcp|udp|sctp):\/\/(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):(\d{1,5})$/.exec(value);
  if (m === null) return false;
  const address = m[2] ?? m[3] ?? '';
  if (isIP(address) === 0 || !isPort(m[4] ?? '')) return false;
  if (port !== undefined && m[4] !== port) return false;
  return proto === undefined || m[1] === proto.toLowerCase();
}

function isPort(s: string): boolean {
  return /^\d{1,5}$/.test(s) && Number(s) >= 1 && Number(s) <= 65535;
}

/**
 * True when `name=value` is a variable the kubelet injects for a Service, by name and value. A
 * name may fit several shapes (`BERTH_PORT_5000_TCP_PORT` is also "`X_PORT`" for a Service
 * `berth-port-5000-tcp`), so each shape that fits the name is tried with its own value rule.
 */
export function isServiceLink(name: string, value: string): boolean {
  if (HOST.test(name) && isIP(value) !== 0) return true;
  if (SERVICE_PORT.test(name) && isPort(value)) return true;
  if (LINK.test(name) && linkValue(value)) return true;
  const link = PORT_LINK.exec(name);
  if (link !== null && linkValue(value, link[1], link[2])) return true;
  const part = PORT_PART.exec(name);
  if (part === null) return false;
  const [, port = '', proto = '', field] = part;
  if (field === 'PROTO') return value === proto.toLowerCase();
  if (field === 'PORT') return value === port && isPort(value);
  return isIP(value) !== 0;
}

const SUFFIX = /_(?:SERVICE_HOST|SERVICE_PORT(?:_[A-Z0-9_]+)?|PORT(?:_\d{1,5}_(?:TCP|UDP|SCTP)(?:_(?:PROTO|PORT|ADDR))?)?)$/;

/** The Service a link variable was made for, as it is named in Kubernetes: `BERTH_REDIS_PORT` → `berth-redis`. */
export function serviceOf(name: string): string {
  return name.replace(SUFFIX, '').toLowerCase().replace(/_/g, '-');
}
