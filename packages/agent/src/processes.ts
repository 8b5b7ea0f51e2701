import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, statSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import type { ProcessConfigSchema, ProcessEventSchema, ProcessSelector, StartRequest } from '@sandlot/envd-proto';
import { Channel } from './channel.js';
import { config, listenFd } from './config.js';
import { toConnectError } from './errors.js';
import { baseDir } from './identity.js';
import { logError } from './log.js';
import { resolvePath } from './paths.js';
import { endFromExit, type EndInit } from './signals.js';
import { supplementaryGroups, type UserInfo } from './users.js';

export type ProcEvent = MessageInitShape<typeof ProcessEventSchema>;
type ConfigInit = MessageInitShape<typeof ProcessConfigSchema>;

/** Pause a process's output while any live stream has more than HIGH bytes queued; resume under LOW. */
const HIGH_WATER = 8 << 20;
const LOW_WATER = 1 << 20;
/** How long an exited process stays connectable (start+end). */
const KEEP_ENDED_MS = 30_000;
/** After the main process exits, wait at most this long for its stdout/stderr to drain. */
const DRAIN_AFTER_EXIT_MS = 100;

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface Subscriber {
  ch: Channel<ProcEvent>;
  bytes: number;
}

// Minimal structural type of node-pty's IPty (loaded lazily).
interface Pty {
  pid: number;
  write(data: string | Buffer): void;
  resize(cols: number, rows: number): void;
  pause(): void;
  resume(): void;
  onData(cb: (d: Buffer | string) => void): unknown;
  onExit(cb: (e: { exitCode: number; signal?: number }) => void): unknown;
}
interface PtyModule {
  spawn(file: string, args: string[], opts: Record<string, unknown>): Pty;
}

export class ManagedProcess {
  readonly subs = new Set<Subscriber>();
  end: EndInit | undefined;
  child: ChildProcess | undefined;
  pty: Pty | undefined;
  stdinOpen = false;
  paused = false;
  private deadline: NodeJS.Timeout | undefined;

  constructor(
    readonly pid: number,
    readonly tag: string | undefined,
    readonly config: ConfigInit,
  ) {}

  get isPty(): boolean {
    return this.pty !== undefined;
  }

  subscribe(): Subscriber {
    const sub: Subscriber = { ch: new Channel<ProcEvent>(), bytes: 0 };
    sub.ch.push({ event: { case: 'start', value: { pid: this.pid } } });
    if (this.end) {
      sub.ch.push({ event: { case: 'end', value: this.end } });
      sub.ch.close();
    } else {
      this.subs.add(sub);
    }
    return sub;
  }

  unsubscribe(sub: Subscriber): void {
    this.subs.delete(sub);
    this.maybeResume();
  }

  /** Called by a stream after it handed `n` output bytes to the transport. */
  consumed(sub: Subscriber, n: number): void {
    sub.bytes -= n;
    if (this.paused && sub.bytes < LOW_WATER) this.maybeResume();
  }

  emitData(kind: 'stdout' | 'stderr' | 'pty', data: Buffer): void {
    let over = false;
    for (const sub of this.subs) {
      sub.bytes += data.length;
      sub.ch.push({ event: { case: 'data', value: { output: { case: kind, value: data } } } });
      if (sub.bytes > HIGH_WATER) over = true;
    }
    if (over && !this.paused) {
      this.paused = true;
      this.child?.stdout?.pause();
      this.child?.stderr?.pause();
      this.pty?.pause();
    }
  }

  private maybeResume(): void {
    if (!this.paused) return;
    for (const s of this.subs) if (s.bytes >= LOW_WATER) return;
    this.paused = false;
    this.child?.stdout?.resume();
    this.child?.stderr?.resume();
    this.pty?.resume();
  }

  finish(end: EndInit): void {
    if (this.end) return;
    this.end = end;
    if (this.deadline) clearTimeout(this.deadline);
    for (const ended of this.endWaiters.splice(0)) ended();
    this.stdinOpen = false;
    for (const sub of this.subs) {
      sub.ch.push({ event: { case: 'end', value: end } });
      sub.ch.close();
    }
    this.subs.clear();
    setTimeout(() => {
      if (procs.get(this.pid) === this) procs.delete(this.pid);
    }, KEEP_ENDED_MS).unref();
  }

  /** Whether it was killed because its start request's deadline passed. */
  deadlineHit = false;
  private readonly endWaiters: (() => void)[] = [];

  /**
   * The start request's deadline, as the process's own timer. The request's Connect context has a
   * timer of its own for the same deadline, set a spawn apart: either may fire first, and whichever
   * does kills (killedForDeadline here, killForDeadline from the request's stream).
   */
  setDeadline(ms: number): void {
    this.deadline = setTimeout(() => this.killedForDeadline(), ms);
    this.deadline.unref();
  }

