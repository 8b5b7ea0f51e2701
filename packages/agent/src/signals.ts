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

export function endFromExit(code: number | null, signal: string | null): EndInit {
  if (code !== null) return { exitCode: code, exited: true, status: `exit status ${code}` };
  return { exitCode: -1, exited: false, status: `signal: ${goSignalName(signal ?? 'SIGKILL')}` };
}
