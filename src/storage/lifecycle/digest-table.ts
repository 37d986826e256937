/**
 * The cache index's digests, each held once as a small number (an id) instead of a string: a
 * sha256 digest is 32 raw bytes in one arena, found again through an open-addressing table of
 * ids, so 100,000 digests take about 4.5 MiB outside V8's heap instead of ~9 MiB of strings plus
 * the maps that key on them. The usage index and the reference graph keep their figures in typed
 * arrays indexed by these ids. Any other algorithm (sha512) is kept as a string in a side map:
 * rare, and still one id.
 *
 * An id lives while someone holds it (`acquire`/`release`: the usage index for a stored blob,
 * the graph for a manifest and for each digest a manifest names); then it is free for another
 * digest. While a pass over the index is under way (`pin`), freed ids are not handed out again, so
 * marks the pass keeps per id cannot be confused with a digest stored meanwhile.
 */
import type { Digest } from '../../oci/reference.js';

const SHA256 = 'sha256:';
const HASH_BYTES = 32;
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** Value of one lowercase hex character, or -1. */
function nibble(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

/**
 * The table's hash of a sha256 digest: its first four bytes (digests are uniformly random), as an
 * unsigned number; -1 when they are not lowercase hex.
 */
function hashOfString(d: string): number {
  let h = 0;
  for (let i = 0; i < 8; i++) {
    const v = nibble(d.charCodeAt(SHA256.length + i));
    if (v < 0) return -1;
    h = (h << 4) | v;
  }
  return h >>> 0;
}

function isSha256(d: string): boolean {
  return d.length === SHA256.length + 2 * HASH_BYTES && d.startsWith(SHA256);
}

export class DigestTable {
  private cap = 0;
  /** Raw sha256 bytes, HASH_BYTES per id. */
  private bytes = new Uint8Array(0);
  /** How many hold each id (0: free). */
  private refs = new Uint32Array(0);
  /** 1 for an id held by a sha256 digest in `bytes`, 2 for one in `others`. */
  private kind = new Uint8Array(0);
  /** Open addressing (linear probing): id + 1, 0 for an empty slot. */
  private slots = new Int32Array(0);
  private mask = 0;
  private inTable = 0;
  /** Ids never handed out start here. */
  private next = 0;
  private readonly free: number[] = [];
  private readonly quarantine: number[] = [];
  private pins = 0;
  private readonly others = new Map<string, number>();
  private readonly otherNames = new Map<number, string>();
  private readonly growers: ((cap: number) => void)[] = [];

  constructor(initial = 1024) {
    this.growIds(initial);
    this.rehash(initial * 2);
  }

  /** Ids are below this. */
  get capacity(): number {
    return this.cap;
  }

  /** Ids handed out so far are below this (a loop over every id stops here). */
  get end(): number {
    return this.next;
  }

  /** Digests held. */
  get size(): number {
    return this.inTable + this.others.size;
  }

  /** Called with the new capacity whenever it grows: owners of per-id arrays grow theirs. */
  onGrow(fn: (cap: number) => void): void {
    this.growers.push(fn);
  }

  /** The id of a digest held, or -1. Any string: one that is no digest is simply not found. */
  idOf(d: string): number {
    if (isSha256(d)) {
      const h = hashOfString(d);
      if (h >= 0) return this.find(d, h);
    }
    return this.others.get(d) ?? -1;
  }

  /** The digest's id, taken (the digest added when new); each acquire needs one release. */
  acquire(d: Digest): number {
    let id = this.idOf(d);
    if (id < 0) id = this.add(d);
    this.refs[id] = (this.refs[id] ?? 0) + 1;
    return id;
  }

  /** Take one more hold on an id already held. */
  hold(id: number): void {
    this.refs[id] = (this.refs[id] ?? 0) + 1;
  }

  /** Give up one hold; the last one frees the id. */
  release(id: number): void {
    const n = (this.refs[id] ?? 0) - 1;
    if (n > 0) {
      this.refs[id] = n;
      return;
    }
    this.refs[id] = 0;
    if (this.kind[id] === 1) this.remove(id);
    else {
      const name = this.otherNames.get(id);
      if (name !== undefined) this.others.delete(name);
      this.otherNames.delete(id);
    }
    this.kind[id] = 0;
    (this.pins > 0 ? this.quarantine : this.free).push(id);
  }

  /** Is this id held (by anyone)? */
  live(id: number): boolean {
    return (this.kind[id] ?? 0) !== 0;
  }

  /** The digest an id holds (a new string each call: keep ids, not these, in long-lived places). */
  digest(id: number): Digest {
    if (this.kind[id] === 1) {
      const o = id * HASH_BYTES;
      let s = SHA256;
      for (let i = 0; i < HASH_BYTES; i++) s += HEX[this.bytes[o + i] as number] as string;
      return s as Digest;
    }
    return (this.otherNames.get(id) ?? '') as Digest;
  }

  /** The first byte of a sha256 digest (its access-record shard), -1 for another algorithm. */
  firstByte(id: number): number {
    return this.kind[id] === 1 ? (this.bytes[id * HASH_BYTES] as number) : -1;
  }

  /** While pinned (a pass keeps marks per id), freed ids are not reused. Pins nest. */
  pin(): void {
    this.pins += 1;
  }

  unpin(): void {
    this.pins -= 1;
    if (this.pins === 0) {
      for (const id of this.quarantine) this.free.push(id);
      this.quarantine.length = 0;
    }
  }

  // ------------------------------------------------------------------ internals

  private add(d: Digest): number {
    const id = this.free.pop() ?? this.next++;
    if (id >= this.cap) this.growIds(this.cap * 2);
    const h = isSha256(d) ? hashOfString(d) : -1;
    if (h < 0) {
      this.kind[id] = 2;
      this.others.set(d, id);
      this.otherNames.set(id, d);
      return id;
    }
    this.kind[id] = 1;
    const o = id * HASH_BYTES;
    for (let i = 0; i < HASH_BYTES; i++) {
      const at = SHA256.length + 2 * i;
      this.bytes[o + i] = (nibble(d.charCodeAt(at)) << 4) | nibble(d.charCodeAt(at + 1));
    }
    if ((this.inTable + 1) * 2 > this.slots.length) this.rehash(this.slots.length * 2);
    this.insert(id, h);
    this.inTable += 1;
    return id;
  }

  private hashOfId(id: number): number {
    const o = id * HASH_BYTES;
    const b = this.bytes;
    return (((b[o] as number) << 24) | ((b[o + 1] as number) << 16) | ((b[o + 2] as number) << 8) | (b[o + 3] as number)) >>> 0;
  }

  private home(h: number): number {
    // Fibonacci hashing spreads the bits over the table whatever its size.
    return (Math.imul(h, 0x9e3779b1) >>> 0) & this.mask;
  }

  private insert(id: number, h: number): void {
    let i = this.home(h);
    while (this.slots[i] !== 0) i = (i + 1) & this.mask;
    this.slots[i] = id + 1;
  }

  private find(d: string, h: number): number {
    for (let i = this.home(h); ; i = (i + 1) & this.mask) {
      const v = this.slots[i] as number;
      if (v === 0) return -1;
      if (this.equals(v - 1, d)) return v - 1;
    }
  }

  private equals(id: number, d: string): boolean {
    const o = id * HASH_BYTES;
    for (let i = 0; i < HASH_BYTES; i++) {
      const at = SHA256.length + 2 * i;
      const hi = nibble(d.charCodeAt(at));
      const lo = nibble(d.charCodeAt(at + 1));
      if (hi < 0 || lo < 0 || this.bytes[o + i] !== ((hi << 4) | lo)) return false;
    }
    return true;
  }

  /** Take an id out of the probe table (backward-shift deletion: no tombstones). */
  private remove(id: number): void {
    let i = this.home(this.hashOfId(id));
    while (this.slots[i] !== id + 1) {
      if (this.slots[i] === 0) return;
      i = (i + 1) & this.mask;
    }
    for (let j = (i + 1) & this.mask; this.slots[j] !== 0; j = (j + 1) & this.mask) {
      const k = this.home(this.hashOfId((this.slots[j] as number) - 1));
      // The entry at j may move to i when its home is not in the cyclic range (i, j].
      const stays = i <= j ? i < k && k <= j : i < k || k <= j;
      if (stays) continue;
      this.slots[i] = this.slots[j] as number;
      i = j;
    }
    this.slots[i] = 0;
    this.inTable -= 1;
  }

  private rehash(size: number): void {
    const old = this.slots;
    this.slots = new Int32Array(size);
    this.mask = size - 1;
    for (const v of old) if (v !== 0) this.insert(v - 1, this.hashOfId(v - 1));
  }

  private growIds(cap: number): void {
    const grow = <T extends Uint8Array | Uint32Array>(a: T, n: number, make: (n: number) => T): T => {
      const b = make(n);
      b.set(a);
      return b;
    };
    this.bytes = grow(this.bytes, cap * HASH_BYTES, (n) => new Uint8Array(n));
    this.refs = grow(this.refs, cap, (n) => new Uint32Array(n));
    this.kind = grow(this.kind, cap, (n) => new Uint8Array(n));
    this.cap = cap;
    for (const fn of this.growers) fn(cap);
  }
}

/** A copy of `a` with room for `n` items (typed arrays of any kind). */
export function grown<T extends Uint8Array | Uint32Array | Int32Array | Float64Array>(a: T, n: number): T {
  if (a.length >= n) return a;
  const b = new (a.constructor as new (n: number) => T)(n);
  b.set(a);
  return b;
}
