/**
 * Which upstream a request is for, and the repository name the cache keys it under.
 * Order: `?ns=<host>` (containerd, BuildKit) → a leading path component naming an upstream or
 * one of its aliases (`/v2/ghcr.io/org/app/...`) → the default upstream (dockerd's
 * registry-mirrors). `ns` never enters the cache key; one-component names on an upstream with
 * `libraryPrefix` (Docker Hub) get `library/`, so `alpine` and `library/alpine` share one entry.
 * A leading component that is a registry host but no configured upstream is refused (NAME_UNKNOWN),
 * exactly like an unknown `ns`: nothing is forwarded to a registry the operator did not configure.
 */
import type { UpstreamConfig } from '../config/types.js';
import { registryError } from '../errors.js';
import { isValidName } from '../oci/reference.js';

export interface Routed {
  upstream: UpstreamConfig;
  /** Name as used in the cache and sent upstream (with `library/` where that applies). */
  name: string;
  /** Name exactly as the client asked for it (used for auth scopes and Link headers). */
  requested: string;
}

export class Router {
  private readonly byName = new Map<string, UpstreamConfig>();
  private readonly defaultUpstream: UpstreamConfig;

  constructor(upstreams: UpstreamConfig[], defaultName: string) {
    for (const u of upstreams) {
      this.byName.set(u.name.toLowerCase(), u);
      for (const a of u.aliases) this.byName.set(a.toLowerCase(), u);
    }
    const d = this.byName.get(defaultName.toLowerCase());
    if (!d) throw new Error(`defaultUpstream ${defaultName} is not a configured upstream`);
    this.defaultUpstream = d;
  }

  upstream(nameOrAlias: string): UpstreamConfig | undefined {
    return this.byName.get(nameOrAlias.toLowerCase());
  }

  get default(): UpstreamConfig {
    return this.defaultUpstream;
  }

  /** Resolve a request's name (and optional ns) to an upstream and a cache name; throws OCI errors. */
  route(requested: string, ns: string | undefined): Routed {
    if (!isValidName(requested)) throw registryError('NAME_INVALID', `"${requested}" is not a valid repository name`);
    let upstream: UpstreamConfig | undefined;
    let name = requested;
    if (ns !== undefined && ns !== '') {
      upstream = this.byName.get(ns.toLowerCase());
      if (!upstream) {
        throw registryError('NAME_UNKNOWN', `namespace "${ns}" is not an upstream this mirror serves`, {
          detail: { ns },
        });
      }
    } else {
      const slash = name.indexOf('/');
      const first = slash > 0 ? name.slice(0, slash) : '';
      // By the docker reference grammar a first component with a dot or a colon, or `localhost`,
      // is a registry host (`library/x` never is). Such a name is for that registry: served when
      // it is an upstream, refused like an unknown ns otherwise, never sent to the default
      // upstream as a repository named `ghcr.io/org/app`.
      if (first !== '' && isRegistryHost(first)) {
        upstream = this.byName.get(first.toLowerCase());
        if (!upstream) {
          throw registryError('NAME_UNKNOWN', `"${first}" (the first component of "${requested}") is not an upstream this mirror serves`, {
            detail: { registry: first },
          });
        }
        name = name.slice(slash + 1);
      }
      upstream ??= this.defaultUpstream;
    }
    if (upstream.libraryPrefix && !name.includes('/')) name = `library/${name}`;
    return { upstream, name, requested };
  }

  /** The name a client should use to reach a cached repository through this mirror (catalog). */
  publicName(upstreamName: string, name: string): string {
    return upstreamName === this.defaultUpstream.name ? name : `${upstreamName}/${name}`;
  }
}

/** The docker reference grammar's test for a first path component that names a registry. */
export function isRegistryHost(component: string): boolean {
  return component.includes('.') || component.includes(':') || component === 'localhost';
}
