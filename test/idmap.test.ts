// Each sandbox has its own host ids and its own kernel budgets; the template is owned by ids no
// sandbox has and seen by each as its own root's files through an idmapped mount; ranges survive a
// daemon restart and go back to the pool when their sandbox is destroyed.
import Database from 'better-sqlite3'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import os from 'node:os'
import { after, before, describe, test } from 'node:test'
import { IdRanges, RANGE_SIZE, ensureIdLayout } from '../packages/server/src/runtime/idmap.js'
import { createSandbox, home, killSandbox, run, spawnDaemon, startBackground, waitFor, type Daemon } from './helpers.js'

const CLAIMS_DB = '/run/sandlot/id-ranges.db'

/** The host pid of a sandbox's init, from its directory under a daemon's home. */
const initPid = (id: string, daemonHome = home) => Number(fs.readFileSync(path.join(daemonHome, 'sandboxes', id, 'init.pid'), 'utf8'))

/** The sandbox's uid and gid maps as the host reads them: [inside, outside, count]. */
function maps(id: string, daemonHome = home): { uid: number[]; gid: number[] } {
  const read = (file: string) => fs.readFileSync(`/proc/${initPid(id, daemonHome)}/${file}`, 'utf8').trim().split(/\s+/).map(Number)
  return { uid: read('uid_map'), gid: read('gid_map') }
}

/** Host owner "uid:gid" of a path inside a running sandbox, seen through its init's root. */
function hostOwner(id: string, file: string): string {
  const st = fs.statSync(`/proc/${initPid(id)}/root${file}`)
  return `${st.uid}:${st.gid}`
}

function readOnly<T>(file: string, query: string, ...params: unknown[]): T[] {
  const db = new Database(file, { readonly: true, fileMustExist: true })
  try {
    return db.prepare(query).all(...params) as T[]
  } finally {
    db.close()
  }
}

// Opens inotify instances (at most 1024) until the kernel refuses one, writes how many it got and the
// errno of the refusal, then holds them for at most two minutes.
const EXHAUST = `import ctypes, time
libc = ctypes.CDLL(None, use_errno=True)
fds = []
while len(fds) < 1024:
    fd = libc.inotify_init1(0)
    if fd < 0:
        break
    fds.append(fd)
open('/tmp/inotify-held', 'w').write('%d %d' % (len(fds), ctypes.get_errno()))
time.sleep(120)
`
// One inotify instance: prints its fd, or -1 and the errno.
const ONE = `import ctypes; libc = ctypes.CDLL(None, use_errno=True); fd = libc.inotify_init1(0); print(fd, ctypes.get_errno())`
const EMFILE = 24
// Creates POSIX message queues (10 messages of 8 KiB, at most 64) until the kernel refuses one;
// prints how many and the errno. The queues outlive the script, in the sandbox's ipc namespace.
const MQUEUES = (tag: string) => `python3 - <<'EOF'
import ctypes, os
rt = ctypes.CDLL('librt.so.1', use_errno=True)
class Attr(ctypes.Structure):
    _fields_ = [('flags', ctypes.c_long), ('maxmsg', ctypes.c_long), ('msgsize', ctypes.c_long), ('curmsgs', ctypes.c_long)]
rt.mq_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.POINTER(Attr)]
attr = Attr(0, 10, 8192, 0)
n = 0
while n < 64 and rt.mq_open(b'/${tag}-%d' % n, os.O_CREAT | os.O_RDWR, 0o600, ctypes.byref(attr)) >= 0:
    n += 1
print(n, ctypes.get_errno())
EOF`

