/**
 * Printing a loaded config: back to the YAML shape a file takes (durations and sizes as text),
 * and masked for logs and the admin API (secret-sounding keys and URL passwords become `***`).
 */
import { setOwn } from './layer.js';
import { berthSchema, isRecord, type SchemaNode } from './schema.js';
import type { BerthConfig } from './types.js';

/**
 * The loaded config in the shape a YAML file takes: durations and sizes spelled as text again
 * (`tagTtl: 10m`, not milliseconds), so `berth config check` output can be fed back as a config.
 */
export function toYamlShape(cfg: BerthConfig): unknown {
  return shape(berthSchema, cfg);
}

function shape(node: SchemaNode, value: unknown): unknown {
  switch (node.kind) {
    case 'leaf':
      return node.toYaml(value);
    case 'map':
      return value;
    case 'list':
      return Array.isArray(value) ? value.map((item: unknown) => shape(node.item, item)) : value;
    case 'object': {
      if (!isRecord(value)) return value;
      const out: Record<string, unknown> = {};
      for (const [k, child] of Object.entries(node.fields)) out[k] = shape(child, value[k]);
      return out;
    }
  }
}

const SECRET_KEY = /password|passphrase|secret|token|api_?key|credential|authorization|cookie/i;
const MASK = '***';

/**
 * A deep copy safe to print or serve from the admin API: string values under secret-sounding keys
 * (password, secret, token, …) become `***`, and so does the password inside any URL
 * (`redis://:pw@host` → `redis://:***@host`). Nulls stay null, so "unset" remains visible.
 */
export function maskSecrets(cfg: unknown): unknown {
  return mask(cfg, false);
}

/**
 * `secret` covers a string or a list of strings under a secret key; a mapping under one (such as
 * `auth.token`, whose realm and issuer are public) is judged key by key instead.
 */
function mask(value: unknown, secret: boolean): unknown {
  if (typeof value === 'string') return secret ? MASK : maskUrlPassword(value);
  if (Array.isArray(value)) return value.map((item: unknown) => mask(item, secret));
  if (isRecord(value)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) setOwn(out, k, mask(v, SECRET_KEY.test(k)));
    return out;
  }
  return value;
}

export function maskUrlPassword(s: string): string {
  // Text surgery rather than URL round-tripping, so the rest of the string prints as written.
  return s.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/?#@]*:)[^@/?#]*@/i, `$1${MASK}@`);
}
