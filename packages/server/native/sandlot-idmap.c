// sandlot-idmap: what sandlotd needs for a sandbox's layers and user namespace that neither Debian
// 12's util-linux (2.38, no X-mount.idmap) nor runc 1.1.5 can do, in one run (a process spawn blocks
// the daemon's event loop, so a create spawns as few as it can). Its arguments are steps, in order:
//
//   idmapped SOURCE TARGET MAP
//     Attaches at TARGET a read-only, nosuid, nodev clone of the mount of SOURCE, idmapped through a
//     user namespace with MAP as its maps (open_tree, mount_setattr MOUNT_ATTR_IDMAP, move_mount).
//   overlay DIR TARGET OPTIONS
//     From DIR (so relative layer paths stay relative in /proc/mounts), mounts an overlay at TARGET.
//   userns OWNER MAP [netns]   (the last step)
//     Creates a user namespace owned by host uid/gid OWNER (the kernel charges a namespace's
//     per-user counts, such as inotify instances, to the uid that created it) with MAP as both its
//     uid and gid map, written by this root process. Prints the pid of a process that stays in the
//     namespace until stdin closes, so runc can join /proc/PID/ns/user. With "netns", also a network
//     namespace owned by that user namespace (so the sandbox's root, which lacks CAP_NET_ADMIN, can
//     never reconfigure it, while its own sysctls are set here): loopback up, IPv6 off, ports below
//     1024 and ICMP echo sockets open to the sandbox's users. The line printed is then "PID NETPID";
//     sandlotd attaches /proc/NETPID/ns/net and moves the sandbox's veth into it.
//     If the daemon writes "bootid INITPID" before closing stdin (once the runtime has started the
//     sandbox), the sandbox's own /run/sandlot/boot_id is bound read-only over its
//     /proc/sys/kernel/random/boot_id, in the mount namespace of INITPID: each boot of a sandbox has
//     an id of its own, and none shows the host's (which would tell sandboxes on one host apart from
//     sandboxes on two). runc refuses mounts inside /proc but a few lxcfs files, and util-linux's
//     mount (new mount API) cannot attach into another namespace's tree: a classic mount(2) after
//     setns can.
//
// A map is "inner outer count". The first step that fails ends the run with a message, exit code 1.
//
// Why a helper of our own: no maintained tool does this on Debian 12. util-linux 2.38 has no
// X-mount.idmap (2.39 added it), runc 1.1.5 no idmapped mounts (1.2 added them) and no way to make a
// user namespace that root does not own; npm has no package for these syscalls. Why not a node-gyp
// addon: creating the namespace takes a process that drops to another uid, which must not be a
// fork of the multithreaded daemon. Compiled at build time with the system compiler
// (scripts/build.mjs); run by sandlotd as root.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

/* Prints the message (and errno's, when set) and exits with 1. */
static void die(const char *fmt, ...) {
  int error = errno;
  va_list ap;
  va_start(ap, fmt);
  fputs("sandlot-idmap: ", stderr);
  vfprintf(stderr, fmt, ap);
  if (error) fprintf(stderr, ": %s", strerror(error));
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

static unsigned long number(const char *s, const char *what) {
  char *end;
  errno = 0;
  unsigned long n = strtoul(s, &end, 10);
  if (errno || *s == '\0' || *end != '\0' || n >= 4294967295UL) {
    errno = 0;
    die("%s must be a number, got \"%s\"", what, s);
  }
  return n;
}

/* "inner outer count", checked, as written to uid_map and gid_map. */
static void parse_map(const char *map, char *out, size_t size) {
  unsigned long inner, outer, count;
  char rest;
  if (sscanf(map, "%lu %lu %lu %c", &inner, &outer, &count, &rest) != 3 || count == 0 ||
      inner + count > 4294967295UL || outer + count > 4294967295UL) {
    errno = 0;
    die("a map is \"inner outer count\", got \"%s\"", map);
  }
  snprintf(out, size, "%lu %lu %lu\n", inner, outer, count);
}

static void write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) die("open %s", path);
  ssize_t n = write(fd, text, strlen(text));
  if (n != (ssize_t)strlen(text)) die("write %s", path);
  close(fd);
}

struct holder {
  pid_t pid;
  int release; /* closing it lets the holder exit */
};

/*
 * Forks a holder: the child runs SETUP(ARG), which exits with a step number on failure, then tells
 * this process it is ready and waits until released; dies naming WHAT if the setup failed.
 */
