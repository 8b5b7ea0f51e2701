// The escape suite, kernel side (issue 17, item 1): root in a sandbox calls what reaches the kernel's
// global state (modules, keys, BPF, perf, io_uring, userfaultfd, kexec, the clock, I/O ports),
// mounts and namespaces, ptrace and pidfds of the agent and of its init, devices and raw sockets, on
// every syscall ABI the kernel has (x86_64; i386 through int $0x80; x32, which this kernel lacks),
// from one static probe program built on the host and run once; then /proc/sys, sysrq, cgroup and
// sysfs writes, a chroot climb and a kill of every process it can see. Each case checks that the
// host's canary and a neighbour sandbox are as they were.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import { after, before, describe, test } from 'node:test'
import { createSandbox, home, killSandbox, run, waitFor } from '../helpers.js'
import { byKey, initPid, probeBinary, putFile, root, World } from './escape-env.js'

const EPERM = 1
const ENOSYS = 38

/** [probe, errnos it may answer, what stops it] (the probe's names are escape-probe.c's). */
const SECCOMP = 'seccomp (EPERM)'
const probes: [string, number[], string][] = [
  ['x64.init_module', [EPERM], SECCOMP],
  ['x64.finit_module', [EPERM], SECCOMP],
  ['x64.delete_module', [EPERM], SECCOMP],
  ['x64.keyctl', [EPERM], SECCOMP],
  ['x64.add_key', [EPERM], SECCOMP],
  ['x64.request_key', [EPERM], SECCOMP],
  ['x64.bpf', [EPERM], SECCOMP],
  ['x64.perf_event_open', [EPERM], SECCOMP],
  ['x64.io_uring_setup', [EPERM], SECCOMP],
  ['x64.userfaultfd', [EPERM], SECCOMP],
  ['x64.kexec_load', [EPERM], SECCOMP],
  ['x64.syslog', [EPERM], SECCOMP],
  ['x64.iopl', [EPERM], SECCOMP],
  ['x64.ioperm', [EPERM], SECCOMP],
  ['x64.clock_settime', [EPERM], SECCOMP],
  ['x64.open_by_handle_at', [EPERM], SECCOMP],
  ['x64.mount', [EPERM], SECCOMP],
  ['x64.mount_remount_proc_sys', [EPERM], SECCOMP],
  ['x64.umount2', [EPERM], SECCOMP],
  ['x64.unshare_user', [EPERM], SECCOMP],
  ['x64.unshare_mount', [EPERM], SECCOMP],
  ['x64.setns', [EPERM], SECCOMP],
  ['x64.pivot_root', [EPERM], SECCOMP],
  ['x64.open_tree', [EPERM], SECCOMP],
  ['x64.open_tree_attr', [EPERM], 'no CAP_SYS_ADMIN (a call newer than the profile)'],
  ['x64.move_mount', [EPERM], SECCOMP],
  ['x64.fsopen', [EPERM], SECCOMP],
  ['x64.fspick', [EPERM], SECCOMP],
  ['x64.mount_setattr', [EPERM], SECCOMP],
  ['x64.clone_newuser', [EPERM], 'seccomp (clone with a namespace flag)'],
  ['x64.clone_newns', [EPERM], 'seccomp (clone with a namespace flag)'],
  ['x64.clone3', [ENOSYS], 'seccomp (ENOSYS: flags in memory)'],
  ['x64.mknod_block', [EPERM], 'no CAP_MKNOD, user namespace'],
  ['x64.mknod_kvm', [EPERM], 'no CAP_MKNOD, user namespace'],
  ['x64.mknod_kmsg', [EPERM], 'no CAP_MKNOD, user namespace'],
  ['x64.ptrace_agent', [EPERM], 'the agent is non-dumpable'],
  ['x64.ptrace_seize_agent', [EPERM], 'the agent is non-dumpable'],
  ['x64.process_vm_readv_agent', [EPERM], 'the agent is non-dumpable'],
  ['x64.pidfd_getfd_agent', [EPERM], 'the agent is non-dumpable'],
  ['x64.kcmp_agent', [EPERM], SECCOMP],
  ['x64.ptrace_agent@1', [EPERM], 'the init is non-dumpable (execute-only binary)'],
  ['x64.ptrace_seize_agent@1', [EPERM], 'the init is non-dumpable (execute-only binary)'],
  ['x64.process_vm_readv_agent@1', [EPERM], 'the init is non-dumpable (execute-only binary)'],
  ['x64.pidfd_getfd_agent@1', [EPERM], "the init is non-dumpable: the agent's listening socket stays out of reach"],
  ['x64.raw_socket', [EPERM], 'no CAP_NET_RAW'],
  ['x64.packet_socket', [EPERM], 'no CAP_NET_RAW'],
  ['x64.ip_transparent', [EPERM], 'no CAP_NET_ADMIN'],
  ['x64.sethostname', [EPERM], 'no CAP_SYS_ADMIN'],
  ['i386.init_module', [EPERM], SECCOMP],
  ['i386.finit_module', [EPERM], SECCOMP],
  ['i386.keyctl', [EPERM], SECCOMP],
  ['i386.add_key', [EPERM], SECCOMP],
  ['i386.bpf', [EPERM], SECCOMP],
  ['i386.perf_event_open', [EPERM], SECCOMP],
  ['i386.io_uring_setup', [EPERM], SECCOMP],
  ['i386.userfaultfd', [EPERM], SECCOMP],
  ['i386.kexec_load', [EPERM], SECCOMP],
  ['i386.mount', [EPERM], SECCOMP],
  ['i386.umount2', [EPERM], SECCOMP],
  ['i386.unshare_user', [EPERM], SECCOMP],
  ['i386.setns', [EPERM], SECCOMP],
  ['i386.pivot_root', [EPERM], SECCOMP],
  ['i386.open_tree', [EPERM], SECCOMP],
  ['i386.move_mount', [EPERM], SECCOMP],
  ['i386.fsopen', [EPERM], SECCOMP],
  ['i386.clone_newuser', [EPERM], 'seccomp (clone with a namespace flag)'],
  ['i386.clone3', [ENOSYS], 'seccomp (ENOSYS)'],
  ['i386.ptrace_agent', [EPERM], 'the agent is non-dumpable'],
  ['i386.ptrace_agent@1', [EPERM], 'the init is non-dumpable'],
  ['i386.kcmp_agent', [EPERM], SECCOMP],
  ['i386.syslog', [EPERM], SECCOMP],
  ['i386.iopl', [EPERM], SECCOMP],
  ['x32.getpid', [ENOSYS], 'no x32 ABI in the kernel'],
  ['x32.init_module', [EPERM, ENOSYS], 'seccomp (x32 listed), no x32 ABI'],
  ['x32.bpf', [EPERM, ENOSYS], 'seccomp (x32 listed), no x32 ABI'],
  ['x32.keyctl', [EPERM, ENOSYS], 'seccomp (x32 listed), no x32 ABI'],
  ['x32.mount', [EPERM, ENOSYS], 'seccomp (x32 listed), no x32 ABI'],
  ['x32.unshare_user', [EPERM, ENOSYS], 'seccomp (x32 listed), no x32 ABI'],
]

