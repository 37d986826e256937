// Small statistics and formatting helpers for the benchmark report: medians with min–max over
// rounds, ratios of medians, and fixed-width number formatting.

export interface Summary {
  median: number;
  min: number;
  max: number;
  n: number;
}

/** Median (mean of the middle two for an even count), min and max; NaN for no samples. */
export function summarize(values: readonly number[]): Summary {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return { median: NaN, min: NaN, max: NaN, n: 0 };
  const mid = Math.floor(v.length / 2);
  const median = v.length % 2 === 1 ? (v[mid] as number) : ((v[mid - 1] as number) + (v[mid] as number)) / 2;
  return { median, min: v[0] as number, max: v[v.length - 1] as number, n: v.length };
}

/** `1.23 (1.10–1.31)` with `digits` decimals. */
export function fmtSummary(s: Summary, digits = 2): string {
  if (s.n === 0) return '—';
  if (s.n === 1) return fmt(s.median, digits);
  return `${fmt(s.median, digits)} (${fmt(s.min, digits)}–${fmt(s.max, digits)})`;
}

export function fmt(x: number, digits = 2): string {
  if (!Number.isFinite(x)) return '—';
  return x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** a/b of two medians, as `0.93×`; '—' when either is missing. */
export function ratio(a: Summary | undefined, b: Summary | undefined, digits = 2): string {
  if (!a || !b || a.n === 0 || b.n === 0 || b.median === 0) return '—';
  return `${fmt(a.median / b.median, digits)}×`;
}

export function ratioValue(a: Summary | undefined, b: Summary | undefined): number {
  if (!a || !b || a.n === 0 || b.n === 0 || b.median === 0) return NaN;
  return a.median / b.median;
}

export const MiB = 1024 * 1024;

/** A flag's value, read on demand by the section that knows the flag. */
export interface FlagValue {
  /** A positive whole number. */
  num(): number;
  text(): string;
}

/**
 * Walks a bench section's own flags (the argv after `--<section>`): `take(flag, value)` handles
 * one and returns false for a flag it does not know. An unknown flag or a malformed value throws
 * with the section's usage text.
 */
export function walkFlags(argv: readonly string[], section: string, usage: string, take: (flag: string, value: FlagValue) => boolean): void {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    if (a === section) continue;
    const v = argv[i + 1];
    const value: FlagValue = {
      num: () => {
        const n = Number(v);
        if (!Number.isInteger(n) || n <= 0) throw new Error(`${a} needs a positive whole number, got "${v ?? ''}"\n${usage}`);
        i += 1;
        return n;
      },
      text: () => {
        if (v === undefined) throw new Error(`${a} needs a value\n${usage}`);
        i += 1;
        return v;
      },
    };
    if (!take(a, value)) throw new Error(`unknown option ${a}\n${usage}`);
  }
}
