// Shared by the benchmark files: percentiles and the markdown rows they print for BENCHMARKS.md.
export function stats(ms: number[]) {
  const s = [...ms].sort((a, b) => a - b)
  const q = (p: number) => s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!
  return { n: s.length, p50: q(50), p95: q(95), p99: q(99), min: s[0]!, max: s.at(-1)! }
}

export const fmt = (x: number) => x.toFixed(1)

export const summary = (ms: number[]) => {
  const s = stats(ms)
  return `p50 ${fmt(s.p50)} · p95 ${fmt(s.p95)} · p99 ${fmt(s.p99)} · min ${fmt(s.min)} · max ${fmt(s.max)}`
}

/** Times `fn` n times, one after another. */
export async function timed(n: number, fn: (i: number) => Promise<void>): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < n; i++) {
    const t0 = performance.now()
    await fn(i)
    out.push(performance.now() - t0)
  }
  return out
}
