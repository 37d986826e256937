/**
 * WWW-Authenticate parsing for the token flow, and the rule for where upstream credentials may
 * go: only to a realm on the upstream's own host or its registrable domain (auth.docker.io ↔
 * registry-1.docker.io share docker.io), never to a third party a challenge happens to name.
 */
export interface Challenge {
  scheme: 'bearer' | 'basic';
  realm: string;
  service: string | undefined;
  scope: string | undefined;
}

/** Parse `Bearer realm="…",service="…",scope="…"` (quoted or token values, any order). */
export function parseChallenge(value: string | undefined): Challenge | null {
  if (!value) return null;
  const m = /^\s*(\w+)\s*(.*)$/s.exec(value);
  if (!m || m[1] === undefined) return null;
  const scheme = m[1].toLowerCase();
  if (scheme !== 'bearer' && scheme !== 'basic') return null;
  const params = new Map<string, string>();
  const re = /([a-zA-Z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g;
  for (let p = re.exec(m[2] ?? ''); p; p = re.exec(m[2] ?? '')) {
    if (p[1] === undefined) continue;
    params.set(p[1].toLowerCase(), p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : (p[3] ?? ''));
  }
  const realm = params.get('realm') ?? '';
  if (scheme === 'bearer' && !realm) return null;
  return { scheme, realm, service: params.get('service'), scope: params.get('scope') };
}

function registrableDomain(host: string): string {
  // IP addresses and single labels stand for themselves.
  if (/^[\d.]+$/.test(host) || host.includes(':') || !host.includes('.')) return host;
  return host.split('.').slice(-2).join('.');
}

export function credentialsAllowed(upstream: URL, realm: URL): boolean {
  if (realm.hostname === upstream.hostname) return true;
  return registrableDomain(realm.hostname) === registrableDomain(upstream.hostname);
}
