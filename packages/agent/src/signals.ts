/** Go's syscall.Signal.String() for the signals a process most often dies from (envd's status strings). */
const GO_SIGNAL_NAMES: Record<string, string> = {
  SIGHUP: 'hangup',
  SIGINT: 'interrupt',
  SIGQUIT: 'quit',
  SIGILL: 'illegal instruction',
  SIGTRAP: 'trace/breakpoint trap',
  SIGABRT: 'aborted',
  SIGBUS: 'bus error',
  SIGFPE: 'floating point exception',
  SIGKILL: 'killed',
  SIGUSR1: 'user defined signal 1',
  SIGSEGV: 'segmentation fault',
  SIGUSR2: 'user defined signal 2',
  SIGPIPE: 'broken pipe',
  SIGALRM: 'alarm clock',
  SIGTERM: 'terminated',
  SIGXCPU: 'CPU time limit exceeded',
  SIGXFSZ: 'file size limit exceeded',
  SIGSYS: 'bad system call',
};

export function goSignalName(sig: string): string {
  return GO_SIGNAL_NAMES[sig] ?? sig.replace(/^SIG/, '').toLowerCase();
}

export interface EndInit {
  exitCode: number;
  exited: boolean;
  status: string;
  error?: string;
}

/**
 * envd's end event: `error` is Go's cmd.Wait() error, which is the status string for anything
 * but a clean exit 0 (the e2b SDK's CommandExitError takes its message from it).
 */
export function endFromExit(code: number | null, signal: string | null): EndInit {
  if (code === 0) return { exitCode: 0, exited: true, status: 'exit status 0' };
  const status = code !== null ? `exit status ${code}` : `signal: ${goSignalName(signal ?? 'SIGKILL')}`;
  return { exitCode: code ?? -1, exited: code !== null, status, error: status };
}
