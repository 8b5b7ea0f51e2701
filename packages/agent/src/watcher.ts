import { watch, type BigIntStats, type FSWatcher } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { basename, join, relative, sep } from 'node:path';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { EventType, type FilesystemEventSchema } from '@sandlot/envd-proto';
import { entryInfo } from './entry.js';

export type FsEventInit = MessageInitShape<typeof FilesystemEventSchema>;

/** Directories one watch may cover (one fs.watch handle and inotify watch each, ~1.2 KB of the agent's memory). */
const MAX_WATCHED_DIRS = 8192;
/** Directories all of the agent's watches together may cover: the per-watch limit times the watch cap would be gigabytes. */
const MAX_WATCHED_DIRS_TOTAL = 16384;
let watchedDirsTotal = 0;

export class WatchLimitError extends Error {}

/** Inodes of entries seen before they changed: how a rename is told from a remove. */
const MAX_KNOWN_AT_START = 10_000;

interface Known {
  ino: bigint;
  mode: bigint;
}

interface RawEvent {
  dir: string;
  type: string;
  name: string;
}

/**
 * Watches a directory (optionally recursively) with one inotify watch per directory
 * (node's fs.watch), translating events to envd's CREATE/WRITE/REMOVE/RENAME/CHMOD with names
 * relative to the watched root.
 *
 * fs.watch reports only "rename" (created, deleted, moved, or a directory's attributes changed)
 * and "change". Events read together from inotify are handled as one batch: a path that vanished
 * and a path that appeared with the inode it had make a RENAME (old name) and a CREATE (new name),
 * as envd's fsnotify reports a move; a vanished path with no such partner is a REMOVE.
 */
export class DirWatcher {
  private watchers = new Map<string, FSWatcher>();
  private known = new Map<string, Known>();
  private batch: RawEvent[] = [];
  private tail: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(
    private root: string,
    private recursive: boolean,
    private includeEntry: boolean,
    private onEvent: (ev: FsEventInit) => void,
    private onFatal: (err: Error) => void,
  ) {}

  async start(): Promise<void> {
    await this.addDir(this.root, true);
  }

  close(): void {
    this.closed = true;
    for (const w of this.watchers.values()) w.close();
    watchedDirsTotal -= this.watchers.size;
    this.watchers.clear();
    this.known.clear();
    this.batch = [];
  }

  /**
   * Watches `dir` (and, when recursive, its subdirectories). `announce`: the directory appeared
   * while watching, so what is already in it was created before its own watch existed and is
   * reported as created (mkdir -p a/b && touch a/b/f would otherwise show only "a").
   */
  private async addDir(dir: string, isRoot = false, announce = false): Promise<void> {
    if (this.closed || this.watchers.has(dir)) return;
    if (this.watchers.size >= MAX_WATCHED_DIRS || watchedDirsTotal >= MAX_WATCHED_DIRS_TOTAL) {
      const err = new WatchLimitError(
        this.watchers.size >= MAX_WATCHED_DIRS
          ? `too many directories to watch (limit ${MAX_WATCHED_DIRS})`
          : `too many directories watched by all watches together (limit ${MAX_WATCHED_DIRS_TOTAL})`,
      );
      if (isRoot) throw err;
      this.onFatal(err);
      return;
    }
    let w: FSWatcher;
    try {
      w = watch(dir, { persistent: false }, (type, filename) => {
        if (!filename) return;
        const name = typeof filename === 'string' ? filename : String(filename);
        // Every event of one inotify read arrives in this same tick: handle them together.
        if (this.batch.length === 0) setImmediate(() => this.flush());
        this.batch.push({ dir, type, name });
      });
    } catch (err) {
      if (isRoot) throw err;
      return; // subdir vanished or unreadable: skip it
    }
    w.on('error', (err) => {
      w.close();
      if (this.watchers.get(dir) === w && this.watchers.delete(dir)) watchedDirsTotal--;
      if (dir === this.root) this.onFatal(err);
    });
    this.watchers.set(dir, w);
    watchedDirsTotal++;
    let children;
    try {
      children = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      if (isRoot) throw err;
      return;
    }
    for (const c of children) {
      const full = join(dir, c.name);
      if (announce && !this.known.has(full)) {
        const st = await lstat(full, { bigint: true }).catch(() => undefined);
        if (!st || this.closed || this.known.has(full)) continue;
        this.known.set(full, { ino: st.ino, mode: st.mode });
        const out: FsEventInit = { name: relative(this.root, full), type: EventType.CREATE };
        if (this.includeEntry) out.entry = await entryInfo(full, st).catch(() => undefined);
        if (!this.closed) this.onEvent(out);
      } else if (this.known.size < MAX_KNOWN_AT_START && !this.known.has(full)) {
        const st = await lstat(full, { bigint: true }).catch(() => undefined);
        if (st && !this.known.has(full)) this.known.set(full, { ino: st.ino, mode: st.mode });
      }
      if (this.recursive && c.isDirectory()) await this.addDir(full, false, announce);
    }
  }