describe('id ranges', () => {
  let a = ''
  let b = ''
  before(async () => {
    ;[a, b] = await Promise.all([createSandbox({ metadata: { suite: 'idmap' } }), createSandbox({ metadata: { suite: 'idmap' } })]).then((s) => s.map((x) => x.id))
  })
  after(async () => {
    await Promise.all([a, b].filter(Boolean).map(killSandbox))
  })

  test("two sandboxes' roots are different host uids, 65536 ids each, the same for groups", () => {
    const [ma, mb] = [maps(a), maps(b)]
    assert.equal(ma.uid[0], 0)
    assert.equal(ma.uid[2], 65536)
    assert.deepEqual(ma.gid, ma.uid)
    assert.deepEqual(mb.gid, mb.uid)
    const [ra, rb] = [ma.uid[1]!, mb.uid[1]!]
    assert.ok(ra >= 100000 && rb >= 100000, `ranges ${ra} and ${rb} come from root's subordinate ids`)
    assert.ok(Math.abs(ra - rb) >= 65536, `ranges at ${ra} and ${rb} do not overlap`)
  })

  test("the template's files belong to neither; inside they are root's, and sudo works for user", async () => {
    const { rootfs } = readOnly<{ rootfs: string }>(path.join(home, 'sandlot.db'), "SELECT rootfs FROM templates WHERE name = 'base'")[0]!
    const [ra, rb] = [maps(a).uid[1]!, maps(b).uid[1]!]
    for (const file of ['etc/passwd', 'usr/bin/sudo', 'home/user']) {
      const st = fs.statSync(path.join(rootfs, file))
      for (const base of [ra, rb]) {
        assert.ok(st.uid < base || st.uid >= base + 65536, `${file} (uid ${st.uid}) is not in the range at ${base}`)
        assert.ok(st.gid < base || st.gid >= base + 65536, `${file} (gid ${st.gid}) is not in the range at ${base}`)
      }
    }
    const inside = await run(a, 'stat -c "%n %u:%g %a" /etc/passwd /usr/bin/sudo /home/user')
    assert.equal(inside.stdout, '/etc/passwd 0:0 644\n/usr/bin/sudo 0:0 4755\n/home/user 1000:1000 755\n', inside.stderr)
    const sudo = await run(a, 'sudo -n id -u')
    assert.equal(sudo.stdout, '0\n', sudo.stderr)
    // Host users cannot reach the template's files (nor run its setuid ones as the templates' ids).
    assert.equal(fs.statSync(path.dirname(rootfs)).mode & 0o777, 0o700)
    const reach = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'test', '-e', path.join(rootfs, 'usr/bin/sudo')])
    assert.equal(reach.status, 1, 'nobody cannot see the template')
    // The same template file, on the host through each sandbox: each range's own root.
    assert.equal(hostOwner(a, '/etc/passwd'), `${ra}:${ra}`)
    assert.equal(hostOwner(b, '/etc/passwd'), `${rb}:${rb}`)
  })

  test('files made inside have the ids of their maker, in its own range on the host', async () => {
    const r = await run(a, 'touch /home/user/mine /tmp/mine && sudo touch /root-file && sudo chown 4242:4343 /tmp/mine && stat -c "%u:%g" /home/user/mine /root-file /tmp/mine')
    assert.equal(r.stdout, '1000:1000\n0:0\n4242:4343\n', r.stderr)
    const base = maps(a).uid[1]!
    assert.equal(hostOwner(a, '/home/user/mine'), `${base + 1000}:${base + 1000}`)
    assert.equal(hostOwner(a, '/root-file'), `${base}:${base}`)
    assert.equal(hostOwner(a, '/tmp/mine'), `${base + 4242}:${base + 4343}`)
    // A template file changed inside is copied up with the sandbox's ids, and the template is untouched.
    const w = await run(a, 'echo "# changed" | sudo tee -a /etc/passwd >/dev/null && stat -c "%u:%g" /etc/passwd && tail -1 /etc/passwd')
    assert.equal(w.stdout, '0:0\n# changed\n', w.stderr)
    assert.equal(hostOwner(a, '/etc/passwd'), `${base}:${base}`)
    assert.doesNotMatch((await run(b, 'tail -1 /etc/passwd')).stdout, /changed/)
  })

  test("a sandbox that uses up its inotify instances leaves the others' and the host's alone", async () => {
    await startBackground(a, `python3 -c "${EXHAUST}"`)
    const held = await waitFor(async () => (await run(a, 'cat /tmp/inotify-held 2>/dev/null')).stdout || undefined, 20_000, 'the inotify instances to be taken')
    const [count, errno] = held.split(' ').map(Number)
    assert.ok(count! > 0 && count! <= 128, `it got ${count} before the kernel refused (fs.inotify.max_user_instances is 128)`)
    assert.equal(errno, EMFILE)
    // Spent for the whole sandbox, its root included ...
    assert.match((await run(a, `python3 -c "${ONE}"`, { user: 'root' })).stdout, new RegExp(`^-1 ${EMFILE}\\n$`))
    // ... and for nobody else.
    const other = await run(b, `python3 -c "${ONE}"`)
    assert.match(other.stdout, /^\d+ /, other.stderr)
    assert.ok(Number(other.stdout.split(' ')[0]) >= 0, `another sandbox can create an inotify instance: ${other.stdout}`)
    const host = spawnSync('/usr/bin/python3', ['-c', ONE], { encoding: 'utf8' })
    assert.ok(Number(host.stdout.split(' ')[0]) >= 0, `the host's root can create an inotify instance: ${host.stdout}`)
  })

  test("a sandbox that uses up its message-queue bytes leaves the others' alone", async () => {
    const mine = await run(a, MQUEUES('user'))
    const [count, errno] = mine.stdout.trim().split(' ').map(Number)
    // RLIMIT_MSGQUEUE is 800 KiB: about nine such queues.
    assert.ok(count! > 0 && count! < 64, `it got ${count} queues before the kernel refused: ${mine.stdout}${mine.stderr}`)
    assert.equal(errno, EMFILE)
    assert.equal((await run(a, MQUEUES('root'), { user: 'root' })).stdout, `0 ${EMFILE}\n`, 'spent for the whole sandbox')
    const other = await run(b, MQUEUES('user'))
    assert.equal(other.stdout, `${count} ${EMFILE}\n`, 'another sandbox has a budget of its own')
  })
})

