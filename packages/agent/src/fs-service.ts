import { lstat, readdir, rename, rm, stat } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import { dirname, join } from 'node:path';
import { randomUUID } from 'node:crypto';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { Code, ConnectError, type ServiceImpl } from '@connectrpc/connect';
import { Filesystem, type WatchDirResponseSchema } from '@sandlot/envd-proto';
import { Channel, keepaliveMs } from './channel.js';
import { entryInfo, type EntryInit } from './entry.js';
import { toConnectError } from './errors.js';
import { copyTree, ensureDir } from './fsutil.js';
import { baseDir, requestUser } from './identity.js';
import { resolvePath } from './paths.js';
import { ownerNames, type UserInfo } from './users.js';
import { DirWatcher, WatchLimitError, type FsEventInit } from './watcher.js';

type WatchMsg = MessageInitShape<typeof WatchDirResponseSchema>;

const MAX_LIST_ENTRIES = 100_000;
const MAX_BUFFERED_WATCH_EVENTS = 10_000;

function resolveFor(path: string, user: UserInfo): string {
  if (typeof path !== 'string' || path === '') throw new ConnectError('path is required', Code.InvalidArgument);
  try {
    return resolvePath(path, user, baseDir(user));
  } catch (err) {
    throw toConnectError(err);
  }
}

async function dirOrThrow(path: string): Promise<void> {
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    throw toConnectError(err, path);
  }
  if (!st.isDirectory()) throw new ConnectError(`path '${path}' is not a directory`, Code.InvalidArgument);
}

async function startWatcher(
  path: string,
  recursive: boolean,
  includeEntry: boolean,
  onEvent: (e: FsEventInit) => void,
  onFatal: (e: Error) => void,
): Promise<DirWatcher> {
  await dirOrThrow(path);
  const w = new DirWatcher(path, recursive, includeEntry, onEvent, onFatal);
  try {
    await w.start();
  } catch (err) {
    w.close();
    if (err instanceof WatchLimitError) throw new ConnectError(err.message, Code.ResourceExhausted);
    throw toConnectError(err, path);
  }
  return w;
}

interface PolledWatcher {
  watcher: DirWatcher;
  events: FsEventInit[];
  error?: ConnectError;
  lastPoll: number;
}
const polled = new Map<string, PolledWatcher>();
/** Polling watchers nobody polled for this long are removed. */
const POLLED_WATCHER_IDLE_MS = 10 * 60_000;
let sweeper: NodeJS.Timeout | undefined;
function sweepPolled(): void {
  const now = Date.now();
  for (const [id, w] of polled) {
    if (now - w.lastPoll > POLLED_WATCHER_IDLE_MS) {
      w.watcher.close();
      polled.delete(id);
    }
  }
  if (polled.size === 0 && sweeper) {
    clearInterval(sweeper);
    sweeper = undefined;
  }
}

