// Directory watchers: envd's WatchDir stream, turned into events with E2B v0's shape.
import { EventType, FileType } from '@sandlot/envd-proto'
import path from 'node:path'
import { KEEPALIVE_SECONDS, userHeader, type SandboxContext } from './envd.js'
import type { SandlotError } from './errors.js'

/** What happened to a path. */
export type FilesystemOperation = 'Create' | 'Write' | 'Remove' | 'Rename' | 'Chmod'

/** A change in a watched directory. */
export interface FilesystemEvent {
  /** The absolute path that changed. For `Rename`, the old path (the new one comes as a `Create`). */
  path: string
  /** Its base name. */
  name: string
  /** What happened. */
  operation: FilesystemOperation
  /** When the client received the event, in milliseconds since the epoch. */
  timestamp: number
  /** Whether the path is (or, for `Remove`/`Rename`, was seen as) a directory. */
  isDir: boolean
}

/** Options of {@link Filesystem.watchDir}. */
export interface WatchOptions {
  /** Also watch subdirectories (and those created later). Default `false`. */
  recursive?: boolean
  /** Called if the watch fails after it started (e.g. the directory was removed, or the sandbox went away). */
  onError?: (err: SandlotError) => void
}

const OPERATIONS: Partial<Record<EventType, FilesystemOperation>> = {
  [EventType.CREATE]: 'Create',
  [EventType.WRITE]: 'Write',
  [EventType.REMOVE]: 'Remove',
  [EventType.RENAME]: 'Rename',
  [EventType.CHMOD]: 'Chmod',
}

/** Watches a directory in the sandbox. Made by {@link Filesystem.watchDir}. */
export class DirWatcher {
  private readonly listeners = new Set<(event: FilesystemEvent) => void>()
  /** Directories seen, so a later Remove or Rename of one can say it was a directory. */
  private readonly dirs = new Set<string>()
  private abort: AbortController | undefined

  /** @internal */
  constructor(
    private readonly ctx: SandboxContext,
    /** The watched directory (absolute). */
    readonly path: string,
    private readonly opts: WatchOptions,
  ) {}

  /** Adds a listener for events; returns a function that removes it. */
  addEventListener(listener: (event: FilesystemEvent) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  /**
   * Starts watching. Resolves once the sandbox watches the directory, so every change made after
   * that is reported. Throws {@link FileNotFoundError} if the directory does not exist.
   */
  async start(): Promise<void> {
    if (this.abort) return
    this.ctx.assertUsable()
    const abort = (this.abort = new AbortController())
    const signal = AbortSignal.any([abort.signal, this.ctx.closedSignal])
    const stream = this.ctx.envd.filesystem.watchDir(
      { path: this.path, recursive: this.opts.recursive ?? false, includeEntry: true },
      { headers: { ...userHeader('user'), 'keepalive-ping-interval': KEEPALIVE_SECONDS }, signal },
    )
    const it = stream[Symbol.asyncIterator]()
    try {
      // The first message says the watch is in place.
      await it.next()
    } catch (err) {
      this.abort = undefined
      throw this.ctx.error(err, this.path)
    }
    void this.pump(it, abort)
  }

  private async pump(it: AsyncIterator<{ event: { case: string | undefined; value?: unknown } }>, abort: AbortController): Promise<void> {
    try {
      for (;;) {
        const { value, done } = await it.next()
        if (done) break
        if (value.event.case === 'filesystem') this.emit(value.event.value as { name: string; type: EventType; entry?: { type: FileType } })
      }
    } catch (err) {
      if (!abort.signal.aborted && !this.ctx.closedSignal.aborted) this.opts.onError?.(this.ctx.error(err, this.path))
    } finally {
      if (this.abort === abort) this.abort = undefined
    }
  }

  private emit(e: { name: string; type: EventType; entry?: { type: FileType } }): void {
    const operation = OPERATIONS[e.type]
    if (!operation) return
    const full = path.posix.join(this.path, e.name)
    let isDir = e.entry?.type === FileType.DIRECTORY
    if (isDir) this.dirs.add(full)
    if (operation === 'Remove' || operation === 'Rename') {
      isDir = this.dirs.has(full)
      this.dirs.delete(full)
    }
    const event: FilesystemEvent = { path: full, name: path.posix.basename(full), operation, timestamp: Date.now(), isDir }
    for (const listener of this.listeners) {
      try {
        listener(event)
      } catch (err) {
        // A listener's bug must not end the watch for the others; it still surfaces, as in an EventEmitter.
        queueMicrotask(() => {
          throw err
        })
      }
    }
  }

  /** Stops watching. */
  async stop(): Promise<void> {
    this.abort?.abort()
    this.abort = undefined
  }
}