describe('id ranges across a daemon restart', () => {
  const daemonHome = path.resolve('.sandlot-test/idmap-restart')
  const port = Number(process.env.SANDLOT_TEST_PORT ?? 3190) + 4
  const url = `http://127.0.0.1:${port}`
  let server: Daemon | undefined
  const key = () => fs.readFileSync(path.join(daemonHome, 'api-key'), 'utf8').trim()
  const call = async (method: string, route: string) => {
    const body = method === 'POST' ? { body: '{}', headers: { 'x-api-key': key(), 'content-type': 'application/json' } } : { headers: { 'x-api-key': key() } }
    const res = await fetch(`${url}${route}`, { method, ...body })
    return { status: res.status, json: res.status === 204 ? undefined : await res.json() }
  }
  const start = async () => {
    const log = fs.openSync(path.join(path.dirname(daemonHome), 'idmap-restart-server.log'), 'a')
    server = spawnDaemon(port, { SANDLOT_HOME: daemonHome }, log)
    await waitFor(() => fetch(`${url}/health`).then((r) => r.ok, () => false), 120_000, 'the daemon to be ready')
  }
  /** The range a sandbox has in the daemon's store. */
  const stored = (id: string) => JSON.parse(readOnly<{ id_range: string }>(path.join(daemonHome, 'sandlot.db'), 'SELECT id_range FROM sandboxes WHERE id = ?', id)[0]!.id_range) as { index: number; hostId: number }
  const claimOf = (index: number) => readOnly<{ sandbox: string }>(CLAIMS_DB, 'SELECT sandbox FROM claims WHERE idx = ?', index)[0]?.sandbox

  after(async () => {
    const list = await call('GET', '/api/v1/sandboxes').catch(() => undefined)
    for (const s of list?.json ?? []) await call('DELETE', `/api/v1/sandboxes/${s.id}`)
    // A clean stop: the daemon detaches its own mounts (the crash was the tests' business).
    await server?.stop('SIGTERM')
  })

  test('a re-adopted sandbox keeps its range, claimed for it, and a new one gets another; destroying frees it', async () => {
    await start()
    for (const s of (await call('GET', '/api/v1/sandboxes')).json) await call('DELETE', `/api/v1/sandboxes/${s.id}`)
    const kept: string = (await call('POST', '/api/v1/sandboxes')).json.id
    const ids = stored(kept)
    assert.equal(maps(kept, daemonHome).uid[1], ids.hostId, 'the store records the range the sandbox runs with')
    assert.equal(claimOf(ids.index), path.join(daemonHome, 'sandboxes', kept))

    await server!.stop('SIGKILL')
    // As if /run had been wiped meanwhile: the restarted daemon claims the range again for its sandbox.
    const db = new Database(CLAIMS_DB)
    db.prepare('DELETE FROM claims WHERE idx = ?').run(ids.index)
    db.close()
    await start()

    assert.equal((await call('GET', `/api/v1/sandboxes/${kept}`)).status, 200)
    assert.equal(claimOf(ids.index), path.join(daemonHome, 'sandboxes', kept))
    assert.equal(maps(kept, daemonHome).uid[1], ids.hostId)
    const next: string = (await call('POST', '/api/v1/sandboxes')).json.id
    assert.notEqual(stored(next).hostId, ids.hostId)
    assert.notEqual(maps(next, daemonHome).uid[1], ids.hostId)

    assert.equal((await call('DELETE', `/api/v1/sandboxes/${kept}`)).status, 204)
    assert.equal(claimOf(ids.index), undefined, 'the range is free again')
    assert.equal(claimOf(stored(next).index), path.join(daemonHome, 'sandboxes', next))
  })
})