  /** Kills it (the whole group) because its deadline passed. */
  killedForDeadline(): void {
    if (this.end) return;
    this.deadlineHit = true;
    this.signal('SIGKILL');
  }

  /**
   * Kills it for its deadline and resolves once it has ended (reaped: gone, not a zombie), or after
   * `maxWaitMs`: a client told "deadline exceeded" must not find the process still there.
   */
  async killForDeadline(maxWaitMs: number): Promise<void> {
    this.killedForDeadline();
    if (this.end) return;
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      this.endWaiters.push(resolve);
      timer = setTimeout(resolve, maxWaitMs);
    });
    clearTimeout(timer);
  }

  /** Signals the whole process group (processes are group leaders), falling back to the pid. */
  signal(sig: NodeJS.Signals): void {
    if (this.end) return;
    try {
      process.kill(-this.pid, sig);
    } catch {
      try {
        process.kill(this.pid, sig);
      } catch {
        /* already gone */
      }
    }
  }

  writeInput(data: Uint8Array): void {
    if (this.end) throw new ConnectError(`process ${this.pid} has already exited`, Code.NotFound);
    if (this.pty) {
      this.pty.write(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
      return;
    }
    const stdin = this.child?.stdin;
    if (!this.stdinOpen || !stdin || stdin.destroyed || stdin.writableEnded) {
      throw new ConnectError(`stdin of process ${this.pid} is not open (start it with stdin enabled)`, Code.FailedPrecondition);
    }
    stdin.write(Buffer.from(data));
  }

  closeStdin(): void {
    if (this.end) throw new ConnectError(`process ${this.pid} has already exited`, Code.NotFound);
    if (this.pty) throw new ConnectError('cannot close stdin of a PTY process; send EOT (\\x04) as input instead', Code.InvalidArgument);
    this.stdinOpen = false;
    this.child?.stdin?.end();
  }
}

const procs = new Map<number, ManagedProcess>();

export function listProcesses(): ManagedProcess[] {
  return [...procs.values()].filter((p) => !p.end);
}

export function findProcess(sel: ProcessSelector | undefined, includeEnded = false): ManagedProcess {
  const s = sel?.selector;
  let found: ManagedProcess | undefined;
  if (s?.case === 'pid') {
    found = procs.get(s.value);
  } else if (s?.case === 'tag') {
    for (const p of procs.values()) {
      if (p.tag === s.value && (!found || (found.end && !p.end))) found = p;
    }
  } else {
    throw new ConnectError('process selector (pid or tag) is required', Code.InvalidArgument);
  }
  if (!found || (found.end && !includeEnded)) {
    const what = s.case === 'pid' ? `pid ${s.value}` : `tag '${s.value}'`;
    throw new ConnectError(`process with ${what} not found`, Code.NotFound);
  }
  return found;
}

function validEnvName(k: string): boolean {
  return k.length > 0 && !k.includes('=') && !k.includes('\0');
}

export function baseEnv(user: UserInfo): Record<string, string> {
  return {
    PATH: DEFAULT_PATH,
    HOME: user.home,
    USER: user.name,
    LOGNAME: user.name,
    SHELL: isFile(BASH) || !isFile(SH) ? BASH : SH,
    ...config.envVars,
  };
}

let ptyModule: Promise<PtyModule> | undefined;
function loadPty(): Promise<PtyModule> {
  ptyModule ??= import('node-pty').then((m: unknown) => {
    const mod = m as { default?: PtyModule } & PtyModule;
    return typeof mod.spawn === 'function' ? mod : (mod.default as PtyModule);
  });
  ptyModule.catch(() => (ptyModule = undefined));
  return ptyModule;
}

/**
 * The agent's helper (packages/agent/native/sandlot-exec.c), beside the bundle on the agent's own
 * image: static, so it runs in any image. Every process the agent starts is exec'd through it.
 */
const HELPER = process.env.SANDLOT_AGENT_EXEC_HELPER || fileURLToPath(new URL('sandlot-exec', import.meta.url));
let hasHelper: boolean | undefined;
function helper(): string {
  hasHelper ??= isFile(HELPER);
  if (!hasHelper) throw new ConnectError(`the agent's helper ${HELPER} is missing: build the agent again (npm run build)`, Code.Unavailable);
  return HELPER;
}

const BASH = '/bin/bash';
const SH = '/bin/sh';