  private removeDirTree(dir: string): void {
    const prefix = dir + sep;
    for (const [d, w] of this.watchers) {
      if (d === dir || d.startsWith(prefix)) {
        w.close();
        this.watchers.delete(d);
        watchedDirsTotal--;
      }
    }
  }

  private flush(): void {
    const batch = this.batch;
    this.batch = [];
    this.tail = this.tail.then(() => this.handleBatch(batch)).catch(() => {});
  }

  private async handleBatch(batch: RawEvent[]): Promise<void> {
    if (this.closed) return;
    const items = await Promise.all(
      batch.map(async (raw) => {
        const full = join(raw.dir, raw.name);
        const st = await lstat(full, { bigint: true }).catch(() => undefined);
        return { ...raw, full, st };
      }),
    );
    if (this.closed) return;
    // Paths that appeared in this batch, by inode: the destinations of moves.
    const appeared = new Map<bigint, string>();
    for (const it of items) {
      if (it.type === 'rename' && it.st && this.known.get(it.full)?.ino !== it.st.ino) appeared.set(it.st.ino, it.full);
    }
    for (const it of items) {
      if (this.closed) return;
      const { full, st } = it;
      const prev = this.known.get(full);
      let ev: EventType;
      if (it.type === 'rename') {
        if (st) {
          // The same entry still there: a directory's attributes changed (IN_ATTRIB on a dir).
          if (prev?.ino === st.ino) ev = EventType.CHMOD;
          else {
            ev = EventType.CREATE;
            if (this.recursive && st.isDirectory() && full !== this.root) {
              // Reported before what it already holds.
              this.known.set(full, { ino: st.ino, mode: st.mode });
              await this.emit(full, st, ev);
              await this.addDir(full, false, true);
              continue;
            }
          }
          this.known.set(full, { ino: st.ino, mode: st.mode });
        } else {
          // A watched directory that goes away makes its own watch report its own name: the
          // parent's watch reports the removal itself.
          if (it.name === basename(it.dir) && it.dir !== this.root && !(await lstat(it.dir).then(() => true, () => false))) continue;
          const to = prev ? appeared.get(prev.ino) : undefined;
          ev = to !== undefined && to !== full ? EventType.RENAME : EventType.REMOVE;
          this.known.delete(full);
          if (this.watchers.has(full)) this.removeDirTree(full);
          if (full === this.root || !(await lstat(this.root).then(() => true, () => false))) {
            this.onFatal(Object.assign(new Error(`watched directory '${this.root}' was removed`), { code: 'ENOENT' }));
            return;
          }
        }
      } else {
        if (!st) continue; // changed then deleted: the delete event follows
        ev = prev !== undefined && prev.mode !== st.mode ? EventType.CHMOD : EventType.WRITE;
        this.known.set(full, { ino: st.ino, mode: st.mode });
      }
      if (this.known.size > 100_000) this.known.clear();
      await this.emit(full, st, ev);
    }
  }

  private async emit(full: string, st: BigIntStats | undefined, ev: EventType): Promise<void> {
    const out: FsEventInit = { name: relative(this.root, full), type: ev };
    if (this.includeEntry && st && ev !== EventType.REMOVE && ev !== EventType.RENAME) out.entry = await entryInfo(full, st).catch(() => undefined);
    if (!this.closed) this.onEvent(out);
  }
}
