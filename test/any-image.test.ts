// The agent runs in any image: it brings its init, loader, libraries and helper on its own read-only
// image, and E2B's `user` is made where an image lacks it. Real sandboxes on images made here and
// owned by the templates' ids as the base template is: a static busybox and nothing else (no libc at
// all), a musl one (musl's loader and libc in /lib, no glibc anywhere), an empty one (no shell, no
// /etc), and the Debian base. Files, commands (as user and root, exit codes, env) and a terminal
// work through the agent in each; what the user runs never sees the agent's libraries.
import Database from 'better-sqlite3'
import { Code, ConnectError, createClient, type Interceptor } from '@connectrpc/connect'
import { createConnectTransport } from '@connectrpc/connect-node'
import { FileType, Filesystem, Process } from '@sandlot/envd-proto'
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { apiKey, apiUrl, createSandbox, home, killSandbox, terminal } from './helpers.js'

// What the images are made of (npm test installs them).
assert.equal(spawnSync('sh', ['-c', 'command -v busybox && command -v musl-gcc'], { stdio: 'ignore' }).status, 0, 'busybox-static and musl-tools are installed')

const imagesDir = path.resolve(`.sandlot-test/${process.env.SANDLOT_TEST_NAME ?? 'home'}-images`)
const suffix = `-${process.pid}`
const db = () => new Database(path.join(home, 'sandlot.db'))

/** The host ids that own the templates' files: the base template's owner. */
function templateOwner(): number {
  const d = db()
  try {
    const { rootfs } = d.prepare("SELECT rootfs FROM templates WHERE name = 'base'").get() as { rootfs: string }
    return fs.statSync(rootfs).uid
  } finally {
    d.close()
  }
}

/**
 * A template rootfs made from what `fill` puts in a directory: packed as root's, then unpacked inside
 * a user namespace mapped onto the templates' range (as templates/base.ts does), so its files are
 * the templates' ids' and each sandbox sees them as its root's. Registered in the test server's
 * store under `name`.
 */
function makeImage(name: string, fill: (dir: string) => void): string {
  const staging = path.join(imagesDir, `${name}.staging`)
  const tarball = path.join(imagesDir, `${name}.tar`)
  const buildDir = path.join(imagesDir, name)
  const rootfs = path.join(buildDir, 'rootfs')
  for (const p of [staging, tarball, buildDir]) fs.rmSync(p, { recursive: true, force: true })
  fs.mkdirSync(staging, { recursive: true })
  fs.chmodSync(imagesDir, 0o711)
  fill(staging)
  execFileSync('tar', ['-cf', tarball, '-C', staging, '--owner=0', '--group=0', '--numeric-owner', '.'])
  fs.chmodSync(tarball, 0o644)
  fs.mkdirSync(rootfs, { recursive: true })
  const owner = templateOwner()
  fs.chownSync(rootfs, owner, owner)
  const map = `${owner},0,65536`
  execFileSync('unshare', [`--map-users=${map}`, `--map-groups=${map}`, '--setuid', '0', '--setgid', '0',
    'tar', '-xpf', tarball, '-C', rootfs, '--same-owner', '--numeric-owner'])
  // Root's alone, as a template build's directory is.
  fs.chmodSync(buildDir, 0o700)
  fs.rmSync(staging, { recursive: true, force: true })
  fs.rmSync(tarball, { force: true })
  const d = db()
  try {
    d.prepare(`INSERT INTO templates (name, recipe_hash, rootfs, built_at) VALUES (?, 'test', ?, ?)
               ON CONFLICT(name) DO UPDATE SET rootfs = excluded.rootfs`).run(name, rootfs, Date.now())
  } finally {
    d.close()
  }
  return rootfs
}

