import { lstat, readdir, rename, rm, stat } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import { dirname, join } from 'node:path';
import { randomUUID } from 'node:crypto';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { Code, ConnectError, type ServiceImpl } from '@connectrpc/connect';
import { Filesystem, type WatchDirResponseSchema } from '@sandlot/envd-proto';
import { Channel, keepaliveMs } from './channel.js';
import { entryInfo, type EntryInit } from './entry.js';
import { deadlineError, toConnectError } from './errors.js';
import { copyTree, ensureDir } from './fsutil.js';
import { baseDir, requestUser } from './identity.js';
import { resolvePath } from './paths.js';
import { ownerNames, type UserInfo } from './users.js';
import { eventCost, overflowError, QueueBudget, takeWatchSlot } from './watch-limits.js';
import { DirWatcher, WatchLimitError, type FsEventInit } from './watcher.js';

type WatchMsg = MessageInitShape<typeof WatchDirResponseSchema>;

const MAX_LIST_ENTRIES = 100_000;

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
  budget: QueueBudget;
  free: () => void;
  error?: ConnectError;
  lastPoll: number;
}
const polled = new Map<string, PolledWatcher>();
/** Polling watchers nobody polled for this long are removed. */
const POLLED_WATCHER_IDLE_MS = 10 * 60_000;
let sweeper: NodeJS.Timeout | undefined;
function removePolled(id: string, w: PolledWatcher): void {
  w.watcher.close();
  w.budget.release();
  w.free();
  polled.delete(id);
}
function sweepPolled(): void {
  const now = Date.now();
  for (const [id, w] of polled) {
    if (now - w.lastPoll > POLLED_WATCHER_IDLE_MS) removePolled(id, w);
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
    const free = takeWatchSlot();
    const budget = new QueueBudget();
    const ch = new Channel<{ msg: WatchMsg; cost: number }>();
    let watcher: DirWatcher | undefined;
    let timer: NodeJS.Timeout | undefined;
    try {
      watcher = await startWatcher(
        path,
        req.recursive,
        req.includeEntry,
        (e) => {
          const cost = eventCost(e);
          if (budget.take(cost)) ch.push({ msg: { event: { case: 'filesystem', value: e } }, cost });
          else {
            ch.close(overflowError(path)); // after what is queued
            watcher?.close();
          }
        },
        (err) => ch.close(toConnectError(err, path)),
      );
      const ka = keepaliveMs(ctx.requestHeader);
      // Only on a stream with nothing queued: that is when a keepalive is due, and they never pile up.
      if (ka) timer = setInterval(() => ch.size === 0 && ch.push({ msg: { event: { case: 'keepalive', value: {} } }, cost: 0 }), ka);
      yield { event: { case: 'start', value: {} } };
      for await (const { msg, cost } of ch.iterate(ctx.signal)) {
        budget.give(cost);
        yield msg;
      }
      const late = deadlineError(ctx.signal);
      if (late) throw late;
    } finally {
      if (timer) clearInterval(timer);
      watcher?.close();
      budget.release();
      free();
    }
  },

  async createWatcher(req, ctx) {
    const user = requestUser(ctx);
    const path = resolveFor(req.path, user);
    const id = randomUUID();
    const free = takeWatchSlot();
    const entry: PolledWatcher = { events: [], budget: new QueueBudget(), free, watcher: undefined as unknown as DirWatcher, lastPoll: Date.now() };
    try {
      entry.watcher = await startWatcher(
        path,
        req.recursive,
        req.includeEntry,
        (e) => {
          if (entry.error) return;
          if (entry.budget.take(eventCost(e))) entry.events.push(e);
          else {
            // Reported after the events already queued; the watcher stops here.
            entry.error = overflowError(path);
            entry.watcher?.close();
          }
        },
        (err) => {
          entry.error ??= toConnectError(err, path);
        },
      );
    } catch (err) {
      entry.budget.release();
      free();
      throw err;
    }
    polled.set(id, entry);
    sweeper ??= setInterval(sweepPolled, 60_000).unref();
    return { watcherId: id };
  },

  async getWatcherEvents(req) {
    const w = polled.get(req.watcherId);
    if (!w) throw new ConnectError(`watcher '${req.watcherId}' not found`, Code.NotFound);
    const events = w.events;
    w.events = [];
    w.budget.release();
    w.lastPoll = Date.now();
    if (w.error && events.length === 0) {
      removePolled(req.watcherId, w);
      throw w.error;
    }
    return { events };
  },

  async removeWatcher(req) {
    const w = polled.get(req.watcherId);
    if (!w) throw new ConnectError(`watcher '${req.watcherId}' not found`, Code.NotFound);
    removePolled(req.watcherId, w);
    return {};
  },
};