const world = new World()
let id = ''
const answers = new Map<string, { ret: number; errno?: number; signal?: number }>()

before(async () => {
  await world.start()
  id = (await createSandbox({ metadata: { suite: 'escape' } })).id
  assert.equal((await putFile(id, '/tmp/escape-probe', probeBinary(), byKey())).status, 200)
  // The agent is node on the agent image's loader; pid 1 is its init.
  const agent = (await root(id, "for p in /proc/[0-9]*; do case \"$(tr '\\0' ' ' < $p/cmdline)\" in /opt/sandlot/lib/*agent.mjs*) echo ${p#/proc/};; esac; done")).trim()
  assert.match(agent, /^\d+$/)
  assert.notEqual(agent, '1')
  const out = await root(id, `chmod 755 /tmp/escape-probe && /tmp/escape-probe ${agent} ${probes.map(([p]) => p).join(' ')}`, 60_000)
  for (const line of out.split('\n').filter((l) => l.startsWith('{'))) {
    const a = JSON.parse(line)
    answers.set(a.name, a)
  }
})
after(async () => {
  await killSandbox(id)
  await world.stop()
})

describe('kernel interfaces, mounts, namespaces, ptrace and devices, on every ABI', () => {
  for (const [probe, errnos, stops] of probes) {
    test(`${probe}: refused (${stops})`, async () => {
      const a = answers.get(probe)
      assert.ok(a, `no answer for ${probe}`)
      assert.equal(a.signal, undefined, `${probe} was killed by signal ${a.signal}`)
      assert.equal(a.ret, -1, `${probe} succeeded: ${JSON.stringify(a)}`)
      assert.ok(errnos.includes(a.errno!), `${probe}: errno ${a.errno}, expected ${errnos}`)
      await world.unaffected()
    })
  }
})

