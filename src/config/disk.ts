/**
 * Checks on what the config names on disk (loadConfig only, so `serve` and `config check` run
 * the same ones): the token-signing bundle is a readable PEM file whose certificates and keys
 * parse and can verify tokens; the HTTPS certificate and key are readable PEM files that belong
 * together (`readTlsPair`, also what src/http/tls.ts loads and reloads); a JWKS file is readable JSON with a `keys` array; the storage root
 * is a directory Berth can create entries in, proved by creating and removing a probe directory.
 *
 * Every check is bounded: files are read up to MAX_FILE_BYTES, and the whole check gives up after
 * CHECK_TIMEOUT_MS (a hung network mount) with a message naming the key. Messages never carry
 * OpenSSL's own error text; they say which block of which file is wrong and how.
 */
import { X509Certificate, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { mkdtemp, open, rmdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from './errors.js';
import { isRecord } from './schema.js';
import type { BerthConfig } from './types.js';
import { looksLikeUrl } from './validate.js';

/** Larger than any trust bundle or JWKS file; a bigger file is a wrong path, not a bundle. */
const MAX_FILE_BYTES = 1024 * 1024;
/** A local disk answers in milliseconds; a stuck NFS mount never does. */
const CHECK_TIMEOUT_MS = 5_000;

/**
 * The files and directories the config names: see the header. Exported for loadConfig; the
 * order is the order an operator would fix them in (auth files, then storage).
 */
export async function checkConfigFiles(cfg: BerthConfig): Promise<void> {
  const { rootCertBundle, jwks } = cfg.auth.token;
  const { tls } = cfg.http;
  if (tls.certificate !== null && tls.key !== null) await bounded('http.tls.certificate', tls.certificate, readTlsPair(tls.certificate, tls.key).then(() => undefined));
  if (rootCertBundle !== null) await bounded('auth.token.rootCertBundle', rootCertBundle, checkPemBundle(rootCertBundle, 'auth.token.rootCertBundle'));
  if (jwks !== null && !looksLikeUrl(jwks)) await bounded('auth.token.jwks', jwks, checkJwksFile(jwks, 'auth.token.jwks'));
  // Every driver writes there: the store itself (filesystem) or the spool of fills (s3).
  await bounded('storage.root', cfg.storage.root, usableDirectory(cfg.storage.root, 'storage.root'));
}

async function bounded(key: string, what: string, check: Promise<void>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new ConfigError(key, `checking ${what} took longer than ${CHECK_TIMEOUT_MS / 1000}s (a hung network filesystem?)`)),
      CHECK_TIMEOUT_MS,
    );
    timer.unref();
  });
  try {
    await Promise.race([check, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A regular file's text, at most MAX_FILE_BYTES of it. */
async function readSmallFile(file: string, key: string): Promise<string> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    throw new ConfigError(key, `cannot read ${file}: ${errorCode(err)}`);
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new ConfigError(key, `cannot read ${file}: EISDIR`);
    if (info.size > MAX_FILE_BYTES) throw new ConfigError(key, `${file} is ${info.size} bytes; expected a file under ${MAX_FILE_BYTES} bytes`);
    const buf = Buffer.alloc(MAX_FILE_BYTES + 1);
    const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
    return buf.subarray(0, bytesRead).toString('utf8');
  } catch (err) {
    throw err instanceof ConfigError ? err : new ConfigError(key, `cannot read ${file}: ${errorCode(err)}`);
  } finally {
    await handle.close();
  }
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;
const SIGNING_CURVES = new Set(['prime256v1', 'secp384r1', 'secp521r1']);

/** The key types auth/ can verify tokens with (RS*, PS*, ES256/384/512, EdDSA). */
function canSign(key: KeyObject): boolean {
  const type = key.asymmetricKeyType;
  if (type === 'rsa' || type === 'rsa-pss' || type === 'ed25519' || type === 'ed448') return true;
  return type === 'ec' && SIGNING_CURVES.has(key.asymmetricKeyDetails?.namedCurve ?? '');
}

async function checkPemBundle(file: string, key: string): Promise<void> {
  const text = await readSmallFile(file, key);
  let usable = 0;
  let index = 0;
  for (const m of text.matchAll(PEM_BLOCK)) {
    const where = `${file} block ${index + 1}`;
    index++;
    let publicKey: KeyObject;
    if (m[1] === 'CERTIFICATE') {
      try {
        publicKey = new X509Certificate(m[0]).publicKey;
      } catch {
        throw new ConfigError(key, `${where} is not a valid PEM certificate (its base64 body does not decode to an X.509 certificate)`);
      }
    } else if (m[1] === 'PUBLIC KEY') {
      try {
        publicKey = createPublicKey(m[0]);
      } catch {
        throw new ConfigError(key, `${where} is not a valid PEM public key`);
      }
    } else {
      // A private key pasted by mistake is ignored by auth/ too, never echoed anywhere.
      continue;
    }
    if (!canSign(publicKey)) throw new ConfigError(key, `${where}: a ${String(publicKey.asymmetricKeyType)} key cannot verify token signatures`);
    usable++;
  }
  if (usable === 0) {
    throw new ConfigError(key, `${file} holds no PEM certificate or public key (expected "-----BEGIN CERTIFICATE-----" blocks, such as Keycloak's realm certificate)`);
  }
}

/** A certificate and its key, read and checked by readTlsPair. */
export interface TlsPair {
  /** The PEM text as read: the leaf certificate first, then any intermediates. */
  cert: Buffer;
  key: Buffer;
  /** The leaf's SHA-256 fingerprint (`AB:CD:…`), as `openssl x509 -fingerprint -sha256` prints it. */
  fingerprint: string;
  subject: string;
  /** The leaf's subjectAltName (`DNS:mirror.example.com, IP Address:10.0.0.5`), or '' when it has none. */
  names: string;
  /** When the leaf expires (ISO 8601). */
  notAfter: string;
}

/**
 * The HTTPS certificate (a PEM chain, leaf first) and private key (PEM, unencrypted), checked
 * to belong together. Errors name `http.tls.certificate` or `http.tls.key` and say what is wrong
 * in words, never with OpenSSL's text. Read at boot (serve, config check) and on every change.
 */
export async function readTlsPair(certFile: string, keyFile: string): Promise<TlsPair> {
  const CERT = 'http.tls.certificate';
  const KEY = 'http.tls.key';
  const certText = await readSmallFile(certFile, CERT);
  const keyText = await readSmallFile(keyFile, KEY);
  const certs = [...certText.matchAll(PEM_BLOCK)].filter((m) => m[1] === 'CERTIFICATE');
  if (certs.length === 0) throw new ConfigError(CERT, `${certFile} holds no PEM certificate (expected a "-----BEGIN CERTIFICATE-----" block, the server's certificate first)`);
  const chain = certs.map((m, i) => {
    try {
      return new X509Certificate(m[0]);
    } catch {
      throw new ConfigError(CERT, `${certFile} certificate ${i + 1} is not a valid PEM certificate (its base64 body does not decode to an X.509 certificate)`);
    }
  });
  const leaf = chain[0];
  if (leaf === undefined) throw new ConfigError(CERT, `${certFile} holds no PEM certificate`);
  const keyBlock = [...keyText.matchAll(PEM_BLOCK)].find((m) => /PRIVATE KEY$/.test(m[1] ?? ''));
  if (keyBlock === undefined) {
    const hint = /-----BEGIN CERTIFICATE-----/.test(keyText) ? ' (it holds a certificate: are certificate and key swapped?)' : '';
    throw new ConfigError(KEY, `${keyFile} holds no PEM private key (expected a "-----BEGIN PRIVATE KEY-----" block)${hint}`);
  }
  if (keyBlock[1] === 'ENCRYPTED PRIVATE KEY' || /Proc-Type: 4,ENCRYPTED/.test(keyBlock[0])) {
    throw new ConfigError(KEY, `${keyFile} is encrypted with a passphrase; give Berth an unencrypted key (openssl pkey -in ${keyFile} -out <new file>)`);
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(keyBlock[0]);
  } catch {
    throw new ConfigError(KEY, `${keyFile} is not a valid PEM private key (its base64 body does not decode to a key)`);
  }
  if (!leaf.checkPrivateKey(privateKey)) {
    throw new ConfigError(KEY, `${keyFile} is not the key of the certificate in ${certFile} (${leaf.subject.replace(/\n/g, ', ')}, SHA-256 ${leaf.fingerprint256}); give the key the certificate was issued for`);
  }
  try {
    // What the server will do with the pair; catches what the checks above cannot (an unusable chain).
    createSecureContext({ cert: certText, key: keyBlock[0] });
  } catch {
    throw new ConfigError(CERT, `${certFile} and ${keyFile} cannot be used together for TLS (check that the file holds the server certificate first, then its intermediates)`);
  }
  return {
    cert: Buffer.from(certText),
    key: Buffer.from(keyBlock[0]),
    fingerprint: leaf.fingerprint256,
    subject: leaf.subject.replace(/\n/g, ', '),
    names: leaf.subjectAltName ?? '',
    notAfter: new Date(leaf.validTo).toISOString(),
  };
}

async function checkJwksFile(file: string, key: string): Promise<void> {
  const text = await readSmallFile(file, key);
  let doc: unknown;
  try {
    doc = JSON.parse(text) as unknown;
  } catch {
    throw new ConfigError(key, `${file} is not JSON; expected a JWKS document ({"keys": [...]})`);
  }
  if (!isRecord(doc) || !Array.isArray(doc['keys'])) throw new ConfigError(key, `${file} is not a JWKS document (no "keys" array)`);
}

/**
 * The storage root, or its nearest existing ancestor when it does not exist yet, must accept a
 * new directory: one is created and removed at once. A stat or access() check is not enough:
 * `/proc` passes both for root and then refuses every mkdir, which made Node's recursive mkdir
 * spin forever at start-up.
 */
async function usableDirectory(dir: string, key: string): Promise<void> {
  const abs = path.resolve(dir);
  const existing = await nearestExisting(abs, key);
  if (!existing.isDirectory) {
    const detail = existing.path === abs ? `${abs} is not a directory` : `cannot create ${abs}: ${existing.path} is not a directory`;
    throw new ConfigError(key, detail);
  }
  let probe: string;
  try {
    probe = await mkdtemp(path.join(existing.path, '.berth-probe-'));
  } catch (err) {
    const code = errorCode(err);
    const denied = code === 'EACCES' || code === 'EPERM' || code === 'EROFS';
    const problem = denied ? `${existing.path} is not writable (${code})` : `${existing.path} does not accept new directories (${code})`;
    throw new ConfigError(key, existing.path === abs ? problem : `cannot create ${abs}: ${problem}`);
  }
  await rmdir(probe).catch(() => undefined);
}

async function nearestExisting(abs: string, key: string): Promise<{ path: string; isDirectory: boolean }> {
  let current = abs;
  for (;;) {
    try {
      return { path: current, isDirectory: (await stat(current)).isDirectory() };
    } catch (err) {
      const code = errorCode(err);
      // ENOTDIR: some parent is a file; keep walking up to report that file.
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw new ConfigError(key, `cannot use ${abs}: ${code}`);
      const parent = path.dirname(current);
      if (parent === current) throw new ConfigError(key, `cannot use ${abs}: no parent directory exists`);
      current = parent;
    }
  }
}

export function errorCode(err: unknown): string {
  if (isRecord(err) && typeof err['code'] === 'string') return err['code'];
  return err instanceof Error ? err.message : String(err);
}
