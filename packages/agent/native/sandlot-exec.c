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
    } else if (!strcmp(argv[i], "--user") && i + 3 < argc) {
      uid_s = argv[++i];
      gid_s = argv[++i];
      groups_s = argv[++i];
    } else {
      die(126, "unknown option \"%s\" (usage: sandlot-exec [--oom-score-adj N] [--close-fd FD] [--user UID GID GROUPS] -- COMMAND [ARG...])", argv[i]);
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
