// Each sandbox's own log: lifecycle events (created, killed, timeout, …), its template's start
// command output and errors the daemon sees of its agent. Kept in SQLite (store/history.ts), at
// most `linesPerSandbox` entries each (the oldest go), and read by both APIs (E2B's v1 and v2 log
// routes, /api/v1/sandboxes/:id/logs). Followers are woken as entries arrive.
import { EventEmitter } from 'node:events'
import type { HistoryStore, LogLevel, LogQuery, LogRow } from '../store/history.js'

/** A message longer than this is cut (a start command may print anything). */
const MAX_MESSAGE_CHARS = 4096
/** Trimming to the cap runs once this many entries past it have come, not at every one. */
const TRIM_SLACK = 100
/**
 * Entries a sandbox may write: a burst of this many, refilled at RATE a second. Its start command
 * is the sandbox's own code: a flood of lines must not turn into as many writes on the server's
 * thread. What is dropped is counted and said in the next entry that passes.
 */
const BURST = 500
const RATE = 100

/** Where the entry comes from: E2B's `logger` field, which its CLI shows and filters on. */
export type LogSource = 'lifecycle' | 'start-cmd' | 'agent'

export interface SandboxLogSink {
  /** Appends an entry to sandbox `id`'s log; never throws (a log must not fail what it records). */
  append(id: string, level: LogLevel, message: string, fields?: Record<string, string | number | boolean>): void
  /** Removes what is kept of a sandbox nobody ever had (a pooled one). */
  discard(id: string): void
}

export class SandboxLogs implements SandboxLogSink {
  private readonly lastSeq = new Map<string, number>()
  private readonly events = new EventEmitter()
  /** Per sandbox: tokens left, when last refilled, entries dropped since the last one written. */
  private readonly budgets = new Map<string, { tokens: number; at: number; dropped: number }>()

  constructor(
    private readonly store: HistoryStore,
    private readonly linesPerSandbox: number,
    private readonly onError: (err: unknown) => void = () => {},
  ) {
    // One listener per follower (long-polls of /api/v1 logs); many may wait at once.
    this.events.setMaxListeners(0)
  }

  append(id: string, level: LogLevel, message: string, fields: Record<string, string | number | boolean> = {}): void {
    try {
      // What the sandbox's own code makes (its output, its agent's failures) is rate-limited;
      // Sandlot's own lifecycle events always go in.
      if ((fields.logger ?? 'lifecycle') !== 'lifecycle' && !this.admit(id)) return
      const budget = this.budgets.get(id)
      if (budget?.dropped) {
        this.write(id, 'warn', `${budget.dropped} log entries were dropped: more than ${RATE} a second`, {})
        budget.dropped = 0
      }
      this.write(id, level, message, fields)
    } catch (err) {
      this.onError(err)
    }
  }

  /** Whether the sandbox's budget has room for one more entry (a token bucket). */
  private admit(id: string): boolean {
    const now = Date.now()
    // Only a cache: dropped whole when large (ended sandboxes' go), a sandbox then starts full.
    if (this.budgets.size > 10_000) this.budgets.clear()
    const b = this.budgets.get(id) ?? { tokens: BURST, at: now, dropped: 0 }
    b.tokens = Math.min(BURST, b.tokens + ((now - b.at) / 1000) * RATE)
    b.at = now
    this.budgets.set(id, b)
    if (b.tokens < 1) {
      b.dropped++
      return false
    }
    b.tokens--
    return true
  }

  private write(id: string, level: LogLevel, message: string, fields: Record<string, string | number | boolean>): void {
    const seq = (this.lastSeq.get(id) ?? this.store.lastLogSeq(id)) + 1
    // Only a cache of the store's last seq: dropped whole when large, so ended sandboxes' go.
    if (this.lastSeq.size > 10_000) this.lastSeq.clear()
    this.lastSeq.set(id, seq)
    // E2B's fields are strings; `logger` says which part of Sandlot wrote it.
    const stringFields = Object.fromEntries(Object.entries({ logger: 'lifecycle', ...fields }).map(([k, v]) => [k, String(v)]))
    this.store.insertLog({ sandboxId: id, seq, at: Date.now(), level, message: message.length > MAX_MESSAGE_CHARS ? `${message.slice(0, MAX_MESSAGE_CHARS)}…` : message, fields: stringFields })
    if (seq > this.linesPerSandbox && seq % TRIM_SLACK === 0) this.store.trimLog(id, seq - this.linesPerSandbox)
    this.events.emit(id)
  }

  read(id: string, q: LogQuery): LogRow[] {
    return this.store.logs(id, q)
  }

  /** Resolves once sandbox `id` gets a new entry, or after `timeoutMs`, or when `signal` aborts. */
  waitForEntry(id: string, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer)
        this.events.off(id, done)
        signal?.removeEventListener('abort', done)
        resolve()
      }
      const timer = setTimeout(done, timeoutMs)
      this.events.on(id, done)
      signal?.addEventListener('abort', done)
    })
  }

  /** Everything of a sandbox nobody ever had (a pooled one): its log and its metrics. */
  discard(id: string): void {
    this.lastSeq.delete(id)
    this.budgets.delete(id)
    this.store.deleteSandbox(id)
  }
}
