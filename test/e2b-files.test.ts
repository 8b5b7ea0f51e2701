// The official e2b SDK's `sandbox.files` against Sandlot: reads and writes (text, bytes, streams,
// gzip, many files at once), listing, stat, directories, rename, remove, watches, signed URLs.
import { FileNotFoundError, InvalidArgumentError, Sandbox, type FilesystemEvent } from 'e2b'
import { bytes, create, sleep, until } from './e2b-env.js'
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'

describe('e2b SDK: files', { concurrency: true }, () => {
  let s: Sandbox
  before(async () => {
    s = await create()
  })
  after(() => s?.kill())

  test('text round trip; relative paths are under /home/user; parents are created', async () => {
    const info = await s.files.write('/home/user/text/deep/hello.txt', 'Hello, Sandlot ✓\n')
    assert.deepEqual({ ...info }, { path: '/home/user/text/deep/hello.txt', name: 'hello.txt', type: 'file', metadata: undefined })
    assert.equal(await s.files.read('/home/user/text/deep/hello.txt'), 'Hello, Sandlot ✓\n')
    const rel = await s.files.write('text/rel.txt', 'relative')
    assert.equal(rel.path, '/home/user/text/rel.txt')
    assert.equal(await s.files.read('text/rel.txt'), 'relative')
    // Overwrite replaces the whole file; an empty file reads back empty.
    await s.files.write('/home/user/text/deep/hello.txt', 'short')
    assert.equal(await s.files.read('/home/user/text/deep/hello.txt'), 'short')
    await s.files.write('/home/user/text/empty.txt', '')
    assert.equal(await s.files.read('/home/user/text/empty.txt'), '')
    assert.equal((await s.commands.run('cat /home/user/text/deep/hello.txt; stat -c %U /home/user/text/deep/hello.txt')).stdout, 'shortuser\n')
  })

  test('bytes round trip: every byte value, read as bytes, blob and stream; gzip both ways; a stream upload', async () => {
    const all = Uint8Array.from({ length: 512 }, (_, i) => i % 256)
    await s.files.write('/home/user/bin/all.bin', all.buffer)
    assert.deepEqual(await s.files.read('/home/user/bin/all.bin', { format: 'bytes' }), all)
    const blob = await s.files.read('/home/user/bin/all.bin', { format: 'blob' })
    assert.deepEqual(new Uint8Array(await blob.arrayBuffer()), all)
    const stream = await s.files.read('/home/user/bin/all.bin', { format: 'stream' })
    assert.deepEqual(new Uint8Array(await new Response(stream).arrayBuffer()), all)
    assert.equal((await s.commands.run('sha256sum < /home/user/bin/all.bin')).stdout.split(' ')[0], await sha256(all))

    const big = 'gzip me '.repeat(50_000)
    await s.files.write('/home/user/bin/gz.txt', big, { gzip: true })
    assert.equal(await s.files.read('/home/user/bin/gz.txt', { gzip: true }), big)
    assert.equal((await s.commands.run('wc -c < /home/user/bin/gz.txt')).stdout, `${big.length}\n`)

    const chunks = ['streamed ', 'in ', 'three chunks']
    const body = new ReadableStream<Uint8Array>({
      pull(c) {
        const next = chunks.shift()
        if (next === undefined) c.close()
        else c.enqueue(bytes(next))
      },
    })
    const w = await s.files.write('/home/user/bin/streamed.txt', body)
    assert.equal(w.path, '/home/user/bin/streamed.txt')
    assert.equal(await s.files.read('/home/user/bin/streamed.txt'), 'streamed in three chunks')
  })

  test('write many files at once: files.write([{ path, data }, …]) and writeFiles', async () => {
    const entries = Array.from({ length: 20 }, (_, i) => ({ path: `/home/user/many/f${String(i).padStart(2, '0')}.txt`, data: `file ${i}\n` }))
    const infos = await s.files.write(entries)
    assert.deepEqual(infos.map((i) => [i.path, i.name, i.type]), entries.map((e) => [e.path, e.path.split('/').pop(), 'file']))
    assert.equal((await s.commands.run('cat /home/user/many/*.txt')).stdout, entries.map((e) => e.data).join(''))
    const more = await s.files.writeFiles([
      { path: '/home/user/many/sub/a.txt', data: 'A' },
      { path: 'many/sub/b.bin', data: Uint8Array.from([1, 2, 3]).buffer },
    ])
    assert.deepEqual(more.map((i) => i.path), ['/home/user/many/sub/a.txt', '/home/user/many/sub/b.bin'])
    assert.equal(await s.files.read('/home/user/many/sub/a.txt'), 'A')
    assert.deepEqual(await s.files.read('/home/user/many/sub/b.bin', { format: 'bytes' }), Uint8Array.from([1, 2, 3]))
    assert.deepEqual(await s.files.write([]), [])
  })

  test('list with depth: entries with type and absolute path; depth 2 and 3 go deeper', async () => {
    await s.files.write([
      { path: '/home/user/tree/a.txt', data: 'a' },
      { path: '/home/user/tree/sub/b.txt', data: 'bb' },
      { path: '/home/user/tree/sub/deeper/c.txt', data: 'ccc' },
    ])
    const names = (entries: { path: string; type?: string }[]) => entries.map((e) => `${e.type}:${e.path.replace('/home/user/tree/', '')}`).sort()
    assert.deepEqual(names(await s.files.list('/home/user/tree')), ['dir:sub', 'file:a.txt'])
    assert.deepEqual(names(await s.files.list('/home/user/tree', { depth: 2 })), ['dir:sub', 'dir:sub/deeper', 'file:a.txt', 'file:sub/b.txt'])
    assert.deepEqual(names(await s.files.list('tree', { depth: 3 })), ['dir:sub', 'dir:sub/deeper', 'file:a.txt', 'file:sub/b.txt', 'file:sub/deeper/c.txt'])
    const b = (await s.files.list('/home/user/tree/sub')).find((e) => e.name === 'b.txt')!
    assert.equal(b.size, 2)
    assert.equal(b.owner, 'user')
    await assert.rejects(s.files.list('/home/user/tree/a.txt'), InvalidArgumentError)
    await assert.rejects(s.files.list('/home/user/no-such-dir'), FileNotFoundError)
    await assert.rejects(s.files.list('/home/user/tree', { depth: 0 }), InvalidArgumentError)
  })

  test('exists and getInfo: files, directories, symlinks; FileNotFoundError for a missing path', async () => {
    const before = Date.now()
    await s.files.write('/home/user/info/f.txt', '12345')
    assert.equal(await s.files.exists('/home/user/info/f.txt'), true)
    assert.equal(await s.files.exists('/home/user/info'), true)
    assert.equal(await s.files.exists('/home/user/info/missing.txt'), false)
    const f = await s.files.getInfo('/home/user/info/f.txt')
    assert.deepEqual(
      { name: f.name, type: f.type, path: f.path, size: f.size, mode: f.mode, permissions: f.permissions, owner: f.owner, group: f.group, symlinkTarget: f.symlinkTarget },
      { name: 'f.txt', type: 'file', path: '/home/user/info/f.txt', size: 5, mode: 0o644, permissions: '-rw-r--r--', owner: 'user', group: 'user', symlinkTarget: undefined },
    )
    assert.ok(f.modifiedTime && Math.abs(f.modifiedTime.getTime() - before) < 60_000, `modifiedTime ${f.modifiedTime?.toISOString()}`)
    const d = await s.files.getInfo('/home/user/info')
    assert.equal(d.type, 'dir')
    assert.equal(d.permissions, 'drwxr-xr-x')
    await s.commands.run('ln -s /home/user/info/f.txt /home/user/info/link')
    const l = await s.files.getInfo('/home/user/info/link')
    assert.equal(l.symlinkTarget, '/home/user/info/f.txt')
    assert.equal(l.type, 'file')
    const root = await s.files.getInfo('/root', { user: 'root' })
    assert.equal(root.owner, 'root')
    await assert.rejects(s.files.getInfo('/home/user/info/missing.txt'), FileNotFoundError)
    await assert.rejects(s.files.read('/home/user/info/missing.txt'), FileNotFoundError)
    await assert.rejects(s.files.read('/home/user/info'), InvalidArgumentError)
  })

  test('makeDir: true, then false when it exists; parents created; owned by the user (or root)', async () => {
    assert.equal(await s.files.makeDir('/home/user/mk/a/b/c'), true)
    assert.equal(await s.files.makeDir('/home/user/mk/a/b/c'), false)
    assert.equal(await s.files.makeDir('/home/user/mk/a'), false)
    const c = await s.files.getInfo('/home/user/mk/a/b/c')
    assert.equal(c.type, 'dir')
    assert.equal(c.owner, 'user')
    assert.equal(await s.files.makeDir('/opt/by-root', { user: 'root' }), true)
    assert.equal((await s.files.getInfo('/opt/by-root')).owner, 'root')
    await s.files.write('/home/user/mk/file', 'x')
    await assert.rejects(s.files.makeDir('/home/user/mk/file'), InvalidArgumentError)
  })

  test('remove: a file, a whole tree; removing a missing path is fine', async () => {
    await s.files.write([
      { path: '/home/user/rm/one.txt', data: '1' },
      { path: '/home/user/rm/tree/x/y.txt', data: 'y' },
    ])
    await s.files.remove('/home/user/rm/one.txt')
    assert.equal(await s.files.exists('/home/user/rm/one.txt'), false)
    await s.files.remove('/home/user/rm/tree')
    assert.equal(await s.files.exists('/home/user/rm/tree'), false)
    await s.files.remove('/home/user/rm/never-was')
    assert.deepEqual(await s.files.list('/home/user/rm'), [])
  })

  test('rename: a file and a directory; the entry describes the new path; a missing source is FileNotFoundError', async () => {
    await s.files.write('/home/user/mv/old.txt', 'moving')
    const moved = await s.files.rename('/home/user/mv/old.txt', '/home/user/mv/new.txt')
    assert.equal(moved.path, '/home/user/mv/new.txt')
    assert.equal(moved.name, 'new.txt')
    assert.equal(moved.type, 'file')
    assert.equal(await s.files.exists('/home/user/mv/old.txt'), false)
    assert.equal(await s.files.read('/home/user/mv/new.txt'), 'moving')
    await s.files.makeDir('/home/user/mv/dir')
    await s.files.write('/home/user/mv/dir/inside.txt', 'in')
    const dir = await s.files.rename('/home/user/mv/dir', '/home/user/mv/dir2')
    assert.equal(dir.type, 'dir')
    assert.equal(await s.files.read('/home/user/mv/dir2/inside.txt'), 'in')
    await assert.rejects(s.files.rename('/home/user/mv/nope', '/home/user/mv/nope2'), FileNotFoundError)
  })

  test('watchDir recursive: create, write, rename and remove events, names relative to the watched directory', async () => {
    const dir = '/home/user/watched'
    await s.files.makeDir(dir)
    const events: FilesystemEvent[] = []
    const seen = (name: string, type: string) => events.some((e) => e.name === name && e.type === type)
    const handle = await s.files.watchDir(dir, (e) => void events.push(e), { recursive: true })
    try {
      await s.files.makeDir(`${dir}/sub`)
      // Events in a new subdirectory are reported once its creation is (the watch follows it).
      await until(async () => seen('sub', 'create'), 3000, 'the create event of sub')
      await s.files.write(`${dir}/sub/a.txt`, 'a')
      await until(async () => seen('sub/a.txt', 'write'), 3000, 'the write event of sub/a.txt')
      await s.files.rename(`${dir}/sub/a.txt`, `${dir}/sub/b.txt`)
      await s.files.remove(`${dir}/sub/b.txt`)
      await until(async () => seen('sub/b.txt', 'remove'), 3000, 'the remove event of sub/b.txt')
    } finally {
      await handle.stop()
    }
    const order = ['sub:create', 'sub/a.txt:create', 'sub/a.txt:write', 'sub/a.txt:rename', 'sub/b.txt:create', 'sub/b.txt:remove']
    const got = events.map((e) => `${e.name}:${e.type}`)
    const idx = order.map((o) => got.indexOf(o))
    assert.ok(idx.every((i, k) => i >= 0 && (k === 0 || i > idx[k - 1]!)), `events in order ${order.join(', ')}; got ${got.join(', ')}`)
    assert.ok(!seen('sub/a.txt', 'remove'), `a rename is not a remove: ${got.join(', ')}`)
  })

  test('watchDir: not recursive sees only direct children; includeEntry; nothing after stop', async () => {
    const dir = '/home/user/flat'
    await s.files.write(`${dir}/sub/keep.txt`, 'k')
    const events: FilesystemEvent[] = []
    const handle = await s.files.watchDir(dir, (e) => void events.push(e), { includeEntry: true })
    await s.files.write(`${dir}/sub/deep.txt`, 'deep')
    await s.files.write(`${dir}/top.txt`, 'top')
    await until(async () => events.some((e) => e.name === 'top.txt' && e.type === 'write'), 3000, 'the write event of top.txt')
    assert.ok(!events.some((e) => e.name.includes('deep')), JSON.stringify(events))
    const created = events.find((e) => e.name === 'top.txt' && e.type === 'create')
    assert.equal(created?.entry?.path, `${dir}/top.txt`)
    assert.equal(created?.entry?.type, 'file')
    await handle.stop()
    const count = events.length
    await s.files.write(`${dir}/after-stop.txt`, 'x')
    await sleep(300)
    assert.equal(events.length, count, JSON.stringify(events.slice(count)))
    await assert.rejects(s.files.watchDir('/home/user/no-such-dir', () => {}), FileNotFoundError)
  })

  test('uploadUrl and downloadUrl: plain fetch with no headers; bound to path, operation and user', async () => {
    const path = '/home/user/signed/up.txt'
    const up = await s.uploadUrl(path)
    const form = new FormData()
    form.append('file', new Blob(['via a signed url']), 'up.txt')
    const posted = await fetch(up, { method: 'POST', body: form })
    assert.equal(posted.status, 200, await posted.clone().text())
    assert.deepEqual(await posted.json(), [{ path, name: 'up.txt', type: 'file' }])
    assert.equal(await s.files.read(path), 'via a signed url')
    assert.equal((await s.files.getInfo(path)).owner, 'user')

    const down = await s.downloadUrl(path)
    const got = await fetch(down)
    assert.equal(got.status, 200)
    assert.equal(await got.text(), 'via a signed url')

    // A signature opens only what it was made for.
    const otherPath = new URL(down)
    otherPath.searchParams.set('path', '/home/user/.bashrc')
    assert.equal((await fetch(otherPath)).status, 401)
    assert.equal((await fetch(up)).status, 401, 'an upload URL does not download')
    const unsigned = new URL(down)
    unsigned.searchParams.delete('signature')
    assert.equal((await fetch(unsigned)).status, 401, 'no signature, no key: refused')

    // As another user.
    const asRoot = await s.uploadUrl('/root/signed.txt', { user: 'root' })
    const rootForm = new FormData()
    rootForm.append('file', new Blob(['root file']), 'signed.txt')
    assert.equal((await fetch(asRoot, { method: 'POST', body: rootForm })).status, 200)
    assert.equal((await s.files.getInfo('/root/signed.txt', { user: 'root' })).owner, 'root')
  })

  test('a download URL with useSignatureExpiration works until it expires, then 401', async () => {
    await s.files.write('/home/user/signed/expiring.txt', 'soon gone')
    // The SDK counts whole seconds from now, so 1 s could lapse before the first fetch.
    const url = await s.downloadUrl('/home/user/signed/expiring.txt', { useSignatureExpiration: 3 })
    assert.ok(new URL(url).searchParams.get('signature_expiration'))
    const now = await fetch(url)
    assert.equal(now.status, 200)
    assert.equal(await now.text(), 'soon gone')
    await sleep(4200)
    const later = await fetch(url)
    assert.equal(later.status, 401)
    assert.deepEqual(await later.json(), { code: 401, message: 'signature is already expired' })
  })

  test('file metadata: write with { metadata } stores it; getInfo and list return it; a new write replaces or clears it', async () => {
    const w = await s.files.write('/home/user/meta/m.txt', 'm', { metadata: { Owner: 'alice', stage: 'draft' } })
    assert.deepEqual(w.metadata, { owner: 'alice', stage: 'draft' })
    assert.deepEqual((await s.files.getInfo('/home/user/meta/m.txt')).metadata, { owner: 'alice', stage: 'draft' })
    assert.deepEqual((await s.files.list('/home/user/meta'))[0]?.metadata, { owner: 'alice', stage: 'draft' })
    await s.files.write('/home/user/meta/m.txt', 'm2', { metadata: { stage: 'final' } })
    assert.deepEqual((await s.files.getInfo('/home/user/meta/m.txt')).metadata, { stage: 'final' })
    // Stored as extended attributes, where tools in the sandbox see them.
    const xattrs = await s.commands.run(`python3 -c "import os; print(sorted(os.listxattr('/home/user/meta/m.txt')))"`)
    assert.equal(xattrs.stdout.trim(), "['user.e2b.stage']")
    // envd: an upload without metadata clears it (the SDK reports none as undefined).
    const plain = await s.files.write('/home/user/meta/m.txt', 'no metadata now')
    assert.equal(plain.metadata, undefined)
    assert.equal((await s.files.getInfo('/home/user/meta/m.txt')).metadata, undefined)
    // Multi-file writes give every file the same metadata; a directory's out-of-band user.e2b.* shows too.
    const many = await s.files.write([{ path: '/home/user/meta/a.txt', data: 'a' }, { path: '/home/user/meta/b.txt', data: 'b' }], { metadata: { batch: '7' } })
    assert.deepEqual(many.map((f) => f.metadata), [{ batch: '7' }, { batch: '7' }])
    await s.commands.run(`python3 -c "import os; os.setxattr('/home/user/meta', 'user.e2b.kind', b'folder')"`)
    assert.deepEqual((await s.files.getInfo('/home/user/meta')).metadata, { kind: 'folder' })
    const listed = Object.fromEntries((await s.files.list('/home/user/meta')).map((e) => [e.name, e.metadata]))
    assert.deepEqual(listed, { 'a.txt': { batch: '7' }, 'b.txt': { batch: '7' }, 'm.txt': undefined })
    await assert.rejects(s.files.write('/home/user/meta/big.txt', 'x', { metadata: { big: 'v'.repeat(5000) } }), /at most 4096/)
  })
})

async function sha256(data: Uint8Array): Promise<string> {
  const { createHash } = await import('node:crypto')
  return createHash('sha256').update(data).digest('hex')
}
