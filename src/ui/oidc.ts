/**
 * The OpenID Connect login (ui.oidc) through `openid-client` v6: discovery, the authorization
 * code flow with PKCE (S256), state and nonce, ID-token validation (signature, issuer, audience,
 * expiry, nonce: all the library's), refresh, and logout through the provider's end_session
 * endpoint. Nothing is kept in process memory between the redirect and the callback: the caller
 * seals `LoginState` into a short-lived cookie (src/ui/session.ts).
 *
 * An `http://` issuer is accepted (openid-client refuses plain HTTP unless told): the operator
 * wrote that URL into the config, and a provider on loopback or a private network is common.
 */
import * as oidc from 'openid-client';
import type { BerthConfig } from '../config/types.js';
import { rolesFromClaims } from './principal.js';

/** The two log levels the login writes at (Fastify's logger or pino's). */
export interface UiLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** What the callback needs back, sealed in the login cookie. */
export interface LoginState {
  state: string;
  nonce: string;
  verifier: string;
  /** The redirect_uri sent (the callback must present the same). */
  redirectUri: string;
  /** Where to send the browser after login (a /ui/ path). */
  returnTo: string;
}

/** The user as the session keeps them. */
export interface LoggedIn {
  subject: string;
  name: string;
  roles: string[];
  idToken: string | null;
  refreshToken: string | null;
  /** When the access token expires (ms since epoch): the session refreshes after it. */
  refreshAt: number;
}

/** A login the provider or the checks refused: shown to the user with this message (400). */
export class LoginRefused extends Error {}

export class OidcLogin {
  private config: Promise<oidc.Configuration> | null = null;

  constructor(
    private readonly settings: BerthConfig['ui']['oidc'],
    private readonly log: UiLog,
    private readonly now: () => number = Date.now,
  ) {}

  /** Discovery, once; a failure is retried on the next login rather than remembered. */
  private discover(): Promise<oidc.Configuration> {
    if (this.config) return this.config;
    const { issuer, clientId, clientSecret } = this.settings;
    if (issuer === null || clientId === null) return Promise.reject(new Error('ui.oidc is not configured'));
    const auth = clientSecret !== null ? oidc.ClientSecretBasic(clientSecret) : oidc.None();
    const url = new URL(issuer);
    const insecure = url.protocol === 'http:';
    const found = oidc.discovery(url, clientId, clientSecret ?? undefined, auth, insecure ? { execute: [oidc.allowInsecureRequests] } : undefined);
    this.config = found;
    found.catch((err: unknown) => {
      this.log.warn({ issuer, err: err instanceof Error ? err.message : String(err) }, 'OpenID discovery failed');
      if (this.config === found) this.config = null;
    });
    return found;
  }

  /** The provider's authorization URL for a new login, and the state to seal until the callback. */
  async start(redirectUri: string, returnTo: string): Promise<{ url: URL; state: LoginState }> {
    const config = await this.discover();
    const verifier = oidc.randomPKCECodeVerifier();
    const state: LoginState = { state: oidc.randomState(), nonce: oidc.randomNonce(), verifier, redirectUri, returnTo };
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: redirectUri,
      scope: this.settings.scopes.join(' '),
      response_type: 'code',
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state: state.state,
      nonce: state.nonce,
    });
    return { url, state };
  }

  /** Finish a login: `currentUrl` is the callback URL as the browser requested it. */
  async finish(currentUrl: URL, login: LoginState): Promise<LoggedIn> {
    const config = await this.discover();
    let tokens: oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers;
    try {
      tokens = await oidc.authorizationCodeGrant(config, currentUrl, {
        pkceCodeVerifier: login.verifier,
        expectedState: login.state,
        expectedNonce: login.nonce,
        idTokenExpected: true,
      });
    } catch (err) {
      throw new LoginRefused(describe(err));
    }
    return this.user(tokens, null);
  }

  /** Refresh the tokens: the provider says whether the user is still allowed, and their roles now. Null when it refuses. */
  async refresh(current: LoggedIn): Promise<LoggedIn | null> {
    if (current.refreshToken === null) return null;
    const config = await this.discover();
    try {
      const tokens = await oidc.refreshTokenGrant(config, current.refreshToken);
      const next = this.user(tokens, current);
      return next.subject === current.subject ? next : null;
    } catch (err) {
      this.log.info({ subject: current.subject, reason: describe(err) }, 'UI session refresh refused; the user logs in again');
      return null;
    }
  }

  /** Where to send the browser to end the provider's session too; null when it has no end_session endpoint. */
  async logoutUrl(idToken: string | null, postLogout: string): Promise<string | null> {
    const config = await this.discover();
    if (!config.serverMetadata().end_session_endpoint) return null;
    const params: Record<string, string> = { post_logout_redirect_uri: postLogout, client_id: config.clientMetadata().client_id };
    if (idToken !== null) params['id_token_hint'] = idToken;
    return oidc.buildEndSessionUrl(config, params).href;
  }

  private user(tokens: oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers, previous: LoggedIn | null): LoggedIn {
    const claims = tokens.claims() as Record<string, unknown> | undefined;
    const subject = (claims && typeof claims['preferred_username'] === 'string' ? claims['preferred_username'] : undefined)
      ?? (claims && typeof claims['sub'] === 'string' ? claims['sub'] : undefined)
      ?? previous?.subject;
    if (subject === undefined) throw new LoginRefused('the ID token names no user');
    // Roles: the ID token's claim; else the access token's (Keycloak's realm-roles mapper fills
    // that one by default). The access token came straight from the token endpoint over the
    // back channel, so reading its payload is as trustworthy as the response itself.
    const roles = rolesFromClaims(claims, this.settings.rolesClaim)
      ?? rolesFromClaims(jwtPayload(tokens.access_token), this.settings.rolesClaim)
      ?? previous?.roles ?? [];
    const name = claims && typeof claims['name'] === 'string' ? claims['name'] : subject;
    const expiresIn = tokens.expiresIn();
    return {
      subject,
      name,
      roles,
      idToken: tokens.id_token ?? previous?.idToken ?? null,
      refreshToken: tokens.refresh_token ?? previous?.refreshToken ?? null,
      refreshAt: this.now() + Math.max(30, expiresIn ?? 300) * 1000,
    };
  }
}

function jwtPayload(token: string): Record<string, unknown> | undefined {
  const part = token.split('.')[1];
  if (part === undefined) return undefined;
  try {
    const v = JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as unknown;
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** The library's code and message, and its cause's message (`unexpected "state" response parameter value`). */
function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  const cause = err.cause instanceof Error && err.cause.message !== err.message ? ` (${err.cause.message})` : '';
  return `${typeof code === 'string' ? `${code}: ` : ''}${err.message}${cause}`;
}
