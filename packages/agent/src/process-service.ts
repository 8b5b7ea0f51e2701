import { Code, ConnectError, type HandlerContext, type ServiceImpl } from '@connectrpc/connect';
import { Process, Signal } from '@sandlot/envd-proto';
import { keepaliveMs } from './channel.js';
import { deadlineError } from './errors.js';
import { requestUser } from './identity.js';
import { findProcess, listProcesses, startProcess, type ManagedProcess, type ProcEvent, type Subscriber } from './processes.js';

/** How long a stream whose deadline passed waits for its process to be reaped before it ends. */
const DEADLINE_KILL_WAIT_MS = 2000;

/** The shape shared by StartResponse and ConnectResponse. */
type StreamMsg = { event: ProcEvent };

/**
 * Streams a subscriber's events (with keepalives) until the process ends or the client goes away;
 * a stream whose deadline passed (or, for the one that started the process, whose process was
 * killed for it) ends with deadline_exceeded, as envd's does.
 */
async function* pump(proc: ManagedProcess, sub: Subscriber, ctx: HandlerContext, ownsDeadline = false): AsyncGenerator<StreamMsg> {
  const ka = keepaliveMs(ctx.requestHeader);
  // Only on a stream with nothing queued: that is when a keepalive is due, and they never pile up.
  const timer = ka ? setInterval(() => sub.ch.size === 0 && sub.ch.push({ event: { case: 'keepalive', value: {} } }), ka) : undefined;
  try {
    for await (const ev of sub.ch.iterate(ctx.signal)) {
      yield { event: ev };
      if (ev.event?.case === 'data') {
        const out = ev.event.value.output;
        if (out && out.value) proc.consumed(sub, (out.value as Uint8Array).length);
      }
    }
    const late = deadlineError(ctx.signal, ownsDeadline && proc.deadlineHit);
    // The request's deadline timer fired before the process's own: the stream that started the
    // process kills it and ends once it is gone, not while it (or its zombie) is still there.
    if (late && ownsDeadline) await proc.killForDeadline(DEADLINE_KILL_WAIT_MS);
    if (late) throw late;
  } finally {
    if (timer) clearInterval(timer);
    proc.unsubscribe(sub);
  }
}

export const processService: ServiceImpl<typeof Process> = {
  async list() {
    return {
      processes: listProcesses().map((p) => ({ config: p.config, pid: p.pid, tag: p.tag })),
    };
  },

  async *start(req, ctx) {
    const user = requestUser(ctx);
    const proc = await startProcess(req, user, ctx.timeoutMs());
    yield* pump(proc, proc.subscribe(), ctx, true);
  },

  async *connect(req, ctx) {
    const proc = findProcess(req.process, true);
    yield* pump(proc, proc.subscribe(), ctx);
  },

  async update(req) {
    const proc = findProcess(req.process);
    if (req.pty) {
      if (!proc.pty) throw new ConnectError(`process ${proc.pid} is not a PTY`, Code.InvalidArgument);
      const cols = req.pty.size?.cols ?? 0;
      const rows = req.pty.size?.rows ?? 0;
      if (cols < 1 || rows < 1 || cols > 10000 || rows > 10000) {
        throw new ConnectError('pty size must have 1..10000 cols and rows', Code.InvalidArgument);
      }
      try {
        proc.pty.resize(cols, rows);
      } catch (err) {
        throw new ConnectError(`resize failed: ${(err as Error).message}`, Code.Internal);
      }
    }
    return {};
  },

  async sendInput(req) {
    const proc = findProcess(req.process);
    const data = req.input?.input.value;
    if (!data) throw new ConnectError('input (stdin or pty) is required', Code.InvalidArgument);
    proc.writeInput(data);
    return {};
  },

  async streamInput(reqs) {
    let proc: ManagedProcess | undefined;
    for await (const msg of reqs) {
      const ev = msg.event;
      if (ev.case === 'start') {
        proc = findProcess(ev.value.process);
      } else if (ev.case === 'data') {
        if (!proc) throw new ConnectError('the first StreamInput message must be start', Code.InvalidArgument);
        const data = ev.value.input?.input.value;
        if (data) proc.writeInput(data);
      }
    }
    return {};
  },

  async sendSignal(req) {
    const proc = findProcess(req.process);
    if (req.signal === Signal.SIGKILL) proc.signal('SIGKILL');
    else if (req.signal === Signal.SIGTERM) proc.signal('SIGTERM');
    else throw new ConnectError('signal must be SIGKILL or SIGTERM', Code.InvalidArgument);
    return {};
  },

  async closeStdin(req) {
    findProcess(req.process).closeStdin();
    return {};
  },
};