/**
 * E2B's SDKs run every command as `/bin/bash -l -c CMD` and every terminal as `/bin/bash -i -l`, and
 * their users cannot change that. In an image without bash (Alpine, busybox) they run on /bin/sh,
 * which takes the same options: a command that needs bash fails there with the shell's own error.
 * Without /bin/sh either, the request fails and says so.
 */
function shellFor(cmd: string, path: string | undefined, cwd: string): string {
  if (cmd !== BASH && cmd !== 'bash') return cmd;
  if (findCommand(cmd, path, cwd)) return cmd;
  if (isFile(SH)) return SH;
  throw new ConnectError(`failed to start process '${cmd}': not found (this sandbox's image has neither bash nor /bin/sh)`, Code.InvalidArgument);
}

export async function startProcess(req: StartRequest, user: UserInfo, timeoutMs: number | undefined): Promise<ManagedProcess> {
  const pc = req.process;
  if (!pc || !pc.cmd) throw new ConnectError('process.cmd is required', Code.InvalidArgument);
  if (pc.cmd.includes('\0') || pc.args.some((a) => a.includes('\0'))) {
    throw new ConnectError('cmd and args must not contain NUL bytes', Code.InvalidArgument);
  }
  const env = baseEnv(user);
  for (const [k, v] of Object.entries(pc.envs)) {
    if (!validEnvName(k) || v.includes('\0')) throw new ConnectError(`invalid environment variable '${k}'`, Code.InvalidArgument);
    env[k] = v;
  }
  const exe = helper();

  let cwd: string;
  if (pc.cwd) {
    try {
      cwd = resolvePath(pc.cwd, user, baseDir(user));
    } catch (err) {
      throw toConnectError(err);
    }
    const st = await stat(cwd).catch(() => undefined);
    if (!st) throw new ConnectError(`cwd '${cwd}' does not exist`, Code.InvalidArgument);
    if (!st.isDirectory()) throw new ConnectError(`cwd '${cwd}' is not a directory`, Code.InvalidArgument);
  } else {
    cwd = baseDir(user);
    const st = await stat(cwd).catch(() => undefined);
    if (!st?.isDirectory()) cwd = '/';
  }

  const myUid = process.getuid?.() ?? 0;
  const switchUser = myUid === 0 || myUid !== user.uid;
  const cfg: ConfigInit = { cmd: pc.cmd, args: [...pc.args], envs: { ...pc.envs }, cwd };

  const cmd = shellFor(pc.cmd, env.PATH, cwd);
  let proc: ManagedProcess;
  if (req.pty) {
    const cols = req.pty.size?.cols || 80;
    const rows = req.pty.size?.rows || 24;
    if (cols > 10000 || rows > 10000) throw new ConnectError('pty size is too large', Code.InvalidArgument);
    env.TERM ??= 'xterm-256color';
    let pty: PtyModule;
    try {
      pty = await loadPty();
    } catch (err) {
      logError('cannot load node-pty', err);
      throw new ConnectError(`PTY support is unavailable: ${(err as Error).message}`, Code.Unavailable);
    }
    const opts: Record<string, unknown> = { name: env.TERM, cols, rows, cwd, env, encoding: null };
    // node-pty's forkpty cannot be told to cover the agent's listening socket: the helper closes it.
    const helperArgs = [...oomMark(cmd, env.PATH, cwd), ...(listenFd === undefined ? [] : ['--close-fd', String(listenFd)])];
    if (switchUser && user.uid !== myUid) {
      if (myUid === 0) {
        // The helper also sets the user's supplementary groups, as setpriv --init-groups did
        // (node-pty's own uid/gid would keep root's).
        helperArgs.push('--user', String(user.uid), String(user.gid), supplementaryGroups(user).join(',') || '-');
      } else {
        opts.uid = user.uid;
        opts.gid = user.gid;
      }
    }
    let term: Pty;
    try {
      term = pty.spawn(exe, [...helperArgs, '--', cmd, ...pc.args], opts);
    } catch (err) {
      throw new ConnectError(`failed to start process '${pc.cmd}': ${(err as Error).message}`, Code.Internal);
    }
    proc = new ManagedProcess(term.pid, req.tag, cfg);
    proc.pty = term;
    proc.stdinOpen = true;
    term.onData((d) => proc.emitData('pty', typeof d === 'string' ? Buffer.from(d) : d));
    term.onExit(({ exitCode, signal }) => {
      const sigName = signal ? Object.entries(osConstants.signals).find(([, n]) => n === signal)?.[0] : undefined;
      // let the last output chunk reach subscribers first
      setImmediate(() => proc.finish(signal ? endFromExit(null, sigName ?? `SIG${signal}`) : endFromExit(exitCode, null)));
    });
  } else {
    const stdinEnabled = req.stdin !== false;
    // libuv switches to the user (no supplementary groups) before it execs the helper, which marks
    // the process for the OOM killer and execs the command.
    const args = [...oomMark(cmd, env.PATH, cwd), '--', cmd, ...pc.args];
    let child: ChildProcess;
    try {
      child = spawn(exe, args, {
        cwd,
        env,
        uid: switchUser ? user.uid : undefined,
        gid: switchUser ? user.gid : undefined,
        detached: true,
        stdio: [stdinEnabled ? 'pipe' : 'ignore', 'pipe', 'pipe', ...listenFdCover()],
      });
    } catch (err) {
      throw new ConnectError(`failed to start process '${pc.cmd}': ${(err as Error).message}`, Code.Internal);
    }
    if (child.pid === undefined) {
      const err = await new Promise<Error>((resolve) => child.once('error', resolve));
      throw new ConnectError(`failed to start process '${pc.cmd}': ${err.message}`, Code.Internal);
    }
    child.on('error', (err) => logError(`process ${child.pid}`, err));
    proc = new ManagedProcess(child.pid, req.tag, cfg);
    proc.child = child;
    proc.stdinOpen = stdinEnabled;
    child.stdin?.on('error', () => {
      proc.stdinOpen = false;
    });
    child.stdout!.on('data', (d: Buffer) => proc.emitData('stdout', d));
    child.stderr!.on('data', (d: Buffer) => proc.emitData('stderr', d));
    let exitInfo: [number | null, NodeJS.Signals | null] | undefined;
    const done = () => {
      if (exitInfo) proc.finish(endFromExit(exitInfo[0], exitInfo[1]));
    };
    child.on('exit', (code, sig) => {
      exitInfo = [code, sig];
      // A background grandchild may keep the pipes open: stop waiting for them after a short grace.
      const grace = () => {
        if (proc.end) return;
        if (proc.paused) {
          setTimeout(grace, DRAIN_AFTER_EXIT_MS).unref(); // a slow reader, not a grandchild: keep draining
          return;
        }
        child.stdout?.destroy();
        child.stderr?.destroy();
        done();
      };
      setTimeout(grace, DRAIN_AFTER_EXIT_MS).unref();
    });
    child.on('close', (code, sig) => {
      exitInfo ??= [code, sig];
      done();
    });
  }
  procs.set(proc.pid, proc);
  if (timeoutMs && timeoutMs > 0) proc.setDeadline(timeoutMs);
  return proc;
}

