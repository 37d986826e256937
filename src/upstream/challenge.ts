/**
 * WWW-Authenticate parsing for the token flow. Where the credentials may then go (only the
 * upstream's own origin and its configured `realmHosts`) is origin.ts's rule, not a guess from
 * domain names here.
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
