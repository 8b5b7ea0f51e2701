// The agent inside a sandbox, seen from the code it runs: root there cannot read or trace it, and
// nothing planted in the sandbox's files can wedge its file operations.
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { apiKey, apiUrl, createSandbox, killSandbox, run } from './helpers.js'

// Finds the agent (node started by its own loader, /opt/sandlot/lib/ld.so, running agent.mjs; the init's
// command line names it too) and tries every ptrace-mode access to it; prints what each gave as JSON.
const PROBE = String.raw`
import ctypes, errno, json, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def name(e): return errno.errorcode.get(e, str(e))
def agent_pid():
    for p in os.listdir('/proc'):
        try: args = open(f'/proc/{p}/cmdline', 'rb').read().split(b'\0')
        except OSError: continue
        if args[0] == b'/opt/sandlot/lib/ld.so' and b'/opt/sandlot/agent/agent.mjs' in args: return int(p)
pid = agent_pid()
out = {'pid': pid}
heap = 0x10000
for f in ('environ', 'maps', 'mem'):
    try:
        with open(f'/proc/{pid}/{f}', 'rb') as fh:
            if f == 'mem': fh.seek(heap)
            data = fh.read(4096)
            if f == 'maps':
                line = next(l for l in data.split(b'\n') if l.split()[1:2] == [b'rw-p'])
                heap = int(line.split(b'-')[0], 16)
            out[f] = 'read'
    except OSError as e: out[f] = name(e.errno)
def fd_access():
    try: fds = os.listdir(f'/proc/{pid}/fd')
    except OSError as e: return name(e.errno)
    for fd in fds:
        try:
            os.readlink(f'/proc/{pid}/fd/{fd}')
            return 'readlink'
        except OSError as e: err = name(e.errno)
    return err
out['fd'] = fd_access()
if libc.ptrace(16, pid, None, None) == 0:  # PTRACE_ATTACH; on success wait for the stop and detach
    os.waitpid(pid, 0x40000000)
    libc.ptrace(17, pid, None, None)
    out['ptrace'] = 'attached'
else: out['ptrace'] = name(ctypes.get_errno())
class iovec(ctypes.Structure): _fields_ = [('base', ctypes.c_void_p), ('len', ctypes.c_size_t)]
buf = ctypes.create_string_buffer(16)
local, remote = iovec(ctypes.addressof(buf), 16), iovec(heap, 16)
n = libc.process_vm_readv(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
out['process_vm_readv'] = 'read' if n > 0 else name(ctypes.get_errno())
pidfd = libc.syscall(434, pid, 0)  # pidfd_open
if pidfd < 0: out['pidfd_getfd'] = 'pidfd_open ' + name(ctypes.get_errno())
else:
    errs = set()
    for fd in range(64):
        got = libc.syscall(438, pidfd, fd, 0)  # pidfd_getfd
        if got >= 0:
            os.close(got)
            errs.add('got a descriptor')
        else: errs.add(name(ctypes.get_errno()))
    errs.discard('EBADF')
    out['pidfd_getfd'] = 'got a descriptor' if 'got a descriptor' in errs else ','.join(sorted(errs))
print(json.dumps(out))
`

describe('the agent, seen from the code it runs', () => {
  let id = ''
  before(async () => {
    id = (await createSandbox({ metadata: { suite: 'security-agent' } })).id
    const w = await run(id, `cat > /tmp/probe.py <<'EOF'\n${PROBE}\nEOF`)
    assert.equal(w.exitCode, 0, w.stderr)
  })
  after(() => killSandbox(id))

  test('root cannot read its memory, environment or descriptors, ptrace it, or take its descriptors', async () => {
    for (const [how, cmd, user] of [
      ['root', 'python3 /tmp/probe.py', 'root'],
      ['sudo', 'sudo python3 /tmp/probe.py', 'user'],
    ] as const) {
      const r = await run(id, cmd, { user })
      assert.equal(r.exitCode, 0, `${how}: ${r.stderr}`)
      const got = JSON.parse(r.stdout)
      assert.ok(got.pid > 1, `${how}: found the agent: ${r.stdout}`)
      assert.deepEqual(
        got,
        {
          pid: got.pid,
          environ: 'EACCES',
          maps: 'EACCES',
          mem: 'EACCES',
          fd: 'EACCES',
          ptrace: 'EPERM',
          process_vm_readv: 'EPERM',
          pidfd_getfd: 'EPERM',
        },
        how,
      )
    }
    assert.equal((await run(id, 'echo still serving')).stdout, 'still serving\n')
  })

  test('what it starts is an ordinary process: readable by its own user, holding nothing of the agent', async () => {
    // bash is the agent's own child (through choom's exec); cat, bash's child, reads bash.
    // fd 3 is /dev/null: the agent's listening socket had that number, and a child_process child
    // gets /dev/null over it (processes.ts), so nothing of the agent is left there.
    const env = await run(id, `tr '\\0' '\\n' < /proc/$$/environ | grep -c '^USER=user$'; ls /proc/$$/fd | sort -n | tr '\\n' ' '; readlink /proc/$$/fd/3`)
    assert.equal(env.stdout, '1\n0 1 2 3 /dev/null\n', env.stderr)
    // (`; true`: bash must not exec python in its own place)
    const asRoot = await run(id, `python3 -c 'import sys; open("/proc/%s/mem" % sys.argv[1], "rb").close(); print("opened")' $$; true`, { user: 'root' })
    assert.equal(asRoot.stdout, 'opened\n', asRoot.stderr)
  })

  test('a FIFO, a socket or a device in its files cannot wedge /files: 400 at once, and file operations go on', async () => {
    const made = await run(id, `mkfifo ~/fifo && python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind("/home/user/sock")' && ls -l ~/fifo ~/sock | cut -c1`)
    assert.equal(made.stdout, 'p\ns\n', made.stderr)
    const files = async (method: 'GET' | 'POST', path: string, body?: string) => {
      const res = await fetch(`${apiUrl}/files?path=${encodeURIComponent(path)}&username=user`, {
        method,
        headers: { 'e2b-sandbox-id': id, 'x-api-key': apiKey(), ...(body !== undefined && { 'content-type': 'application/octet-stream' }) },
        body,
        signal: AbortSignal.timeout(5000), // a wedged agent never answers
      })
      return { status: res.status, text: await res.text() }
    }
    // More times than libuv has threadpool threads (4): each would have held one for ever.
    for (let i = 0; i < 6; i++) {
      for (const [path, kind] of [
        ['/home/user/fifo', 'a FIFO'],
        ['/home/user/sock', 'a socket'],
        ['/dev/zero', 'a character device'],
        ['/dev/urandom', 'a character device'],
      ]) {
        const r = await files('GET', path!)
        assert.equal(r.status, 400, `GET ${path}: ${r.text}`)
        assert.match(JSON.parse(r.text).message, new RegExp(`is ${kind}, not a regular file`))
      }
      for (const path of ['/home/user/fifo', '/home/user/sock', '/dev/null']) {
        const r = await files('POST', path, 'x')
        assert.equal(r.status, 400, `POST ${path}: ${r.text}`)
      }
    }
    for (let i = 0; i < 6; i++) {
      assert.equal((await files('POST', `/home/user/ok-${i}`, `ok ${i}`)).status, 200)
      assert.equal((await files('GET', `/home/user/ok-${i}`)).text, `ok ${i}`)
    }
    assert.equal((await run(id, 'cat ~/ok-5; ls -l /dev/null | cut -c1')).stdout, 'ok 5c\n')
  })
})