/** Debian's static busybox at /bin/busybox and a link for each of its applets, nothing else. */
function busybox(dir: string): void {
  fs.mkdirSync(path.join(dir, 'bin'), { recursive: true })
  fs.copyFileSync('/bin/busybox', path.join(dir, 'bin/busybox'))
  fs.chmodSync(path.join(dir, 'bin/busybox'), 0o755)
  for (const applet of execFileSync('/bin/busybox', ['--list-full'], { encoding: 'utf8' }).split('\n').filter(Boolean)) {
    if (applet === 'bin/busybox') continue
    fs.mkdirSync(path.dirname(path.join(dir, applet)), { recursive: true })
    fs.symlinkSync('/bin/busybox', path.join(dir, applet))
  }
}

// Prints which shared objects it has mapped (its own loader and libc): a musl program run by the user.
const MUSL_PROGRAM = String.raw`
#include <stdio.h>
#include <string.h>
int main(void) {
  char line[4096];
  FILE *maps = fopen("/proc/self/maps", "r");
  printf("hello from musl\n");
  while (maps && fgets(line, sizeof line, maps)) {
    char *p = strchr(line, '/');
    if (p && strstr(p, ".so")) printf("%s", p);
  }
  return 0;
}
`

/**
 * As Alpine lays it out: musl's loader (which is its libc) at /lib/ld-musl-x86_64.so.1, with the
 * libc.musl name beside it, an /etc/passwd without `user`, and a program dynamically linked against
 * musl. Debian has no musl-linked busybox (building one is minutes of compiling), so the shell and
 * tools are the static busybox: nothing in the image links against glibc.
 */
