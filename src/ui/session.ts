/**
 * Sealed cookies: the UI session and the short-lived login state live in the browser, encrypted
 * and authenticated with AES-256-GCM, so any replica that shares `ui.sessionSecret` serves any
 * request and no login state is held in process memory.
 *
 * Keys: HKDF-SHA256 over ui.sessionSecret, one key per purpose (`session`, `login`), so a sealed
 * login cookie can never be opened as a session. The cookie name is the GCM additional data as
 * well. A sealed value is `v1.` + base64url(iv ‖ ciphertext ‖ tag); the plaintext is JSON with
 * `exp` (ms since epoch): past it, or after any change to a byte, `open` answers null.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';

const VERSION = 'v1.';
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** A sealed cookie longer than this is refused unread (browsers keep about 4 KiB per cookie). */
export const MAX_SEALED_LENGTH = 4096;

export type SealPurpose = 'session' | 'login';

export class CookieSealer {
  private readonly keys: Record<SealPurpose, Buffer>;

  constructor(
    secret: string,
    private readonly now: () => number = Date.now,
  ) {
    const derive = (purpose: SealPurpose): Buffer =>
      Buffer.from(hkdfSync('sha256', Buffer.from(secret, 'utf8'), Buffer.from('berth-ui', 'utf8'), Buffer.from(`cookie:${purpose}`, 'utf8'), 32));
    this.keys = { session: derive('session'), login: derive('login') };
  }

  /** Encrypt `payload` for `purpose` under the cookie `name`, valid for `ttlMs`. */
  seal(purpose: SealPurpose, name: string, payload: object, ttlMs: number): string {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.keys[purpose], iv);
    cipher.setAAD(Buffer.from(name, 'utf8'));
    const body = Buffer.from(JSON.stringify({ ...payload, exp: this.now() + ttlMs }), 'utf8');
    const ct = Buffer.concat([cipher.update(body), cipher.final()]);
    return VERSION + Buffer.concat([iv, ct, cipher.getAuthTag()]).toString('base64url');
  }

  /** The payload, or null when the value is missing, altered, sealed for another purpose or name, or expired. */
  open<T extends object>(purpose: SealPurpose, name: string, sealed: string | undefined): (T & { exp: number }) | null {
    if (sealed === undefined || !sealed.startsWith(VERSION) || sealed.length > MAX_SEALED_LENGTH) return null;
    const raw = Buffer.from(sealed.slice(VERSION.length), 'base64url');
    if (raw.length < IV_BYTES + TAG_BYTES + 2) return null;
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.keys[purpose], raw.subarray(0, IV_BYTES));
      decipher.setAAD(Buffer.from(name, 'utf8'));
      decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES));
      const plain = Buffer.concat([decipher.update(raw.subarray(IV_BYTES, raw.length - TAG_BYTES)), decipher.final()]);
      const value = JSON.parse(plain.toString('utf8')) as unknown;
      if (typeof value !== 'object' || value === null || Array.isArray(value)) return null;
      const exp = (value as { exp?: unknown }).exp;
      if (typeof exp !== 'number' || exp <= this.now()) return null;
      return value as T & { exp: number };
    } catch {
      return null; // wrong key, altered bytes or tag: all the same to the caller
    }
  }
}

/** A random token (base64url, 32 bytes of entropy). */
export function randomToken(): string {
  return randomBytes(32).toString('base64url');
}

/** Constant-time equality of two tokens (false for different lengths). */
export function sameToken(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && x.length > 0 && timingSafeEqual(x, y);
}
