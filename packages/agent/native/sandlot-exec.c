// sandlot-exec: what the agent does to a process it starts between the fork and the exec of the
// command, which Node cannot do itself, in one exec. The agent runs it from its own read-only image
// (/opt/sandlot/bin), so no sandbox's template has to bring anything. Usage:
//
//   sandlot-exec [--oom-score-adj N] [--close-fd FD] [--user UID GID GROUPS] -- COMMAND [ARG...]
//
// Steps, in this order, each only when asked:
//   --oom-score-adj N   writes N to /proc/self/oom_score_adj (util-linux's `choom -n N --`), so the
//                       command and everything it forks are the OOM killer's choice before it runs.
//                       Raising the value needs no privilege.
//   --close-fd FD       closes FD (the agent's listening socket, which Node cannot make close-on-exec
//                       and node-pty cannot be told to cover): the command never holds it.
//   --user UID GID GROUPS
//                       sets the supplementary groups to GROUPS (comma-separated gids, "-" for none),
//                       then the real, effective and saved gid and uid (util-linux's
//                       `setpriv --reuid UID --regid GID --init-groups --`; the agent reads the groups
//                       from the sandbox's /etc/group itself, as initgroups would). No no_new_privs
//                       and no capability change: the exec of a non-set-id command drops them all
//                       once the ids are not 0, and sudo keeps working in the command.
// Then execvp(COMMAND) with the environment it was given (PATH from it). Any failure prints
// "sandlot-exec: ..." to stderr and exits 126 (127 when the command is not found), as a shell does.
//
//   sandlot-exec --init -- AGENT [ARG...]
//                       the sandbox's init (pid 1, from the execute-only copy bin/sandlot-init): runs
//                       AGENT in a process group of its own, reaps every orphan of the sandbox, and
//                       forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to the agent's
//                       group, as tini -g does. Unlike tini, it outlives its child: when the agent ends
//                       without being asked to (killed by root in the sandbox, `kill -9 -1`, a crash, the
//                       OOM killer), it says so on stderr (the sandbox's host-side log) and runs it
//                       again, after 0.1 s doubling to 5 s while it keeps dying young; the new agent
//                       inherits the same listening socket, so the daemon reaches it where it reached
//                       the old one. Being pid 1, nothing in the sandbox can kill it. SIGTERM, SIGINT
//                       or SIGHUP stop it once the agent has ended, with the agent's exit status.
//                       Its own name (/proc/1/comm: "sl-init.N") tells the daemon how many times it
//                       started the agent again. An agent that never started (it writes a byte to SANDLOT_AGENT_READY_FD once it listens) is
//                       not started again: the init exits as it did, and the sandbox fails to start.
//
// Why a helper of our own: the commands that do this (choom, setpriv, a shell for the fd) are the
// template's, linked against the template's libc, and absent from minimal images (busybox, Alpine,
// distroless); busybox's applets have no --reuid/--init-groups or OOM mark, and a static busybox
// resolves groups through glibc's static NSS, which is broken by design. This is ~100 lines of
// syscalls: compiled statically at build time (scripts/build.mjs), it runs in any image.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_GROUPS 65536

static void die(int code, const char *fmt, ...) {
  int error = errno;
  va_list ap;
  va_start(ap, fmt);
  fputs("sandlot-exec: ", stderr);
  vfprintf(stderr, fmt, ap);
  if (error) fprintf(stderr, ": %s", strerror(error));
  fputc('\n', stderr);
  va_end(ap);
  exit(code);
}

static unsigned long number(const char *s, const char *what, unsigned long max) {
  char *end;
  errno = 0;
  unsigned long n = strtoul(s, &end, 10);
  if (errno || end == s || *end || n > max) {
    errno = 0;
    die(126, "bad %s \"%s\"", what, s);
  }
  return n;
}

static gid_t groups[MAX_GROUPS];

static volatile sig_atomic_t stopping = 0;
static volatile sig_atomic_t agent = 0;

// A signal to the init goes on to the agent's process group (as tini -g did); those that stop a
// process stop the init too, once the agent has ended.
static void forward(int sig) {
  if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP) stopping = 1;
  if (agent > 0) kill(-(pid_t)agent, sig);
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
#define FORWARDED (sizeof forwarded / sizeof forwarded[0])

static int exit_code(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }

