// The integration rig: a real Distribution upstream, the counting / fault-injecting proxy in
// front of it, and Berth (in-process) configured to reach the upstream only through that proxy.
// It replaces the before/after scaffolding the integration tests used to repeat: one call starts
// everything, `stop()` tears it down in reverse order of start (extra Berths, Berth, proxy,
// upstream, then anything handed to `defer`), and a partial start is unwound the same way.
// Imports nothing from src/ itself: Berth comes from ./berth.ts, the one place that does.
import { startBerth, upstreamOverride, type BerthHandle, type Overrides } from './berth.js';
import { startFaultProxy, type FaultProxy, type FaultRule } from './fault-proxy.js';
import { startDistribution, type Distribution, type DistributionOptions } from './registry.js';

/** Berth's in-process options (an injected clock `now`, ...), as startBerth takes them. */
type ServiceOptions = NonNullable<Parameters<typeof startBerth>[1]>;

/**
 * One upstream entry of Berth's config. `url` defaults to the fault proxy, so requests are
 * counted; give another (a dead port, a second proxy) to point elsewhere. The entry named
 * `docker.io` also gets Docker Hub's aliases, as `upstreamOverride` gives it.
 */
export type RigUpstream = Record<string, unknown>;

export interface RigOptions {
  /** Options for the Distribution upstream (token auth, delete, extra config). */
  distribution?: DistributionOptions;
  /**
   * A Distribution already running (shared by a file's tests) to put the proxy in front of,
   * instead of starting one; the rig leaves it running at `stop()`.
   */
  upstream?: Distribution;
  /**
   * Runs once the upstream answers and before the proxy and Berth start: push the images the
   * tests need. Requests it makes go to the upstream directly, so the proxy counts none of them.
   */
  seed?: (upstream: Distribution) => Promise<void>;
  /** Rules installed on the proxy before Berth starts (tests change them with `proxy.setRules`). */
  faults?: readonly FaultRule[];
  /**
   * Berth's upstreams by name, in order; each entry's url defaults to the proxy.
   * Default: `{ 'docker.io': {} }`.
   */
  upstreams?: Record<string, RigUpstream>;
  /** Berth's `auth` section (`{ mode: 'token', token: {...} }`); default mode none. */
  auth?: Record<string, unknown>;
  /** Any other Berth config overrides (storage, prewarm, redis, log ...). */
  berthConfig?: Overrides;
  /** In-process options for Berth (an injected clock `now`, ...). */
  berthOptions?: ServiceOptions;
  /** Start Berth now (default true). Without it, `berth` throws until `addBerth` is used. */
  startBerth?: boolean;
}

export interface Rig {
  upstream: Distribution;
  proxy: FaultProxy;
  /** The Berth `startRig` started (throws when started with `startBerth: false`). */
  readonly berth: BerthHandle;
  /** Berth's base URL, `http://127.0.0.1:<port>`. */
  readonly url: string;
  /** Berth's `upstreams` config built from the rig's options: to start more Berths like the first. */
  upstreamsConfig(upstreams?: RigOptions['upstreams']): Record<string, unknown>[];
  /**
   * Starts another in-process Berth against the same proxy (`upstreams` defaults to the rig's);
   * stopped by `stop()` before the rig's own Berth, or earlier by its own `stop()`.
   */
  addBerth(overrides?: Overrides, opts?: ServiceOptions): Promise<BerthHandle>;
  /** Clears the proxy's rules and its recorded requests (a test's clean start). */
  resetProxy(): void;
  /** Registers a cleanup to run at `stop()`, before everything started earlier. */
  defer(cleanup: () => Promise<void> | void): void;
  /** Stops everything in reverse order of start; idempotent; keeps going past a failing step. */
  stop(): Promise<void>;
}

function buildUpstreams(proxyUrl: string, spec: RigOptions['upstreams']): Record<string, unknown>[] {
  const entries = Object.entries(spec ?? { 'docker.io': {} });
  return entries.map(([name, entry]) => {
    const { url, ...rest } = entry;
    const target = typeof url === 'string' ? url : proxyUrl;
    return name === 'docker.io' ? upstreamOverride(target, rest) : { name, url: target, ...rest };
  });
}

/** Starts upstream → fault proxy → Berth. On a failure part-way, stops what had started and rethrows. */
export async function startRig(opts: RigOptions = {}): Promise<Rig> {
  const cleanups: Array<() => Promise<void> | void> = [];
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    let first: unknown;
    while (cleanups.length > 0) {
      const fn = cleanups.pop();
      try {
        await fn?.();
      } catch (err) {
        first ??= err;
      }
    }
    if (first !== undefined) throw first;
  };

  try {
    let upstream: Distribution;
    if (opts.upstream) upstream = opts.upstream;
    else {
      const started = await startDistribution(opts.distribution);
      cleanups.push(() => started.stop());
      upstream = started;
    }
    if (opts.seed) await opts.seed(upstream);
    const proxy = await startFaultProxy(upstream.url);
    cleanups.push(() => proxy.stop());
    if (opts.faults) proxy.setRules(opts.faults);

    const upstreamsConfig = (spec: RigOptions['upstreams'] = opts.upstreams): Record<string, unknown>[] => buildUpstreams(proxy.url, spec);
    const addBerth: Rig['addBerth'] = async (overrides = {}, berthOpts = {}) => {
      const b = await startBerth({ upstreams: upstreamsConfig(), ...overrides }, berthOpts);
      let down = false;
      const stopOnce = async (): Promise<void> => {
        if (down) return;
        down = true;
        await b.stop();
      };
      cleanups.push(stopOnce);
      return { ...b, stop: stopOnce };
    };

    let main: BerthHandle | undefined;
    if (opts.startBerth !== false) {
      main = await addBerth(
        { ...(opts.berthConfig ?? {}), ...(opts.auth ? { auth: opts.auth } : {}) },
        opts.berthOptions ?? {},
      );
    }
    const berthOrThrow = (): BerthHandle => {
      if (!main) throw new Error('startRig: started with startBerth: false; use addBerth()');
      return main;
    };
    return {
      upstream,
      proxy,
      get berth() {
        return berthOrThrow();
      },
      get url() {
        return berthOrThrow().url;
      },
      upstreamsConfig,
      addBerth,
      resetProxy() {
        proxy.setRules([]);
        proxy.reset();
      },
      defer(cleanup) {
        cleanups.push(cleanup);
      },
      stop,
    };
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
}