describe('the id layout and claims (no sandboxes)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sandlot-idmap-'))
  const files = { uid: path.join(dir, 'subuid'), gid: path.join(dir, 'subgid') }
  after(() => fs.rmSync(dir, { recursive: true, force: true }))

  test("root is given 4096 ranges above everyone's, after the range it had; both files alike", () => {
    for (const f of [files.uid, files.gid]) fs.writeFileSync(f, 'root:100000:65536\nalice:165536:65536')
    const layout = ensureIdLayout(files)
    const added = 'root:231072:268369920\n'
    assert.equal(fs.readFileSync(files.uid, 'utf8'), `root:100000:65536\nalice:165536:65536\n${added}`)
    assert.equal(fs.readFileSync(files.gid, 'utf8'), fs.readFileSync(files.uid, 'utf8'))
    assert.deepEqual(layout.template, { hostId: 100000, size: RANGE_SIZE })
    assert.equal(layout.ownerBase, 231072)
    assert.equal(layout.sandboxes.length, 4094)
    assert.equal(layout.sandboxes[0], 231072 + RANGE_SIZE)
    // Read again, nothing more is added.
    assert.deepEqual(ensureIdLayout(files), layout)
    assert.equal(fs.readFileSync(files.uid, 'utf8').split(added).length, 2)
  })

  test('differing ranges for root in the two files are refused', () => {
    fs.writeFileSync(files.uid, 'root:100000:268435456\n')
    fs.writeFileSync(files.gid, 'root:200000:268435456\n')
    assert.throws(() => ensureIdLayout(files), /differ/)
  })

  test('claims: never one range twice, also across daemons; freed, re-adopted, and taken back when stale', () => {
    const layout = { template: { hostId: 100000, size: RANGE_SIZE }, ownerBase: 165536, sandboxes: [231072, 296608, 362144] }
    const db = path.join(dir, 'claims.db')
    const one = new IdRanges(layout, path.join(dir, 'one'), db)
    const two = new IdRanges(layout, path.join(dir, 'two'), db)
    try {
      const a = one.claim('a')
      const b = two.claim('b')
      const c = one.claim('c')
      assert.deepEqual([a, b, c].map((x) => x.hostId).sort(), layout.sandboxes)
      assert.deepEqual([a, b, c].map((x) => x.owner), [a, b, c].map((x) => 165536 + x.index))
      assert.throws(() => two.claim('d'), /All 3 id ranges/)
      // Another daemon cannot free or take a claim that is not its own.
      two.release('a', a)
      assert.equal(two.adopt('x', a), false)
      assert.throws(() => two.claim('d'), /All 3 id ranges/)
      // Freed, the range goes to the next sandbox; re-adopting an existing claim keeps it.
      one.release('a', a)
      const d = two.claim('d')
      assert.equal(d.hostId, a.hostId)
      assert.equal(one.adopt('c', c), true)
      // A claim whose sandbox never got a directory is taken back once it is old and none is free.
      const claims = new Database(db)
      claims.prepare('UPDATE claims SET claimed_at = 0 WHERE sandbox = ?').run(path.join(dir, 'one', 'c'))
      claims.close()
      assert.equal(two.claim('e').hostId, c.hostId)
      // At start, a daemon drops its own claims for sandboxes it does not have.
      two.sweep(new Set(['d']))
      assert.equal(one.claim('f').hostId, b.hostId)
    } finally {
      one.close()
      two.close()
    }
  })
})
