/**
 * The 401 challenge exactly as Distribution writes it and as clients (dockerd, containerd, the
 * Joxit UI's strict regex) parse it: `Bearer realm="…",service="…",scope="…",error="…"` — no
 * spaces, that order, scope and error only when there is one. Several resources share one
 * space-separated `scope`. The body is `authentication required` with Distribution's detail
 * (`[{"Type","Class","Name","Action"}]`, one entry per action), or `null` for `/v2/`.
 */
import { registryError, type RegistryError } from '../errors.js';
import type { AccessItem } from './scope.js';

export type ChallengeError = 'invalid_token' | 'insufficient_scope';

/** Go's %q for the ASCII strings that appear here: backslash and quote escaped. */
function quote(value: string): string {
  return `"${value.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/** `repository:library/alpine:pull registry:catalog:*` — the scope a client should ask for. */
export function scopeOf(items: readonly AccessItem[]): string {
  return items.map((i) => `${i.type}:${i.name}:${i.actions.join(',')}`).join(' ');
}

export function challengeValue(realm: string, service: string, items: readonly AccessItem[], error?: ChallengeError): string {
  const params = [`realm=${quote(realm)}`, `service=${quote(service)}`];
  if (items.length > 0) params.push(`scope=${quote(scopeOf(items))}`);
  if (error !== undefined) params.push(`error=${quote(error)}`);
  return `Bearer ${params.join(',')}`;
}

/** Distribution's error detail: one `{Type, Class, Name, Action}` per requested action. */
export function accessDetail(items: readonly AccessItem[]): Array<{ Type: string; Class: string; Name: string; Action: string }> {
  return items.flatMap((i) => i.actions.map((action) => ({ Type: i.type, Class: '', Name: i.name, Action: action })));
}

/** The catalogued 401 with the challenge header; message is always "authentication required". */
export function unauthorized(realm: string, service: string, items: readonly AccessItem[], error?: ChallengeError): RegistryError {
  return registryError('UNAUTHORIZED', undefined, {
    headers: { 'www-authenticate': challengeValue(realm, service, items, error) },
    ...(items.length > 0 ? { detail: accessDetail(items) } : {}),
  });
}

/** 403 DENIED: the client is who it says, and the access policy says no. */
export function denied(reason: string, items: readonly AccessItem[] = []): RegistryError {
  return registryError('DENIED', reason, items.length > 0 ? { detail: accessDetail(items) } : {});
}
