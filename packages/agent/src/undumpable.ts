import { readFileSync } from 'node:fs';

/**
 * Makes the agent's process non-dumpable, so that nothing it runs can read or trace it.
 *
 * The agent runs as root of the sandbox's user namespace, the same uid as code run as `root` (or
 * through sudo), and it holds the sandbox's access token and the requests it serves. A same-uid
 * process may read /proc/<agent>/mem, environ and fd/, ptrace the agent, pidfd_getfd its sockets
 * and process_vm_readv its heap, unless the agent is non-dumpable: then the kernel grants that
 * ptrace-mode access only to a holder of CAP_SYS_PTRACE in the agent's user namespace, which no
 * process in a sandbox has (it is not in the sandbox's capability set).
 *
 * Node has no prctl(PR_SET_DUMPABLE). What it has is a credential change: whenever a process's
 * effective or filesystem gid (or uid) changes, the kernel sets the dumpable flag of its memory to
 * fs.suid_dumpable (prctl(2), proc(5)), which is 0 by default and 2 on hosts that want setuid core
 * dumps; both deny. setegid() to another gid and straight back does that and leaves every id as it
 * was; glibc applies it to every thread of the process, and the flag belongs to the memory, so it
 * covers all of them. It is done first thing, before the configuration (the token) is read.
 *
 * What the agent starts is a fork that execs: exec resets the flag (to dumpable, for a process
 * whose ids are not set-id), so user processes are ordinary ones, and none of them inherits a way
 * back into the agent (its descriptors are close-on-exec).
 *
 * Returns why it could not be done, or undefined when the agent is now non-dumpable.
 */
export function makeUndumpable(): string | undefined {
  if (process.platform !== 'linux' || !process.getegid || !process.setegid) return 'not Linux';
  let suidDumpable: string | undefined;
  try {
    suidDumpable = readFileSync('/proc/sys/fs/suid_dumpable', 'utf8').trim();
  } catch {
    // unreadable /proc/sys: the kernel's default is 0
  }
  if (suidDumpable === '1') return 'fs.suid_dumpable is 1 on this host, so a credential change leaves the agent dumpable';
  const egid = process.getegid();
  try {
    process.setegid(egid === 0 ? 1 : 0);
    process.setegid(egid);
  } catch (err) {
    return `cannot change the effective gid (${(err as Error).message})`;
  }
  return undefined;
}
