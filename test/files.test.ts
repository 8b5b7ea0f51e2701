// Files through the server's data plane: streamed both ways, owned by the sandbox user, and a
// Connect filesystem call, all inside the sandbox.
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import { Readable } from 'node:stream'
import { after, before, describe, test } from 'node:test'
import { apiKey, apiUrl, createSandbox, killSandbox, readFile, run } from './helpers.js'

const MiB = 1024 * 1024

/** A deterministic pseudo-random body of `size` bytes, produced chunk by chunk. */
function body(size: number, hash: crypto.Hash): Readable {
  let sent = 0
  let counter = 0
  return new Readable({
    read() {
      if (sent >= size) return this.push(null)
      const chunk = crypto.createHash('sha512').update(String(counter++)).digest()
      const block = Buffer.concat(Array(16384).fill(chunk)).subarray(0, Math.min(MiB, size - sent))
      sent += block.length
      hash.update(block)
      this.push(block)
    },
  })
}

describe('files through the data plane', () => {
  let id = ''
  before(async () => {
    id = (await createSandbox()).id
  })
  after(() => killSandbox(id))

  test('a 100 MiB upload and download stream through the server intact', async () => {
    const sent = crypto.createHash('sha256')
    const up = await fetch(`${apiUrl}/files?path=${encodeURIComponent('/home/user/big.bin')}`, {
      method: 'POST',
      headers: { 'e2b-sandbox-id': id, 'x-api-key': apiKey(), 'content-type': 'application/octet-stream' },
      body: Readable.toWeb(body(100 * MiB, sent)) as ReadableStream,
      duplex: 'half',
    } as RequestInit)
    assert.equal(up.status, 200, await up.clone().text())
    assert.deepEqual(((await up.json()) as { path: string }[])[0]!.path, '/home/user/big.bin')
    const digest = sent.digest('hex')

    const inside = await run(id, 'sha256sum /home/user/big.bin; stat -c %U:%s /home/user/big.bin')
    assert.equal(inside.stdout, `${digest}  /home/user/big.bin\nuser:${100 * MiB}\n`)

    const down = await fetch(`${apiUrl}/files?path=/home/user/big.bin`, { headers: { 'e2b-sandbox-id': id, 'x-api-key': apiKey() } })
    assert.equal(down.status, 200)
    const got = crypto.createHash('sha256')
    let size = 0
    for await (const chunk of down.body as unknown as AsyncIterable<Uint8Array>) {
      got.update(chunk)
      size += chunk.length
    }
    assert.equal(size, 100 * MiB)
    assert.equal(got.digest('hex'), digest)
  })

  test('a missing file is a 404 naming the path', async () => {
    const r = await readFile(id, '/home/user/nope.txt')
    assert.equal(r.status, 404)
    assert.match(r.body.toString(), /nope\.txt/)
  })

  test('Connect filesystem calls run inside the sandbox', async () => {
    await run(id, 'mkdir -p /home/user/dir && echo x > /home/user/dir/a')
    const res = await fetch(`${apiUrl}/filesystem.Filesystem/ListDir`, {
      method: 'POST',
      headers: { 'e2b-sandbox-id': id, 'x-api-key': apiKey(), 'content-type': 'application/json' },
      body: JSON.stringify({ path: '/home/user/dir', depth: 1 }),
    })
    assert.equal(res.status, 200)
    const { entries } = (await res.json()) as { entries: { name: string; owner: string; type: string }[] }
    assert.deepEqual(entries.map((e) => [e.name, e.owner, e.type]), [['a', 'user', 'FILE_TYPE_FILE']])
  })
})
