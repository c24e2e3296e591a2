/** Small descriptive statistics for the benchmark (no dependencies). */

export interface Summary {
  n: number;
  mean: number;
  /** Sample standard deviation (n-1); 0 when n < 2. */
  sd: number;
  min: number;
  max: number;
  p50: number;
  p99: number;
}

export function mean(xs: number[]): number {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN;
}

export function sd(xs: number[]): number {
  if (xs.length < 2) return 0;
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1));
}

/** Percentile by linear interpolation between closest ranks (p in 0..100). */
export function percentile(xs: number[], p: number): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const r = (p / 100) * (s.length - 1);
  const lo = Math.floor(r);
  const hi = Math.ceil(r);
  return s[lo] + (s[hi] - s[lo]) * (r - lo);
}

export function summarize(xs: number[]): Summary {
  return {
    n: xs.length,
    mean: mean(xs),
    sd: sd(xs),
    min: xs.length ? Math.min(...xs) : NaN,
    max: xs.length ? Math.max(...xs) : NaN,
    p50: percentile(xs, 50),
    p99: percentile(xs, 99),
  };
}

/** "1.23 ± 0.04 s (n=5, 1.19-1.29)" with a sensible number of decimals. */
export function fmtSummary(s: Summary, unit: string, digits = 2): string {
  if (!s.n) return "n/a";
  const f = (v: number) => v.toFixed(digits);
  if (s.n === 1) return `${f(s.mean)} ${unit} (n=1)`;
  return `${f(s.mean)} ± ${f(s.sd)} ${unit} (n=${s.n}, ${f(s.min)}–${f(s.max)})`;
}

/** Deterministic PRNG (mulberry32) so "random failure moments" are reproducible from a seed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