static struct holder fork_holder(void (*setup)(const void *), const void *arg, const char *what) {
  int ready[2], release[2];
  if (pipe2(ready, O_CLOEXEC) || pipe2(release, O_CLOEXEC)) die("pipe");
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    close(ready[0]);
    close(release[1]);
    setup(arg);
    if (write(ready[1], "", 1) != 1) _exit(4);
    char c;
    while (read(release[0], &c, 1) < 0 && errno == EINTR) {
    }
    _exit(0);
  }
  close(ready[1]);
  close(release[0]);
  char c;
  if (read(ready[0], &c, 1) != 1) {
    int status = 0;
    waitpid(pid, &status, 0);
    errno = 0;
    die("%s failed (step %d)", what, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  }
  close(ready[0]);
  return (struct holder){pid, release[1]};
}

/* In the holder: becomes OWNER (unless -1: stays root), then unshares a user namespace. */
static void userns_setup(const void *arg) {
  long owner = *(const long *)arg;
  if (owner >= 0) {
    // The namespace's ceiling on processes, counted at the owner's level, is its creator's
    // RLIMIT_NPROC: as high as allowed (the sandbox's pids cgroup is what bounds it). Without
    // CAP_SYS_RESOURCE only up to the hard limit.
    struct rlimit nproc = {RLIM_INFINITY, RLIM_INFINITY};
    if (setrlimit(RLIMIT_NPROC, &nproc) && (getrlimit(RLIMIT_NPROC, &nproc) == 0)) {
      nproc.rlim_cur = nproc.rlim_max;
      setrlimit(RLIMIT_NPROC, &nproc);
    }
    if (setgroups(0, NULL) || setresgid(owner, owner, owner) || setresuid(owner, owner, owner)) _exit(2);
  }
  if (unshare(CLONE_NEWUSER)) _exit(3);
}

/*
 * Forks a holder that becomes OWNER (unless owner is -1: stays root), unshares a user namespace and
 * waits; this root process writes the namespace's maps.
 */
static struct holder new_userns(long owner, const char *map) {
  struct holder h = fork_holder(userns_setup, &owner, "the namespace's creator");
  char line[96], path[64];
  parse_map(map, line, sizeof line);
  snprintf(path, sizeof path, "/proc/%d/uid_map", h.pid);
  write_file(path, line);
  snprintf(path, sizeof path, "/proc/%d/gid_map", h.pid);
  write_file(path, line);
  return h;
}

static void end_holder(struct holder h) {
  close(h.release);
  waitpid(h.pid, NULL, 0);
}

static void idmapped_mount(const char *source, const char *target, const char *map) {
  struct holder h = new_userns(-1, map);
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/ns/user", h.pid);
  int userns = open(path, O_RDONLY | O_CLOEXEC);
  if (userns < 0) die("open %s", path);
  end_holder(h);
  int tree = open_tree(AT_FDCWD, source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
  if (tree < 0) die("open_tree %s", source);
  struct mount_attr attr = {
      .attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
      .userns_fd = (unsigned long long)userns,
  };
  if (mount_setattr(tree, "", AT_EMPTY_PATH, &attr, sizeof attr)) die("mount_setattr (idmap) %s", source);
  if (move_mount(tree, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH)) die("move_mount to %s", target);
  close(tree);
  close(userns);
}

static void overlay_mount(const char *dir, const char *target, const char *options) {
  if (chdir(dir)) die("chdir %s", dir);
  if (mount("overlay", target, "overlay", 0, options)) die("mount overlay on %s (%s)", target, options);
}

/* Writes a sysctl of the calling process's network namespace; exits the (child) process on failure. */
static void net_sysctl(const char *name, const char *value, int code) {
  char path[128];
  snprintf(path, sizeof path, "/proc/sys/net/%s", name);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0 || write(fd, value, strlen(value)) != (ssize_t)strlen(value)) _exit(code);
  close(fd);
}

struct netns_arg {
  pid_t holder;
  unsigned long size;
};

/*
 * In the holder: joins the user namespace of HOLDER (root here has every capability over it) and
 * unshares a network namespace, which that user namespace therefore owns, then configures it.
 */