static int init(char **cmd) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = forward;
  sigemptyset(&sa.sa_mask);
  for (size_t i = 0; i < FORWARDED; i++) sigaction(forwarded[i], &sa, NULL);
  double backoff = 0.1;
  int ever_ready = 0;
  for (unsigned long restarts = 0;; restarts++) {
    // The daemon reads the count from the host in /proc/1/comm (which only this process may change):
    // a higher one means the agent was started again.
    char name[16];
    snprintf(name, sizeof name, "sl-init.%lu", restarts);
    prctl(PR_SET_NAME, name, 0, 0, 0);
    // The agent writes a byte here once it listens: only one that started once is started again (one
    // that cannot start at all would otherwise be retried for ever, its sandbox never failing).
    int ready[2];
    if (pipe2(ready, O_CLOEXEC) < 0) die(126, "cannot make a pipe");
    double started = now();
    pid_t pid = fork();
    if (pid < 0) die(126, "cannot start the agent");
    if (pid == 0) {
      for (size_t i = 0; i < FORWARDED; i++) signal(forwarded[i], SIG_DFL);
      setpgid(0, 0); // a group of its own, which signals to the init are forwarded to
      char fd[16];
      snprintf(fd, sizeof fd, "%d", ready[1]);
      if (fcntl(ready[1], F_SETFD, 0) < 0 || setenv("SANDLOT_AGENT_READY_FD", fd, 1) < 0) die(126, "cannot pass the ready pipe");
      execvp(cmd[0], cmd);
      die(errno == ENOENT ? 127 : 126, "cannot run \"%s\"", cmd[0]);
    }
    setpgid(pid, pid); // here too (as in the child): the group exists whichever runs first
    agent = pid;
    if (stopping) kill(-pid, SIGTERM); // asked to stop before the agent could be told
    close(ready[1]);
    // As pid 1, every orphan of the sandbox comes here: each is reaped, until the agent ends.
    int status = 0;
    for (;;) {
      pid_t ended = waitpid(-1, &status, 0);
      if (ended == pid) break;
      if (ended < 0 && errno != EINTR) die(126, "cannot wait for the agent");
    }
    agent = 0;
    char byte;
    if (fcntl(ready[0], F_SETFL, O_NONBLOCK) == 0 && read(ready[0], &byte, 1) == 1) ever_ready = 1;
    close(ready[0]);
    if (stopping || !ever_ready) return exit_code(status);
    if (WIFSIGNALED(status)) fprintf(stderr, "sandlot-init: the agent (pid %d) was killed by signal %d; starting it again\n", (int)pid, WTERMSIG(status));
    else fprintf(stderr, "sandlot-init: the agent (pid %d) exited with status %d; starting it again\n", (int)pid, WEXITSTATUS(status));
    // One that lived a while starts again at once; one that keeps dying young, less and less often.
    backoff = now() - started > 10 ? 0.1 : (backoff * 2 > 5 ? 5 : backoff * 2);
    for (double until = now() + backoff; !stopping && now() < until;) {
      // Orphans are still reaped meanwhile, in steps of 10 ms.
      while (waitpid(-1, NULL, WNOHANG) > 0) {
      }
      struct timespec step = {0, 10 * 1000 * 1000};
      nanosleep(&step, NULL);
    }
    if (stopping) return 128 + SIGTERM;
  }
}

int main(int argc, char **argv) {
  const char *oom = NULL;
  long close_fd = -1;
  const char *uid_s = NULL, *gid_s = NULL, *groups_s = NULL;
  int i = 1;
  for (; i < argc; i++) {
    if (!strcmp(argv[i], "--")) {
      i++;
      break;
    } else if (!strcmp(argv[i], "--oom-score-adj") && i + 1 < argc) {
      oom = argv[++i];
      (void)number(oom[0] == '-' ? oom + 1 : oom, "oom_score_adj", 1000);
    } else if (!strcmp(argv[i], "--close-fd") && i + 1 < argc) {
      close_fd = (long)number(argv[++i], "fd", 1 << 20);
    } else if (!strcmp(argv[i], "--init") && i == 1 && i + 2 < argc && !strcmp(argv[i + 1], "--")) {
      return init(argv + i + 2);
    } else if (!strcmp(argv[i], "--user") && i + 3 < argc) {
      uid_s = argv[++i];
      gid_s = argv[++i];
      groups_s = argv[++i];
    } else {
      die(126, "unknown option \"%s\" (usage: sandlot-exec [--oom-score-adj N] [--close-fd FD] [--user UID GID GROUPS] -- COMMAND [ARG...], or sandlot-exec --init -- AGENT [ARG...])", argv[i]);
    }
  }
  if (i >= argc) die(126, "no command given");

  if (oom) {
    int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd < 0) die(126, "cannot open /proc/self/oom_score_adj");
    ssize_t len = (ssize_t)strlen(oom);
    if (write(fd, oom, len) != len) die(126, "cannot set oom_score_adj to %s", oom);
    close(fd);
  }
  if (close_fd >= 0 && close((int)close_fd) < 0 && errno != EBADF) die(126, "cannot close fd %ld", close_fd);
  if (uid_s) {
    uid_t uid = (uid_t)number(uid_s, "uid", 0xfffffffeUL);
    gid_t gid = (gid_t)number(gid_s, "gid", 0xfffffffeUL);
    size_t n = 0;
    if (strcmp(groups_s, "-")) {
      char *list = strdup(groups_s);
      if (!list) die(126, "out of memory");
      for (char *save = NULL, *g = strtok_r(list, ",", &save); g; g = strtok_r(NULL, ",", &save)) {
        if (n == MAX_GROUPS) die(126, "too many groups");
        groups[n++] = (gid_t)number(g, "group", 0xfffffffeUL);
      }
      free(list);
    }
    // The groups first (it needs root), then gid before uid (setting the uid drops the right to).
    // The raw syscalls through libc's wrappers, which apply them to every thread (there is one).
    if (setgroups(n, groups) < 0) die(126, "cannot set the supplementary groups");
    if (setresgid(gid, gid, gid) < 0) die(126, "cannot set gid %s", gid_s);
    if (setresuid(uid, uid, uid) < 0) die(126, "cannot set uid %s", uid_s);
  }
  execvp(argv[i], argv + i);
  int error = errno;
  die(error == ENOENT ? 127 : 126, "cannot run \"%s\"", argv[i]);
}
