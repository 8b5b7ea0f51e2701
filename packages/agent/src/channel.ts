/** An unbounded async queue with an abortable iterator. */
export class Channel<T> {
  private items: T[] = [];
  private head = 0;
  private closed = false;
  private error: unknown;
  private wake: (() => void) | undefined;

  push(item: T): void {
    if (this.closed) return;
    this.items.push(item);
    this.notify();
  }

  close(error?: unknown): void {
    if (this.closed) return;
    this.closed = true;
    this.error = error;
    this.notify();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Items pushed and not yet taken. */
  get size(): number {
    return this.items.length - this.head;
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  /** Yields items until closed (throws the close error, if any) or until `signal` aborts (returns quietly). */
  async *iterate(signal?: AbortSignal): AsyncGenerator<T> {
    const onAbort = () => this.notify();
    signal?.addEventListener('abort', onAbort);
    try {
      for (;;) {
        while (this.head < this.items.length) {
          if (signal?.aborted) return;
          const item = this.items[this.head];
          this.items[this.head++] = undefined as T;
          if (this.head > 1024 && this.head * 2 > this.items.length) {
            this.items = this.items.slice(this.head);
            this.head = 0;
          }
          yield item;
        }
        if (this.closed) {
          if (this.error !== undefined) throw this.error;
          return;
        }
        if (signal?.aborted) return;
        await new Promise<void>((r) => (this.wake = r));
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }
}

/** Parses the Keepalive-Ping-Interval header (seconds); undefined when absent/invalid. */
export function keepaliveMs(headers: Headers): number | undefined {
  const v = headers.get('keepalive-ping-interval');
  if (!v) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) return undefined;
  return Math.max(100, Math.min(n * 1000, 24 * 3600 * 1000));
}
