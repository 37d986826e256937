/**
 * Durations and sizes as operators write them (`10m`, `1h30m`, `512MiB`, `1.5GB`), parsed once at
 * boot into milliseconds and bytes so nothing downstream ever re-parses a string.
 */
import { ConfigError } from './errors.js';

export const DURATION_EXPECTED = 'a duration like "10m"';
export const SIZE_EXPECTED = 'a size like "512MiB"';

const MS_PER: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

// `ms` must be tried before `m`, or `500ms` would read as 500 minutes followed by garbage.
const DURATION_PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/y;
const BARE_NUMBER = /^\d+(?:\.\d+)?$/;

/**
 * Milliseconds from `500ms`, `30s`, `10m`, `6h`, `1d`, or a sequence of those (`1h30m`). A bare
 * number is refused (is `600` seconds or milliseconds?) with a message naming the units, except
 * 0, which means the same in every unit. Negative, empty or unknown units are refused too; every
 * refusal is a ConfigError naming `key`.
 */
export function parseDuration(input: string | number, key: string): number {
  if (typeof input === 'number') {
    if (!Number.isFinite(input) || input < 0) throw ConfigError.expected(key, DURATION_EXPECTED, input);
    if (input === 0) return 0;
    throw bareNumber(key, input);
  }
  const text = input.trim();
  if (BARE_NUMBER.test(text)) {
    if (Number(text) === 0) return 0;
    throw bareNumber(key, input);
  }
  if (text === '') throw ConfigError.expected(key, DURATION_EXPECTED, input);

  let total = 0;
  let pos = 0;
  while (pos < text.length) {
    DURATION_PART.lastIndex = pos;
    const m = DURATION_PART.exec(text);
    const amount = m?.[1];
    const unit = m?.[2];
    const factor = unit === undefined ? undefined : MS_PER[unit];
    if (amount === undefined || factor === undefined) throw ConfigError.expected(key, DURATION_EXPECTED, input);
    total += Number(amount) * factor;
    pos = DURATION_PART.lastIndex;
  }
  return toSafeInteger(total, key, DURATION_EXPECTED, input);
}

function bareNumber(key: string, input: string | number): ConfigError {
  const n = String(input).trim();
  return new ConfigError(
    key,
    `expected ${DURATION_EXPECTED}, got ${typeof input === 'string' ? JSON.stringify(input) : n}: a duration needs a unit, ` +
      `one of ms, s, m, h, d (write "${n}s" for ${n} seconds)`,
  );
}

const BYTES_PER: Readonly<Record<string, number>> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
  // Kubernetes quantities (`Gi`), because Helm values written for a PVC get pasted here.
  ki: 2 ** 10,
  mi: 2 ** 20,
  gi: 2 ** 30,
  ti: 2 ** 40,
};

const SIZE = /^(\d+(?:\.\d+)?)\s*([A-Za-z]+)?$/;

/**
 * Bytes from `512MiB`, `50GiB`, `1.5GB`, `100KB` or a bare integer of bytes. KB/MB/GB/TB are
 * decimal, KiB/MiB/GiB/TiB binary; unit case is not significant (`512mib`), the `i` is.
 */
export function parseSize(input: string | number, key: string): number {
  if (typeof input === 'number') {
    if (!Number.isSafeInteger(input) || input < 0) throw ConfigError.expected(key, SIZE_EXPECTED, input);
    return input;
  }
  const m = SIZE.exec(input.trim());
  const amount = m?.[1];
  if (m === null || amount === undefined) throw ConfigError.expected(key, SIZE_EXPECTED, input);
  const unit = m[2];
  if (unit === undefined) {
    // A bare count of bytes has no sensible fraction.
    if (!/^\d+$/.test(amount)) throw ConfigError.expected(key, SIZE_EXPECTED, input);
    return toSafeInteger(Number(amount), key, SIZE_EXPECTED, input);
  }
  const factor = BYTES_PER[unit.toLowerCase()];
  if (factor === undefined) throw ConfigError.expected(key, SIZE_EXPECTED, input);
  return toSafeInteger(Number(amount) * factor, key, SIZE_EXPECTED, input);
}

function toSafeInteger(value: number, key: string, expected: string, input: unknown): number {
  const rounded = Math.round(value);
  if (!Number.isSafeInteger(rounded)) throw ConfigError.expected(key, expected, input);
  return rounded;
}

const DURATION_STEPS: ReadonlyArray<readonly [string, number]> = [
  ['d', 86_400_000],
  ['h', 3_600_000],
  ['m', 60_000],
  ['s', 1_000],
  ['ms', 1],
];

/** `5400000` → `1h30m`; the inverse of parseDuration for whole milliseconds. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return String(ms);
  let rest = Math.round(ms);
  if (rest === 0) return '0s';
  let out = '';
  for (const [unit, size] of DURATION_STEPS) {
    const n = Math.floor(rest / size);
    if (n > 0) {
      out += `${n}${unit}`;
      rest -= n * size;
    }
  }
  return out;
}

const SIZE_STEPS: ReadonlyArray<readonly [string, number]> = [
  ['TiB', 2 ** 40],
  ['GiB', 2 ** 30],
  ['MiB', 2 ** 20],
  ['KiB', 2 ** 10],
];

/** `536870912` → `512MiB`, `1610612736` → `1.5GiB`: binary units, at most two decimals. */
export function formatSize(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return String(bytes);
  for (const [unit, size] of SIZE_STEPS) {
    if (bytes >= size) return `${trimDecimals(bytes / size)}${unit}`;
  }
  return `${Math.round(bytes)}B`;
}

function trimDecimals(n: number): string {
  return n.toFixed(2).replace(/\.?0+$/, '');
}
