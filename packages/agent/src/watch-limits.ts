// Bounds on what watches may hold: how many there are, and what each queues for its client.
import { Code, ConnectError } from '@connectrpc/connect';
import type { FsEventInit } from './watcher.js';

/**
 * Concurrent watches per agent: WatchDir streams and CreateWatcher watchers together. Each one
 * holds an fs.watch handle and an inotify watch per directory, its client's stream or polled
 * entry, and a queue; ten thousand of them ran the agent out of heap. The SDKs open one per
 * watchDir call and a client closes it when done, so 512 at once is far more than any real use,
 * while a client that forgets to close them (or opens them in a loop) is stopped long before the
 * agent's memory is at risk.
 */
export const MAX_WATCHES = 512;

let watches = 0;

/** Takes a watch slot (resource_exhausted when none is left); the function returned frees it, once. */
export function takeWatchSlot(): () => void {
  if (watches >= MAX_WATCHES) {
    throw new ConnectError(
      `too many watches: the sandbox's agent serves at most ${MAX_WATCHES} at once (WatchDir streams and CreateWatcher watchers together); close or remove one first`,
      Code.ResourceExhausted,
    );
  }
  watches++;
  let freed = false;
  return () => {
    if (!freed) watches--;
    freed = true;
  };
}

/**
 * What one watch may queue for a client that reads its stream slowly (or polls rarely), in the
 * approximate heap bytes of eventCost: some 30 000 events (15 000 with their entries), enough for
 * a burst such as an npm install under a recursive watch. A watch past it ends with
 * resource_exhausted rather than losing events silently; the client can watch again.
 */
export const MAX_QUEUED_BYTES_PER_WATCH = 8 << 20;
/** What all watches together may queue: MAX_WATCHES full queues would not fit in a sandbox. */
export const MAX_QUEUED_BYTES_TOTAL = 64 << 20;

let queuedTotal = 0;

/**
 * Approximate heap bytes of a queued event: its objects, plus its strings at two bytes a character
 * (measured on node 20: ~250 bytes for an event with a 25-character name, ~550 with its entry).
 */
export function eventCost(e: FsEventInit): number {
  let n = 200 + 2 * (e.name?.length ?? 0);
  const entry = e.entry;
  if (entry) {
    n += 300 + 2 * ((entry.path?.length ?? 0) + (entry.name?.length ?? 0) + (entry.symlinkTarget?.length ?? 0));
    for (const [k, v] of Object.entries(entry.metadata ?? {})) n += 100 + 2 * (k.length + v.length);
  }
  return n;
}

/** One watch's share of the queue budget. */
export class QueueBudget {
  private queued = 0;

  /** Counts `cost` more queued bytes; false (counting nothing) when the watch or the agent has no room. */
  take(cost: number): boolean {
    if (this.queued + cost > MAX_QUEUED_BYTES_PER_WATCH || queuedTotal + cost > MAX_QUEUED_BYTES_TOTAL) return false;
    this.queued += cost;
    queuedTotal += cost;
    return true;
  }

  /** `cost` bytes left the queue (handed to the client). */
  give(cost: number): void {
    this.queued -= cost;
    queuedTotal -= cost;
  }

  /** The watch is gone: whatever it still queued no longer counts. */
  release(): void {
    queuedTotal -= this.queued;
    this.queued = 0;
  }
}

export function overflowError(path: string): ConnectError {
  return new ConnectError(
    `the watch of '${path}' queued more events than its client read (over ${MAX_QUEUED_BYTES_PER_WATCH >> 20} MiB, or ${MAX_QUEUED_BYTES_TOTAL >> 20} MiB for all watches): it was stopped; read faster or watch again`,
    Code.ResourceExhausted,
  );
}