/**
 * What the agent starts is the OOM killer's first choice, never the agent itself: a sandbox that
 * runs out of memory loses the process that ate it and keeps its agent. Raising oom_score_adj needs
 * no privilege (lowering the agent's would need CAP_SYS_RESOURCE on the host, which not every host
 * grants); children inherit the value.
 *
 * The mark is set by the helper in the new process before it execs the command (as util-linux's
 * choom did), so nothing the command forks can escape it. Writing it from the agent after the spawn
 * left a window: on a loaded host a shell forked its children before the write, and those unmarked
 * children outranked the agent only by size, so the agent was killed in their place.
 */
const USER_PROCESS_OOM_SCORE_ADJ = '500';

// The agent's listening socket (config.listenFd) is inherited without close-on-exec, which Node cannot
// set; a process that kept it could accept the daemon's connections in the agent's place. Children
// started by child_process get /dev/null over that fd; node-pty's forkpty cannot be told, so a
// terminal's helper closes it before the exec.
let devNull: number | undefined;
function listenFdCover(): number[] {
  if (listenFd === undefined) return [];
  devNull ??= openSync('/dev/null', 'r');
  return [...Array<number>(listenFd - 3).fill(devNull), devNull];
}

/** The helper's options for the OOM mark, once the command is known to exist. */
function oomMark(cmd: string, path: string | undefined, cwd: string): string[] {
  // Unwrapped, a missing command fails the spawn; wrapped, the helper would start and exit 127. Look first.
  if (!findCommand(cmd, path, cwd)) throw new ConnectError(`failed to start process '${cmd}': not found`, Code.InvalidArgument);
  return ['--oom-score-adj', USER_PROCESS_OOM_SCORE_ADJ];
}

const isFile = (p: string) => {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
};

/** Whether execvp would find `cmd` from `cwd`: a path as given, a bare name in one of PATH's directories. */
function findCommand(cmd: string, path = DEFAULT_PATH, cwd: string): boolean {
  if (cmd.includes('/')) return isFile(resolve(cwd, cmd));
  return path.split(':').some((dir) => isFile(resolve(cwd, dir || '.', cmd)));
}
