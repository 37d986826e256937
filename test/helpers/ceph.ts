// A private Ceph object gateway per test file: one monitor, one OSD on memstore (RAM, no disk
// image) and radosgw (beast) on free loopback ports, all under one temp dir, with a user whose
// keys are fixed. Authentication is off (`auth * required = none`) and every messenger mode is
// `crc`: with cephx off but secure mode asked for, radosgw hangs at start. Paxos proposes at
// once instead of batching for a second: every monitor command (each pool radosgw creates is
// three of them) otherwise costs ~1 s, which made a start take ~12 s; with it, ~1.5 s here.
// A missing binary or a cluster that does not come up throws with the Debian package to install
// or the tail of the daemon's log: callers fail, they never skip.
import { readFile } from 'node:fs/promises';
import { mkdir, writeFile } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import {
  S3Client,
  CreateBucketCommand,
  ListObjectsV2Command,
  ListMultipartUploadsCommand,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { runCommand } from './clients.js';
import { freePort } from './ports.js';
import { startProcess, requireBinary, type ProcessHandle } from './proc.js';
import { makeTempDir, removeTempDir } from './tmp.js';

/** Which Debian package brings each binary this helper runs. */
const PACKAGES: Readonly<Record<string, string>> = {
  'ceph-mon': 'ceph-mon',
  monmaptool: 'ceph-mon',
  'ceph-osd': 'ceph-osd',
  ceph: 'ceph-common',
  'ceph-authtool': 'ceph-common',
  radosgw: 'radosgw',
  'radosgw-admin': 'radosgw',
};

export interface CephOptions {
  /** Buckets to create once the gateway answers. */
  buckets?: readonly string[];
  /** Capacity of the memstore OSD (RAM it may use); default 2 GiB. */
  memstoreBytes?: number;
}

export interface CephRgw {
  /** `http://127.0.0.1:<port>`: the S3 endpoint. */
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** How long the start took, ms (from nothing to buckets created). */
  startMs: number;
  /** A client with the settings S3-compatible stores need (path style, no default checksums). */
  client(): S3Client;
  createBucket(name: string): Promise<void>;
  /** Every key in the bucket (under `prefix`), all pages. */
  listKeys(bucket: string, prefix?: string): Promise<string[]>;
  /** Multipart uploads started and neither completed nor aborted. */
  listMultipartUploads(bucket: string): Promise<{ key: string; uploadId: string }[]>;
  /** The tail of the daemons' logs, for failure messages. */
  logTail(): Promise<string>;
  /** Stops radosgw, the OSD and the monitor, and removes the temp dir. Idempotent. */
  stop(): Promise<void>;
}

export const CEPH_ACCESS_KEY = 'BERTHTESTACCESSKEY01';
export const CEPH_SECRET_KEY = 'berth-test-secret-key-not-a-real-secret';
const REGION = 'us-east-1';

function binary(name: string): string {
  return requireBinary(name, PACKAGES[name]);
}

async function tailOf(path: string, lines = 40): Promise<string> {
  try {
    const text = await readFile(path, 'utf8');
    return text.split('\n').slice(-lines).join('\n');
  } catch {
    return `(no ${path})`;
  }
}

function cephConf(dir: string, fsid: string, monPort: number, rgwPort: number, memstoreBytes: number): string {
  return `[global]
fsid = ${fsid}
mon host = v2:127.0.0.1:${monPort}
public addr = 127.0.0.1
ms bind msgr1 = false
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
mon warn on insecure global id reclaim allowed = false
ms cluster mode = crc
ms service mode = crc
ms client mode = crc
ms mon cluster mode = crc
ms mon service mode = crc
ms mon client mode = crc
run dir = ${dir}/run
admin socket = ${dir}/run/$name.asok
pid file = ${dir}/run/$name.pid
log file = ${dir}/log/$name.log
keyring = ${dir}/keyring
mon data = ${dir}/mon.$id
osd data = ${dir}/osd.$id
paxos propose interval = 0.01
paxos min wait = 0.001
mon allow pool size one = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 1
osd pool default pgp num = 1
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
osd objectstore = memstore
memstore device bytes = ${memstoreBytes}
rgw rados pool pg num min = 1

[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:${rgwPort}
rgw data = ${dir}/rgw
`;
}

/** Starts mon + OSD + radosgw; see the file comment. Throws (after cleaning up) when it cannot. */
export async function startCeph(opts: CephOptions = {}): Promise<CephRgw> {
  const started = Date.now();
  for (const b of Object.keys(PACKAGES)) binary(b);
  const dir = await makeTempDir('ceph');
  const conf = join(dir, 'ceph.conf');
  const procs: ProcessHandle[] = [];
  let client: S3Client | undefined;
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    client?.destroy();
    // Gateway first (it hangs on SIGTERM once the monitor is gone), the monitor last.
    for (const p of procs.reverse()) await p.stop(3000);
    await removeTempDir(dir);
  };
  const logTail = async (): Promise<string> => {
    const parts: string[] = [];
    for (const name of ['mon.a', 'osd.0', 'client.rgw']) parts.push(`--- ${name} ---\n${await tailOf(join(dir, 'log', `${name}.log`), 25)}`);
    return parts.join('\n');
  };
  const fail = async (what: string, err: unknown): Promise<never> => {
    const why = err instanceof Error ? err.message : String(err);
    const logs = await logTail();
    await stop().catch(() => undefined);
    throw new Error(`Ceph did not come up (${what}): ${why}\n${logs}`, { cause: err });
  };

  const monPort = await freePort();
  const rgwPort = await freePort();
  const fsid = randomUUID();
  for (const sub of ['run', 'log', 'mon.a', 'osd.0', 'rgw']) await mkdir(join(dir, sub));
  await writeFile(conf, cephConf(dir, fsid, monPort, rgwPort, opts.memstoreBytes ?? 2 * 1024 ** 3));
  const run = (cmd: string, args: string[], timeoutMs = 30_000) =>
    runCommand(cmd, args, { cwd: dir, timeoutMs, aptPackage: PACKAGES[cmd] });

  try {
    await run('ceph-authtool', ['--create-keyring', join(dir, 'keyring'), '--gen-key', '-n', 'mon.', '--cap', 'mon', 'allow *']);
    await run('monmaptool', ['--create', '--addv', 'a', `[v2:127.0.0.1:${monPort}]`, '--fsid', fsid, join(dir, 'monmap')]);
    await run('ceph-mon', ['-c', conf, '--mkfs', '-i', 'a', '--monmap', join(dir, 'monmap'), '--keyring', join(dir, 'keyring')]);
    procs.push(await startProcess('ceph-mon', ['-c', conf, '-i', 'a', '-f'], { cwd: dir, unref: true, aptPackage: 'ceph-mon' }));
  } catch (err) {
    return fail('monitor', err);
  }
  try {
    // Blocks until the monitor answers (it is up within a fraction of a second).
    const osdUuid = randomUUID();
    await run('ceph', ['-c', conf, '--connect-timeout', '20', 'osd', 'new', osdUuid]);
    await run('ceph-osd', ['-c', conf, '-i', '0', '--mkfs', '--osd-uuid', osdUuid]);
    procs.push(await startProcess('ceph-osd', ['-c', conf, '-i', '0', '-f'], { cwd: dir, unref: true, aptPackage: 'ceph-osd' }));
  } catch (err) {
    return fail('OSD', err);
  }
  try {
    // Creates radosgw's pools (which waits for the OSD to be up) and the test user.
    await run('radosgw-admin', [
      '-c', conf, '-n', 'client.rgw', 'user', 'create', '--uid', 'berth', '--display-name', 'berth tests',
      '--access-key', CEPH_ACCESS_KEY, '--secret-key', CEPH_SECRET_KEY,
    ], 60_000);
    procs.push(
      await startProcess('radosgw', ['-c', conf, '-n', 'client.rgw', '-f'], {
        cwd: dir,
        unref: true,
        aptPackage: 'radosgw',
        readyUrl: `http://127.0.0.1:${rgwPort}/`,
        readyTimeoutMs: 30_000,
      }),
    );
  } catch (err) {
    return fail('radosgw', err);
  }

  const endpoint = `http://127.0.0.1:${rgwPort}`;
  const clientConfig: S3ClientConfig = {
    endpoint,
    region: REGION,
    forcePathStyle: true,
    credentials: { accessKeyId: CEPH_ACCESS_KEY, secretAccessKey: CEPH_SECRET_KEY },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  };
  const getClient = (): S3Client => (client ??= new S3Client(clientConfig));
  const createBucket = async (name: string): Promise<void> => {
    await getClient().send(new CreateBucketCommand({ Bucket: name }));
  };
  try {
    for (const b of opts.buckets ?? []) await createBucket(b);
  } catch (err) {
    return fail('creating buckets', err);
  }

  return {
    endpoint,
    region: REGION,
    accessKeyId: CEPH_ACCESS_KEY,
    secretAccessKey: CEPH_SECRET_KEY,
    startMs: Date.now() - started,
    client: getClient,
    createBucket,
    async listKeys(bucket, prefix) {
      const keys: string[] = [];
      let token: string | undefined;
      do {
        const page = await getClient().send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
        for (const o of page.Contents ?? []) if (o.Key !== undefined) keys.push(o.Key);
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
      return keys;
    },
    async listMultipartUploads(bucket) {
      const out: { key: string; uploadId: string }[] = [];
      let keyMarker: string | undefined;
      let uploadIdMarker: string | undefined;
      for (;;) {
        const page = await getClient().send(
          new ListMultipartUploadsCommand({ Bucket: bucket, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }),
        );
        for (const u of page.Uploads ?? []) out.push({ key: u.Key ?? '', uploadId: u.UploadId ?? '' });
        if (!page.IsTruncated) return out;
        keyMarker = page.NextKeyMarker;
        uploadIdMarker = page.NextUploadIdMarker;
      }
    },
    logTail,
    stop,
  };
}