describe('/proc, sysfs, cgroups and devices', () => {
  test('/proc/sys is read-only: core_pattern, hostname and drop_caches stay the host\'s', async () => {
    const before = fs.readFileSync('/proc/sys/kernel/core_pattern', 'utf8')
    const out = await root(id, 'echo "|/tmp/x" > /proc/sys/kernel/core_pattern; echo 3 > /proc/sys/vm/drop_caches; echo escaped > /proc/sys/kernel/hostname; cat /proc/sys/kernel/hostname')
    assert.equal((out.match(/Read-only file system/g) ?? []).length, 3, out)
    assert.match(out, new RegExp(`^${id}$`, 'm'))
    assert.equal(fs.readFileSync('/proc/sys/kernel/core_pattern', 'utf8'), before)
    await world.unaffected()
  })

  test('/proc/sysrq-trigger cannot be written', async () => {
    const out = await root(id, 'echo h > /proc/sysrq-trigger && echo WROTE')
    assert.doesNotMatch(out, /WROTE/)
    await world.unaffected()
  })

  test('cgroup v1 escapes: no release_agent to set, notify_on_release and new groups refused, own limits fixed', async () => {
    const limit = fs.readFileSync(`/sys/fs/cgroup/memory/sandlot/${id}/memory.limit_in_bytes`, 'utf8')
    const out = await root(
      id,
      [
        'for c in /sys/fs/cgroup/*/; do echo /tmp/x > $c/release_agent && echo WROTE $c; echo 1 > $c/notify_on_release && echo WROTE $c; mkdir $c/escape && echo MADE $c; done',
        'echo 999999999999 > /sys/fs/cgroup/memory/memory.limit_in_bytes && echo WROTE limit',
        'echo 0 > /sys/fs/cgroup/devices/devices.deny; echo a > /sys/fs/cgroup/devices/devices.allow && echo WROTE devices',
        'cat /proc/self/cgroup',
      ].join('; '),
    )
    assert.doesNotMatch(out, /WROTE|MADE/, out)
    assert.equal(fs.readFileSync(`/sys/fs/cgroup/memory/sandlot/${id}/memory.limit_in_bytes`, 'utf8'), limit)
    // The host's hierarchies have no release agent set by anyone.
    for (const c of ['memory', 'pids', 'cpu']) assert.equal(fs.readFileSync(`/sys/fs/cgroup/${c}/release_agent`, 'utf8').trim(), '')
    await world.unaffected()
  })

  test('sysfs is read-only: uevent_helper, a device\'s settings, a loop device', async () => {
    const out = await root(id, 'echo /tmp/x > /sys/kernel/uevent_helper && echo WROTE; echo 1 > /sys/class/net/eth0/mtu 2>&1 && echo WROTE; for d in /sys/block/loop*; do echo 1 > $d/loop/autoclear 2>/dev/null && echo WROTE; done; echo done')
    assert.doesNotMatch(out, /WROTE/)
    assert.match(out, /Read-only file system/)
    await world.unaffected()
  })

  test('no device to open: no block device, /dev/kmsg, /dev/kvm or /dev/mem; dmesg refused', async () => {
    const out = await root(id, 'ls /dev; find /dev -type b | wc -l; cat /dev/kmsg; exec 3</dev/kvm; dmesg && echo DMESG')
    assert.match(out, /^0$/m, 'a block device in /dev')
    assert.doesNotMatch(out, /^(kmsg|kvm|mem|kmem|port|loop\d+|sd\w+|vd\w+)$/m)
    assert.doesNotMatch(out, /DMESG/)
    await world.unaffected()
  })

  test('a chroot climb ends at the sandbox\'s own root', async () => {
    const out = await root(id, `mkdir -p /tmp/jail && python3 -c "
import os
os.chroot('/tmp/jail')
for _ in range(64): os.chdir('..')
os.chroot('.')
print(open('/etc/hostname').read().strip(), os.path.exists('${world.canaryPath}'))"`)
    assert.equal(out.trim(), `${id} False`)
    await world.unaffected()
  })

  test('only its own processes are visible: the neighbour\'s and the host\'s pids are not there to signal or open', async () => {
    const hostPids = [initPid(world.neighbour, home), process.pid]
    const out = await root(id, `ls -d /proc/[0-9]* | wc -l; for p in ${hostPids.join(' ')}; do kill -0 $p 2>/dev/null && echo SEEN $p; ls /proc/$p/root >/dev/null 2>&1 && echo OPENED $p; done; echo done`)
    assert.doesNotMatch(out, /SEEN|OPENED/)
    assert.ok(Number(out.split('\n')[0]) < 20, out)
    await world.unaffected()
  })

  test('kill -9 -1 as root ends only its own processes (its init is out of reach, and starts its agent again)', async () => {
    const victim = (await createSandbox({ metadata: { suite: 'escape' } })).id
    try {
      await run(victim, 'sleep 3600 & echo $! > /tmp/sleeper', { user: 'root' })
      await run(victim, 'kill -9 -1', { user: 'root' }).catch(() => {})
      // Its agent was among what it killed; the init, which no signal from inside reaches, runs a new one.
      const back = await waitFor(() => run(victim, 'kill -0 $(cat /tmp/sleeper) 2>/dev/null && echo alive || echo gone; cat /proc/1/comm').catch(() => undefined), 20_000, 'its agent to be back')
      assert.match(back.stdout, /^gone\nsl-init\.[1-9]\d*\n$/)
      await world.unaffected()
    } finally {
      await killSandbox(victim)
    }
  })
})