static void netns_setup(const void *arg) {
  const struct netns_arg *a = arg;
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/ns/user", a->holder);
  int userns = open(path, O_RDONLY | O_CLOEXEC);
  if (userns < 0 || setns(userns, CLONE_NEWUSER)) _exit(5);
  if (unshare(CLONE_NEWNET)) _exit(6);
  // Ports below 1024 for any user (no one inside has CAP_NET_BIND_SERVICE over this namespace),
  // ping through ICMP datagram sockets for every group of the sandbox (raw sockets stay closed).
  net_sysctl("ipv4/ip_unprivileged_port_start", "0", 7);
  char range[32];
  snprintf(range, sizeof range, "0 %lu", a->size - 1);
  net_sysctl("ipv4/ping_group_range", range, 8);
  // No IPv6 inside: the sandbox's network and its rules are IPv4 (and the bridge drops IPv6 too).
  net_sysctl("ipv6/conf/all/disable_ipv6", "1", 9);
  net_sysctl("ipv6/conf/default/disable_ipv6", "1", 9);
  int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct ifreq ifr = {0};
  strcpy(ifr.ifr_name, "lo");
  if (sock < 0 || ioctl(sock, SIOCGIFFLAGS, &ifr)) _exit(10);
  ifr.ifr_flags |= IFF_UP;
  if (ioctl(sock, SIOCSIFFLAGS, &ifr)) _exit(10);
  close(sock);
}

static struct holder new_netns(pid_t holder, unsigned long size) {
  struct netns_arg arg = {holder, size};
  return fork_holder(netns_setup, &arg, "the network namespace's creator");
}

/* In the mount namespace of the sandbox's init: its own boot id file, read-only, over the host's. */
static void bind_boot_id(pid_t init) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/ns/mnt", init);
  int ns = open(path, O_RDONLY | O_CLOEXEC);
  if (ns < 0) die("open %s", path);
  if (setns(ns, CLONE_NEWNS)) die("setns into the mount namespace of %d", init);
  const char *source = "/run/sandlot/boot_id", *target = "/proc/sys/kernel/random/boot_id";
  if (mount(source, target, NULL, MS_BIND, NULL)) die("bind %s over %s", source, target);
  if (mount(NULL, target, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)) die("remount %s read-only", target);
}

static int userns(const char *owner, const char *map, int with_netns) {
  struct holder h = new_userns((long)number(owner, "OWNER"), map);
  struct holder net = {0, -1};
  if (with_netns) {
    unsigned long inner, outer, count;
    sscanf(map, "%lu %lu %lu", &inner, &outer, &count);
    net = new_netns(h.pid, count);
    printf("%d %d\n", h.pid, net.pid);
  } else {
    printf("%d\n", h.pid);
  }
  fflush(stdout);
  // Until the daemon closes stdin (or dies): runc joins the namespace meanwhile.
  char buf[64];
  size_t used = 0;
  for (;;) {
    ssize_t n = read(0, buf + used, sizeof buf - 1 - used);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    used += (size_t)n;
    if (used == sizeof buf - 1) used = 0; // not a request of ours: ignored
  }
  buf[used] = 0;
  if (with_netns) end_holder(net);
  end_holder(h);
  long init;
  char nl;
  if (sscanf(buf, "bootid %ld%c", &init, &nl) == 2 && nl == '\n' && init > 0) bind_boot_id((pid_t)init);
  return 0;
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc;) {
    const char *step = argv[i];
    if (strcmp(step, "idmapped") == 0 && i + 3 < argc) {
      idmapped_mount(argv[i + 1], argv[i + 2], argv[i + 3]);
      i += 4;
    } else if (strcmp(step, "overlay") == 0 && i + 3 < argc) {
      overlay_mount(argv[i + 1], argv[i + 2], argv[i + 3]);
      i += 4;
    } else if (strcmp(step, "userns") == 0 && i + 3 == argc) {
      return userns(argv[i + 1], argv[i + 2], 0);
    } else if (strcmp(step, "userns") == 0 && i + 4 == argc && strcmp(argv[i + 3], "netns") == 0) {
      return userns(argv[i + 1], argv[i + 2], 1);
    } else {
      break;
    }
    if (i == argc) return 0;
  }
  fprintf(stderr, "usage: sandlot-idmap [idmapped SOURCE TARGET MAP] [overlay DIR TARGET OPTIONS] [userns OWNER MAP [netns]]\n"
                  "       (steps in this order, userns last; a map is \"inner outer count\")\n");
  return 2;
}
