import { watch, type FSWatcher } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { EventType, type FilesystemEventSchema } from '@sandlot/envd-proto';
import { entryInfo } from './entry.js';

export type FsEventInit = MessageInitShape<typeof FilesystemEventSchema>;

const MAX_WATCHED_DIRS = 8192;

export class WatchLimitError extends Error {}

/**
 * Watches a directory (optionally recursively) with one inotify watch per directory
 * (node's fs.watch), translating events to envd's CREATE/WRITE/REMOVE/CHMOD with names
 * relative to the watched root.
 */
export class DirWatcher {
  private watchers = new Map<string, FSWatcher>();
  private modes = new Map<string, bigint>();
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
    this.watchers.clear();
    this.modes.clear();
  }

  private async addDir(dir: string, isRoot = false): Promise<void> {
    if (this.closed || this.watchers.has(dir)) return;
    if (this.watchers.size >= MAX_WATCHED_DIRS) {
      const err = new WatchLimitError(`too many directories to watch (limit ${MAX_WATCHED_DIRS})`);
      if (isRoot) throw err;
      this.onFatal(err);
      return;
    }
    let w: FSWatcher;
    try {
      w = watch(dir, { persistent: false }, (type, filename) => {
        if (!filename) return;
        const name = typeof filename === 'string' ? filename : String(filename);
        this.tail = this.tail.then(() => this.handle(dir, type, name)).catch(() => {});
      });
    } catch (err) {
      if (isRoot) throw err;
      return; // subdir vanished or unreadable: skip it
    }
    w.on('error', (err) => {
      w.close();
      this.watchers.delete(dir);
      if (dir === this.root) this.onFatal(err);
    });
    this.watchers.set(dir, w);
    if (!this.recursive) return;
    let children;
    try {
      children = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      if (isRoot) throw err;
      return;
    }
    for (const c of children) {
      if (c.isDirectory()) await this.addDir(join(dir, c.name));
    }
  }

  private removeDirTree(dir: string): void {
    const prefix = dir + sep;
    for (const [d, w] of this.watchers) {
      if (d === dir || d.startsWith(prefix)) {
        w.close();
        this.watchers.delete(d);
      }
    }
  }

  private async handle(dir: string, type: string, name: string): Promise<void> {
    if (this.closed) return;
    const full = join(dir, name);
    const rel = relative(this.root, full);
    let st;
    try {
      st = await lstat(full, { bigint: true });
    } catch {
      st = undefined;
    }
    if (this.closed) return;
    let ev: EventType;
    if (type === 'rename') {
      if (st) {
        ev = EventType.CREATE;
        this.modes.set(full, st.mode);
        if (this.recursive && st.isDirectory() && full !== this.root) await this.addDir(full);
      } else {
        ev = EventType.REMOVE;
        this.modes.delete(full);
        if (this.watchers.has(full)) this.removeDirTree(full);
        if (full === this.root || !(await lstat(this.root).then(() => true, () => false))) {
          this.onFatal(Object.assign(new Error(`watched directory '${this.root}' was removed`), { code: 'ENOENT' }));
          return;
        }
      }
    } else {
      if (!st) return; // changed then deleted: the delete event follows
      const prev = this.modes.get(full);
      ev = prev !== undefined && prev !== st.mode ? EventType.CHMOD : EventType.WRITE;
      this.modes.set(full, st.mode);
    }
    if (this.modes.size > 100_000) this.modes.clear();
    const out: FsEventInit = { name: rel, type: ev };
    if (this.includeEntry && st) {
      try {
        out.entry = await entryInfo(full, st);
      } catch {
        /* vanished meanwhile */
      }
    }
    if (!this.closed) this.onEvent(out);
  }
}
