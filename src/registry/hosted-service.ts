/**
 * Hosted repositories wired together: the `repositories` rules, the hosted registry, and the
 * resolver that sends each request to the hosted registry or the mirror. Rules are evaluated on
 * the name as the client sends it, before upstream routing, and only when the request names no
 * other registry (`?ns=` of an upstream: containerd mirroring that upstream through Berth), so a
 * mirrored `docker.io/ci/app` is never answered with hosted content. An `ns` equal to Berth's own
 * host (http.publicUrl) is Berth itself.
 *
 * Imports: registry/, config types, storage types. Never Fastify.
 */
import type { Logger } from 'pino';
import type { BerthConfig, UpstreamConfig } from '../config/types.js';
import type { StorageDriver } from '../storage/driver.js';
import type { CacheEventsPort } from '../storage/ports.js';
import type { MetadataStore } from '../storage/records.js';
import { HostedRegistry } from './hosted.js';
import { RepositoryRules } from './hosted-rules.js';
import type { CatalogSource, Repository, RepositoryResolver } from './repository.js';
import type { Routed } from './routing.js';
import type { UploadMetrics } from './uploads.js';
import { UploadForwarder } from './uploads-forward.js';

/**
 * The upstream a hosted name routes to: none. A sentinel (its name is no valid host, so it cannot
 * be a configured upstream), never contacted: the resolver answers hosted routes itself.
 */
export const HOSTED_UPSTREAM: UpstreamConfig = Object.freeze({
  name: '(hosted)', url: '', aliases: [], username: null, password: null, tagTtl: 0, staleWhileRevalidate: 0,
  maxFails: 1, failTimeout: 0, maxConnections: 1, notFoundTtl: 0, connectTimeout: 0, headersTimeout: 0, bodyTimeout: 0,
  libraryPrefix: false, realmHosts: [], maxBodySize: 0, maxTokenSize: 0, maxTags: 0, requestDeadline: 0,
}) as UpstreamConfig;

export function isHostedRoute(r: Routed): boolean {
  return r.upstream === HOSTED_UPSTREAM;
}

export interface HostedServiceOptions {
  config: BerthConfig;
  driver: StorageDriver;
  meta: MetadataStore;
  metrics: UploadMetrics;
  log: Logger;
  events?: Pick<CacheEventsPort, 'accessed' | 'stored' | 'removalsDone'>;
  now?: () => number;
}

export class HostedService {
  readonly rules: RepositoryRules;
  readonly registry: HostedRegistry;
  /**
   * Replicas (cluster.advertiseUrl and cluster.secret): passes requests for upload sessions
   * another replica holds on to it (uploads-forward.ts). Null for a single process.
   */
  readonly forwarder: UploadForwarder | null;
  private readonly ownHosts = new Set<string>();

  constructor(o: HostedServiceOptions) {
    this.rules = new RepositoryRules(o.config.repositories);
    const { advertiseUrl, secret } = o.config.cluster;
    const replicated = advertiseUrl !== null && secret !== null;
    this.registry = new HostedRegistry({
      driver: o.driver, meta: o.meta, records: o.meta.hosted, hosted: o.config.hosted, metrics: o.metrics, log: o.log,
      ...(o.events ? { events: o.events } : {}), ...(o.now ? { now: o.now } : {}), uploadOwner: replicated ? advertiseUrl : null,
    });
    this.forwarder = replicated ? new UploadForwarder({ secret }) : null;
    if (o.config.http.publicUrl) {
      try {
        this.ownHosts.add(new URL(o.config.http.publicUrl).host.toLowerCase());
      } catch {
        // validated at load; nothing to add
      }
    }
  }

  /** Is a request for `name` (with `ns`, if any) for a hosted repository? */
  isHosted(name: string, ns: string | undefined): boolean {
    if (ns !== undefined && ns !== '' && !this.ownHosts.has(ns.toLowerCase())) return false;
    return this.rules.modeOf(name) === 'hosted';
  }

  /** The route of a hosted name: the name as sent, the hosted sentinel as upstream. */
  route(name: string): Routed {
    return { upstream: HOSTED_UPSTREAM, name, requested: name };
  }

  /** The resolver for /v2: hosted routes to the hosted registry, the rest to the mirror. */
  resolver(mirror: Repository & CatalogSource): RepositoryResolver {
    const hosted = this.registry;
    return {
      resolve: (r: Routed): Repository => (isHostedRoute(r) ? hosted : mirror),
      async catalog(publicName) {
        const [mirrored, own] = await Promise.all([mirror.catalog(publicName), hosted.catalog()]);
        return [...new Set([...mirrored, ...own])].sort();
      },
    };
  }

  async close(): Promise<void> {
    await this.registry.uploads.close();
    await this.forwarder?.close();
  }
}
