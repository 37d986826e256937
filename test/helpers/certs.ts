// Test certificates made with the openssl CLI: a CA, and server certificates it signs for the IP
// addresses and names a test listens on (Go clients such as dockerd insist on a subjectAltName).
// Everything lives under the dir the caller gives (a makeTempDir) and expires in two days.
import { X509Certificate } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runCommand } from './clients.js';

export interface TestCa {
  name: string;
  certFile: string;
  keyFile: string;
  /** The CA certificate's PEM text (what a client trusts). */
  pem: string;
}

export interface TestCert {
  certFile: string;
  keyFile: string;
  certPem: string;
  keyPem: string;
  /** SHA-256 fingerprint as tls's getPeerCertificate().fingerprint256 prints it. */
  fingerprint: string;
}

const openssl = (args: string[]): Promise<unknown> => runCommand('openssl', args, { aptPackage: 'openssl', timeoutMs: 30_000 });

/** A self-signed CA (EC P-256) named `name`, its files in `dir`. */
export async function makeCa(dir: string, name: string): Promise<TestCa> {
  const certFile = join(dir, `${name}-ca.crt`);
  const keyFile = join(dir, `${name}-ca.key`);
  await openssl([
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', `/CN=${name} test CA`, '-keyout', keyFile, '-out', certFile,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  return { name, certFile, keyFile, pem: await readFile(certFile, 'utf8') };
}

/** A server certificate signed by `ca` for the given IPs and DNS names; files `<dir>/<name>.crt|.key`. */
export async function issueCert(ca: TestCa, dir: string, name: string, san: { ips?: string[]; dns?: string[] }): Promise<TestCert> {
  const certFile = join(dir, `${name}.crt`);
  const keyFile = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const ext = join(dir, `${name}.ext`);
  const names = [...(san.ips ?? []).map((ip) => `IP:${ip}`), ...(san.dns ?? []).map((d) => `DNS:${d}`)];
  await writeFile(ext, [`subjectAltName=${names.join(',')}`, 'basicConstraints=CA:FALSE', 'keyUsage=critical,digitalSignature', 'extendedKeyUsage=serverAuth', ''].join('\n'));
  await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${name}`, '-keyout', keyFile, '-out', csr]);
  await openssl(['x509', '-req', '-in', csr, '-CA', ca.certFile, '-CAkey', ca.keyFile, '-CAcreateserial', '-days', '2', '-extfile', ext, '-out', certFile]);
  const certPem = await readFile(certFile, 'utf8');
  return { certFile, keyFile, certPem, keyPem: await readFile(keyFile, 'utf8'), fingerprint: new X509Certificate(certPem).fingerprint256 };
}