export const filesystemService: ServiceImpl<typeof Filesystem> = {
  async stat(req, ctx) {
    const user = requestUser(ctx);
    const path = resolveFor(req.path, user);
    try {
      return { entry: await entryInfo(path) };
    } catch (err) {
      throw toConnectError(err, path);
    }
  },

  async makeDir(req, ctx) {
    const user = requestUser(ctx);
    const path = resolveFor(req.path, user);
    let existing: BigIntStats | undefined;
    try {
      existing = await stat(path, { bigint: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw toConnectError(err, path);
    }
    if (existing) {
      if (existing.isDirectory()) throw new ConnectError(`directory '${path}' already exists`, Code.AlreadyExists);
      throw new ConnectError(`path '${path}' already exists but is not a directory`, Code.InvalidArgument);
    }
    try {
      await ensureDir(path, user.uid, user.gid);
      return { entry: await entryInfo(path) };
    } catch (err) {
      throw toConnectError(err, path);
    }
  },

  async move(req, ctx) {
    const user = requestUser(ctx);
    const source = resolveFor(req.source, user);
    const destination = resolveFor(req.destination, user);
    try {
      await lstat(source);
    } catch (err) {
      throw toConnectError(err, source);
    }
    try {
      await ensureDir(dirname(destination), user.uid, user.gid);
      try {
        await rename(source, destination);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
        await copyTree(source, destination);
        await rm(source, { recursive: true, force: true });
      }
      return { entry: await entryInfo(destination) };
    } catch (err) {
      throw toConnectError(err, destination);
    }
  },

  async listDir(req, ctx) {
    const user = requestUser(ctx);
    const path = resolveFor(req.path, user);
    const depth = req.depth || 1;
    await dirOrThrow(path); // follows a symlinked root
    const names = ownerNames();
    const entries: EntryInit[] = [];
    const walk = async (dir: string, shown: string, level: number): Promise<void> => {
      let children;
      try {
        children = await readdir(dir);
      } catch (err) {
        if (level === 1) throw toConnectError(err, shown);
        return; // unreadable or vanished subdir
      }
      children.sort();
      for (const name of children) {
        if (entries.length >= MAX_LIST_ENTRIES) {
          throw new ConnectError(`directory listing exceeds ${MAX_LIST_ENTRIES} entries; use a smaller depth`, Code.ResourceExhausted);
        }
        const real = join(dir, name);
        let st: BigIntStats;
        try {
          st = await lstat(real, { bigint: true });
        } catch {
          continue;
        }
        const e = await entryInfo(real, st, names);
        e.path = join(shown, name);
        entries.push(e);
        if (level < depth && st.isDirectory()) await walk(real, join(shown, name), level + 1);
      }
    };
    await walk(path, path, 1);
    return { entries };
  },

  async remove(req, ctx) {
    const user = requestUser(ctx);
    const path = resolveFor(req.path, user);
    try {
      await rm(path, { recursive: true, force: true });
      return {};
    } catch (err) {
      throw toConnectError(err, path);
    }
  },

  async *watchDir(req, ctx) {
    const user = requestUser(ctx);
    const path = resolveFor(req.path, user);
    const ch = new Channel<WatchMsg>();
    const watcher = await startWatcher(
      path,
      req.recursive,
      req.includeEntry,
      (e) => ch.push({ event: { case: 'filesystem', value: e } }),
      (err) => ch.close(toConnectError(err, path)),
    );
    const ka = keepaliveMs(ctx.requestHeader);
    const timer = ka ? setInterval(() => ch.push({ event: { case: 'keepalive', value: {} } }), ka) : undefined;
    try {
      yield { event: { case: 'start', value: {} } };
      yield* ch.iterate(ctx.signal);
    } finally {
      if (timer) clearInterval(timer);
      watcher.close();
    }
  },

  async createWatcher(req, ctx) {
    const user = requestUser(ctx);
    const path = resolveFor(req.path, user);
    const id = randomUUID();
    const entry: PolledWatcher = { events: [], watcher: undefined as unknown as DirWatcher, lastPoll: Date.now() };
    entry.watcher = await startWatcher(
      path,
      req.recursive,
      req.includeEntry,
      (e) => {
        if (entry.events.length < MAX_BUFFERED_WATCH_EVENTS) entry.events.push(e);
      },
      (err) => {
        entry.error = toConnectError(err, path);
      },
    );
    polled.set(id, entry);
    sweeper ??= setInterval(sweepPolled, 60_000).unref();
    return { watcherId: id };
  },

  async getWatcherEvents(req) {
    const w = polled.get(req.watcherId);
    if (!w) throw new ConnectError(`watcher '${req.watcherId}' not found`, Code.NotFound);
    const events = w.events;
    w.events = [];
    w.lastPoll = Date.now();
    if (w.error && events.length === 0) {
      w.watcher.close();
      polled.delete(req.watcherId);
      throw w.error;
    }
    return { events };
  },

  async removeWatcher(req) {
    const w = polled.get(req.watcherId);
    if (!w) throw new ConnectError(`watcher '${req.watcherId}' not found`, Code.NotFound);
    w.watcher.close();
    polled.delete(req.watcherId);
    return {};
  },
};
