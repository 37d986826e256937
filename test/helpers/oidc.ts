// An OpenID provider for the UI login tests: npm `oidc-provider` (a certified implementation) run
// in-process on loopback and set up the way a Keycloak realm serves a confidential client:
// - issuer `http://127.0.0.1:<port>/realms/<realm>`, discovery under it, RS256 ID tokens;
// - authorization code with PKCE (S256 only), client_secret_basic, refresh tokens on every login
//   (Keycloak issues them without `offline_access`), RP-initiated logout (end_session);
// - claims as Keycloak's default scopes give them: `preferred_username`, `name`, `email`, and the
//   realm roles as `realm_access: { roles: [...] }` in the ID token (the roles mapper with
//   "Add to ID token" on), so the relying party reads them where Keycloak puts them;
// - no consent screen (Keycloak's default for a first-party client).
// The login page is oidc-provider's development form (any password for a listed user; an unknown
// user is refused). Its pages link a web font: tests keep browsers off the network.
//
// API: const op = await startOidcProvider({ users, redirectUris?, postLogoutRedirectUris? });
//      await op.register(redirectUris, postLogoutRedirectUris)   (when Berth's port is known later)
//      op.issuer, op.clientId, op.clientSecret, op.requests (paths seen), op.stop()
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { generateKeyPairSync } from 'node:crypto';

export interface OidcUser {
  username: string;
  name?: string;
  roles: string[];
}

export interface OidcProviderOptions {
  realm?: string;
  clientId?: string;
  clientSecret?: string;
  users: OidcUser[];
  /** The client's redirect URIs; or give them later with `register` (once Berth's port is known). */
  redirectUris?: string[];
  postLogoutRedirectUris?: string[];
  /** Access-token lifetime in seconds (the relying party refreshes after it). */
  accessTokenTtl?: number;
}

export interface OidcProvider {
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** Request paths (below the realm) in arrival order, e.g. `/token`, `/session/end`. */
  requests: string[];
  /** Register the client's redirect and post-logout URIs (when they were not known at start). */
  register(redirectUris: string[], postLogoutRedirectUris?: string[]): Promise<void>;
  /** Change a user's roles (the next refresh sees them). */
  setRoles(username: string, roles: string[]): void;
  stop(): Promise<void>;
}

/** The slice of oidc-provider's API used here (the package ships no types). */
interface ProviderLike {
  callback(): (req: IncomingMessage, res: ServerResponse) => void;
  proxy: boolean;
  Grant: new (init: { accountId: string; clientId: string }) => {
    addOIDCScope(scope: string): void;
    addOIDCClaims(claims: string[]): void;
    save(): Promise<string>;
  };
}
type ProviderClass = new (issuer: string, configuration: Record<string, unknown>) => ProviderLike;

interface GrantContext {
  oidc: { client: { clientId: string }; session: { accountId: string } };
}

export async function startOidcProvider(opts: OidcProviderOptions): Promise<OidcProvider> {
  const realm = opts.realm ?? 'berth';
  const clientId = opts.clientId ?? 'berth-ui';
  const clientSecret = opts.clientSecret ?? 'berth-ui-secret-for-tests-only-0123456789';
  const users = new Map(opts.users.map((u) => [u.username, { ...u }]));
  const requests: string[] = [];
  const prefix = `/realms/${realm}`;

  let handler: ((req: IncomingMessage, res: ServerResponse) => void) | null = null;
  const server = createServer((req, res) => {
    const url = req.url ?? '/';
    if (!url.startsWith(prefix) || !handler) {
      res.writeHead(404).end();
      return;
    }
    // Mounted under the realm path, as express would: oidc-provider derives its mount point
    // from originalUrl minus url.
    (req as IncomingMessage & { originalUrl?: string }).originalUrl = url;
    req.url = url.slice(prefix.length) || '/';
    requests.push(req.url.split('?')[0] ?? '');
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const issuer = `http://127.0.0.1:${port}${prefix}`;

  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'realm-rs256', use: 'sig', alg: 'RS256' };

  const moduleName = 'oidc-provider';
  const { default: Provider } = (await import(moduleName)) as { default: ProviderClass };
  const build = (redirectUris: string[], postLogoutRedirectUris: string[]): void => {
    const provider: ProviderLike = new Provider(issuer, {
      clients: [{
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: redirectUris,
        post_logout_redirect_uris: postLogoutRedirectUris,
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      }],
      jwks: { keys: [jwk] },
      pkce: { required: () => true },
      claims: {
        openid: ['sub', 'realm_access'],
        profile: ['preferred_username', 'name'],
        email: ['email', 'email_verified'],
      },
      conformIdTokenClaims: false,
      scopes: ['openid', 'profile', 'email', 'offline_access'],
      features: {
        devInteractions: { enabled: true },
        rpInitiatedLogout: {
          enabled: true,
          logoutSource: async (ctx: { body: string }, form: string) => {
            ctx.body = `<!doctype html><html><body><h1>Sign out?</h1>${form}<button type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button></body></html>`;
          },
        },
      },
      ttl: { AccessToken: opts.accessTokenTtl ?? 300, IdToken: 300, RefreshToken: 3600, Session: 3600, Interaction: 600, Grant: 3600 },
      issueRefreshToken: async (_ctx: unknown, client: { grantTypeAllowed(t: string): boolean }) => client.grantTypeAllowed('refresh_token'),
      // Keycloak asks no consent for its own clients: grant what the client asked for.
      loadExistingGrant: async (ctx: GrantContext) => {
        const grant = new provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
        grant.addOIDCScope('openid profile email offline_access');
        grant.addOIDCClaims(['sub', 'realm_access', 'preferred_username', 'name', 'email', 'email_verified']);
        await grant.save();
        return grant;
      },
      findAccount: async (_ctx: unknown, id: string) => {
        const user = users.get(id);
        if (!user) return undefined;
        return {
          accountId: id,
          claims: async () => ({
            sub: id,
            preferred_username: user.username,
            name: user.name ?? user.username,
            email: `${user.username}@example.com`,
            email_verified: true,
            realm_access: { roles: [...user.roles] },
          }),
        };
      },
      cookies: { keys: ['test-cookie-key-0123456789abcdef'] },
    });
    handler = provider.callback();
  };
  if (opts.redirectUris) build(opts.redirectUris, opts.postLogoutRedirectUris ?? []);

  return {
    issuer,
    clientId,
    clientSecret,
    requests,
    async register(redirectUris, postLogoutRedirectUris = []) {
      build(redirectUris, postLogoutRedirectUris);
    },
    setRoles(username, roles) {
      const u = users.get(username);
      if (u) u.roles = [...roles];
    },
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
