// Output for people: relative times ("2 min ago") and tables that fit the terminal.

/** `date` relative to `now`: "just now", "40 s ago", "2 min ago", "3 h ago", "in 58 min", … */
export function relativeTime(date: Date | string, now = Date.now()): string {
  const ms = (typeof date === 'string' ? Date.parse(date) : date.getTime()) - now
  const abs = Math.abs(ms)
  if (abs < 5_000) return 'just now'
  const [n, unit] =
    abs < 60_000 ? [Math.round(abs / 1000), 's'] : abs < 90 * 60_000 ? [Math.round(abs / 60_000), 'min'] : abs < 48 * 3_600_000 ? [Math.round(abs / 3_600_000), 'h'] : [Math.round(abs / 86_400_000), abs < 2 * 86_400_000 ? 'day' : 'days']
  return ms < 0 ? `${n} ${unit} ago` : `in ${n} ${unit}`
}

/** The width to fit: the terminal's, else COLUMNS, else none (a pipe gets whole lines). */
export function outputWidth(): number {
  return process.stdout.columns || Number(process.env.COLUMNS) || Infinity
}

/**
 * Prints rows in columns, two spaces apart, the most useful first. When they are wider than
 * `width`, the last column is cut (with "…") to fit, or dropped if less than 8 characters of it
 * would be left, and so on leftwards; the first column always stays.
 */
export function printTable(rows: string[][], width = outputWidth()): void {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  const total = () => widths.reduce((a, w) => a + w, 0) + 2 * (widths.length - 1)
  while (widths.length > 1 && total() > width) {
    const room = widths.at(-1)! - (total() - width)
    if (room >= 8) widths[widths.length - 1] = room
    else widths.pop()
  }
  const cut = (s: string, w: number) => (s.length > w ? `${s.slice(0, w - 1)}…` : s)
  for (const r of rows) console.log(widths.map((w, i) => cut(r[i]!, w).padEnd(w)).join('  ').trimEnd())
}

/** Prints data as JSON (the --json of every command that prints data). */
export const printJson = (data: unknown) => console.log(JSON.stringify(data, null, 2))