function musl(dir: string): void {
  busybox(dir)
  const loader = fs.realpathSync('/lib/ld-musl-x86_64.so.1')
  fs.mkdirSync(path.join(dir, 'lib'), { recursive: true })
  fs.copyFileSync(loader, path.join(dir, 'lib/ld-musl-x86_64.so.1'))
  fs.chmodSync(path.join(dir, 'lib/ld-musl-x86_64.so.1'), 0o755)
  fs.symlinkSync('ld-musl-x86_64.so.1', path.join(dir, 'lib/libc.musl-x86_64.so.1'))
  const src = path.join(dir, 'musl-hello.c')
  fs.writeFileSync(src, MUSL_PROGRAM)
  fs.mkdirSync(path.join(dir, 'usr/local/bin'), { recursive: true })
  execFileSync('musl-gcc', ['-O2', '-o', path.join(dir, 'usr/local/bin/musl-hello'), src])
  fs.rmSync(src)
  fs.mkdirSync(path.join(dir, 'etc'), { recursive: true })
  fs.writeFileSync(path.join(dir, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/ash\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n')
  fs.writeFileSync(path.join(dir, 'etc/group'), 'root:x:0:root\nwheel:x:10:root\nnobody:x:65534:\n')
  fs.writeFileSync(path.join(dir, 'etc/os-release'), 'NAME="Alpine-like (musl)"\nID=alpine\n')
}

/** The data plane through the server's port, as a client of the sandbox sees it. */
function clients(id: string, user: string) {
  const headers: Interceptor = (next) => (req) => {
    req.header.set('e2b-sandbox-id', id)
    req.header.set('x-api-key', apiKey())
    req.header.set('authorization', `Basic ${Buffer.from(`${user}:`).toString('base64')}`)
    return next(req)
  }
  const transport = createConnectTransport({ baseUrl: apiUrl, httpVersion: '1.1', interceptors: [headers] })
  return { process: createClient(Process, transport), fs: createClient(Filesystem, transport) }
}

interface Ran {
  stdout: string
  stderr: string
  exitCode: number
}

/** A command as E2B's SDK sends it: `/bin/bash -l -c CMD`. */
async function sh(id: string, cmd: string, user = 'user', envs: Record<string, string> = {}): Promise<Ran> {
  const out = { stdout: '', stderr: '', exitCode: NaN }
  for await (const { event } of clients(id, user).process.start({ process: { cmd: '/bin/bash', args: ['-l', '-c', cmd], envs }, stdin: false })) {
    const e = event?.event
    if (e?.case === 'data' && e.value.output.case === 'stdout') out.stdout += Buffer.from(e.value.output.value).toString()
    if (e?.case === 'data' && e.value.output.case === 'stderr') out.stderr += Buffer.from(e.value.output.value).toString()
    if (e?.case === 'end') out.exitCode = e.value.exitCode
  }
  return out
}

async function upload(id: string, file: string, body: string, user = 'user'): Promise<number> {
  const res = await fetch(`${apiUrl}/files?path=${encodeURIComponent(file)}&username=${user}`, {
    method: 'POST',
    headers: { 'e2b-sandbox-id': id, 'x-api-key': apiKey(), 'content-type': 'application/octet-stream' },
    body,
  })
  await res.arrayBuffer()
  return res.status
}

async function download(id: string, file: string, user = 'user'): Promise<{ status: number; body: string }> {
  const res = await fetch(`${apiUrl}/files?path=${encodeURIComponent(file)}&username=${user}`, { headers: { 'e2b-sandbox-id': id, 'x-api-key': apiKey() } })
  return { status: res.status, body: await res.text() }
}

/** The agent's host pid: the child of the sandbox's init (sandlot-init). */
function agentPid(id: string): number {
  const init = fs.readFileSync(path.join(home, 'sandboxes', id, 'init.pid'), 'utf8').trim()
  const children = fs.readFileSync(`/proc/${init}/task/${init}/children`, 'utf8').trim().split(/\s+/)
  assert.equal(children.length, 1, `the init has one child, the agent: ${children}`)
  return Number(children[0])
}

/** Checks the agent and its init come from its own image, whatever the sandbox's image is. */
function assertAgentIsSelfContained(id: string): void {
  const init = fs.readFileSync(path.join(home, 'sandboxes', id, 'init.pid'), 'utf8').trim()
  assert.equal(fs.readFileSync(`/proc/${init}/cmdline`, 'utf8').split('\0')[0], '/opt/sandlot/bin/sandlot-init')
  const pid = agentPid(id)
  const objects = [...new Set(fs.readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').map((l) => l.split(/\s+/)[5] ?? '').filter((f) => /\.so|\.node$/.test(f)))]
  assert.ok(objects.some((f) => f.endsWith('/lib/libc.so.6')), `the agent has a libc: ${objects.join(' ')}`)
  for (const f of objects) assert.match(f, /^\/opt\/sandlot\/(lib|node_modules)\//, `the agent maps only its own image's libraries: ${objects.join(' ')}`)
  const environ = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')
  assert.ok(!environ.some((e) => e.startsWith('LD_')), `nothing in the agent's environment for the loader: ${environ.join(' ')}`)
}

/** The checks every image with a shell passes. */
function suiteFor(image: () => string, opts: { groupsInTerminal?: string } = {}) {
  let id = ''
  before(async () => {
    id = (await createSandbox({ template: image(), metadata: { suite: 'any-image' } })).id
  })
  after(async () => {
    if (id) await killSandbox(id)
  })

  test('the agent and its init run from its own image, on its own loader and libraries', () => {
    assertAgentIsSelfContained(id)
  })

  test('files: write, read and list as user and root', async () => {
    assert.equal(await upload(id, 'hello.txt', 'Hello World!'), 200)
    assert.deepEqual(await download(id, '/home/user/hello.txt'), { status: 200, body: 'Hello World!' })
    assert.equal(await upload(id, '/root/mine.txt', 'root made it', 'root'), 200)
    assert.deepEqual(await download(id, '/root/mine.txt', 'root'), { status: 200, body: 'root made it' })
    const { entries } = await clients(id, 'user').fs.listDir({ path: '/home/user', depth: 1 })
    const hello = entries.find((e) => e.name === 'hello.txt')
    assert.ok(hello, `listed: ${entries.map((e) => e.name)}`)
    assert.equal(hello.type, FileType.FILE)
    assert.equal(`${hello.owner}:${hello.group}`, 'user:user')
    assert.equal(hello.size, 12n)
    const mine = (await clients(id, 'root').fs.stat({ path: '/root/mine.txt' })).entry
    assert.equal(`${mine?.owner}:${mine?.group}`, 'root:root')
    const made = await clients(id, 'user').fs.makeDir({ path: 'dir/sub' }).catch((e: Error) => e)
    assert.ok(!(made instanceof Error), String(made))
  })

  test('commands: as user and root, with exit codes, env, home and the OOM mark', async () => {
    const u = await sh(id, 'echo "$(id -u) $(id -g) $HOME $USER $(pwd) $FOO"; cat /proc/self/oom_score_adj; exit 7', 'user', { FOO: 'bar' })
    assert.equal(u.stdout, '1000 1000 /home/user user /home/user bar\n500\n', u.stderr)
    assert.equal(u.exitCode, 7)
    const r = await sh(id, 'echo "$(id -u) $HOME"; touch /etc/root-was-here && echo wrote', 'root')
    assert.equal(r.stdout, '0 /root\nwrote\n', r.stderr)
    assert.equal(r.exitCode, 0)
    const denied = await sh(id, 'touch /etc/user-was-here', 'user')
    assert.notEqual(denied.exitCode, 0)
    const missing = await clients(id, 'user').process.start({ process: { cmd: 'no-such-command', args: [], envs: {} } })[Symbol.asyncIterator]().next().catch((e: unknown) => e)
    assert.ok(missing instanceof ConnectError && missing.code === Code.InvalidArgument, String(missing))
    assert.match(missing.message, /failed to start process 'no-such-command': not found/)
  })

  test("what the user runs has none of the agent's loader settings, libraries or socket", async () => {
    const r = await sh(id, 'env; echo ---; cat /proc/self/maps; echo ---; ls /proc/self/fd; readlink /proc/self/fd/3')
    const [env, maps, fds] = r.stdout.split('---\n')
    assert.doesNotMatch(env!, /^LD_/m)
    assert.doesNotMatch(env!, /^SANDLOT_/m, "the agent's own settings stay its own")
    assert.doesNotMatch(maps!, /\/opt\/sandlot/)
    assert.match(fds!, /\/dev\/null\n$/, 'fd 3 of a command is /dev/null, never the listening socket')
  })

  test('a terminal works, as the user with its groups, without the listening socket', async () => {
    const t = await terminal(id, 'echo "sum=$((6*7)) groups=$(id -G) oom=$(cat /proc/self/oom_score_adj)"; ls /proc/self/fd/3 2>/dev/null || echo no-fd-3; exit 3\n')
    assert.match(t.output, /sum=42 groups=(.*) oom=500\n/)
    assert.equal(/sum=42 groups=(.*) oom/.exec(t.output)![1], opts.groupsInTerminal ?? '1000')
    assert.match(t.output, /no-fd-3\n/)
    assert.equal(t.exitCode, 3)
  })

  return () => id
}

describe('the agent in any image', { concurrency: false }, () => {
  before(() => fs.mkdirSync(imagesDir, { recursive: true }))
  after(() => {
    const d = db()
    try {
      d.prepare('DELETE FROM templates WHERE name LIKE ?').run(`%${suffix}`)
    } finally {
      d.close()
    }
    fs.rmSync(imagesDir, { recursive: true, force: true })
  })

  describe('a static busybox and nothing else (no libc, no /etc)', () => {
    const name = `busybox${suffix}`
    const sandbox = suiteFor(() => (makeImage(name, busybox), name))
    test('the image has no shared library at all, and `user` was made by the agent', async () => {
      const id = sandbox()
      const r = await sh(id, 'ls /lib /usr/lib /lib64 2>&1; grep "^user:" /etc/passwd; grep "^user:" /etc/group; stat -c "%u:%g %a" /home/user; echo $SHELL')
      assert.match(r.stdout, /No such file or directory/)
      assert.match(r.stdout, /^user:x:1000:1000::\/home\/user:\/bin\/sh\nuser:x:1000:\n1000:1000 755\n\/bin\/sh\n$/m, r.stdout)
    })
  })

  describe('a musl image (musl in /lib, no glibc)', () => {
    const name = `musl${suffix}`
    const sandbox = suiteFor(() => (makeImage(name, musl), name))
    test("the user's musl program runs on the image's musl, the agent on its own glibc", async () => {
      const id = sandbox()
      const r = await sh(id, 'musl-hello; find / -xdev -name "libc.so*" -o -xdev -name "ld-linux*"')
      assert.match(r.stdout, /^hello from musl\n/)
      assert.match(r.stdout, /^\/lib\/ld-musl-x86_64\.so\.1$/m, 'mapped from the image')
      assert.doesNotMatch(r.stdout, /opt\/sandlot|ld-linux|libc\.so\.6/, `no glibc in the image and none of the agent's: ${r.stdout}`)
      // Alpine's /etc/passwd had root; `user` is appended with a group of its own, root's entry kept.
      const p = await sh(id, 'head -1 /etc/passwd; grep "^user:" /etc/passwd')
      assert.equal(p.stdout, 'root:x:0:0:root:/root:/bin/ash\nuser:x:1000:1000::/home/user:/bin/sh\n')
    })
  })

  describe('the Debian base (glibc, bash, sudo, its own user)', () => {
    const sandbox = suiteFor(() => 'base', { groupsInTerminal: '1000 27' })
    test("the user's programs use the image's glibc, and sudo works", async () => {
      const id = sandbox()
      const r = await sh(id, 'grep -o "/[^ ]*libc.so.6" /proc/self/maps | sort -u; sudo -n id -u; echo $SHELL; id -G')
      assert.equal(r.stdout, '/usr/lib/x86_64-linux-gnu/libc.so.6\n0\n/bin/bash\n1000\n', r.stderr)
    })
  })

  describe('an empty image: no shell, no tools, no /etc', () => {
    const name = `empty${suffix}`
    let id = ''
    before(async () => {
      makeImage(name, () => {})
      id = (await createSandbox({ template: name, metadata: { suite: 'any-image' } })).id
    })
    after(async () => {
      if (id) await killSandbox(id)
    })

    test('the agent runs, and files work as user and root', async () => {
      assertAgentIsSelfContained(id)
      assert.equal(await upload(id, 'notes/a.txt', 'no shell needed'), 200)
      assert.deepEqual(await download(id, '/home/user/notes/a.txt'), { status: 200, body: 'no shell needed' })
      assert.equal(await upload(id, '/opt/x.txt', 'root', 'root'), 200)
      const { entries } = await clients(id, 'root').fs.listDir({ path: '/', depth: 1 })
      const names = entries.map((e) => e.name).sort()
      for (const n of ['etc', 'home', 'opt', 'root', 'tmp']) assert.ok(names.includes(n), `/ has ${n}: ${names}`)
      const etc = await download(id, '/etc/passwd')
      assert.match(etc.body, /^root:x:0:0:root:\/root:\/bin\/sh\nuser:x:1000:1000::\/home\/user:\/bin\/sh\n$/)
    })

    test('a command or a terminal fails at once and says why', async () => {
      for (const pty of [undefined, { size: { cols: 80, rows: 24 } }]) {
        const err = await clients(id, 'user').process.start({ process: { cmd: '/bin/bash', args: ['-l', '-c', 'true'], envs: {} }, pty })[Symbol.asyncIterator]().next().catch((e: unknown) => e)
        assert.ok(err instanceof ConnectError, String(err))
        assert.equal(err.code, Code.InvalidArgument)
        assert.match(err.message, /failed to start process '\/bin\/bash': not found \(this sandbox's image has neither bash nor \/bin\/sh\)/)
      }
      assert.equal((await download(id, '/home/user/notes/a.txt')).status, 200, 'the agent is still there')
    })
  })
})
