// Big files through the SDK: 200 MiB up and back intact while the client's memory stays far below
// the file's size (the client runs in its own process, which reports its peak RSS); and the CJS
// quickstart example runs as written.
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, describe, test } from 'node:test'
import { Cleanup, root, runScript } from './sdk-env.js'

const MiB = 1 << 20
const cleanup = new Cleanup()
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sandlot-sdk-transfer-'))
after(async () => {
  await cleanup.run()
  fs.rmSync(dir, { recursive: true, force: true })
})

/** Writes `mib` MiB of random bytes to `file`; returns their sha256. */
function randomFile(file: string, mib: number): string {
  const hash = crypto.createHash('sha256')
  const fd = fs.openSync(file, 'w')
  const chunk = Buffer.alloc(MiB)
  for (let i = 0; i < mib; i++) {
    crypto.randomFillSync(chunk)
    hash.update(chunk)
    fs.writeSync(fd, chunk)
  }
  fs.closeSync(fd)
  return hash.digest('hex')
}

async function sha256File(file: string): Promise<string> {
  const hash = crypto.createHash('sha256')
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk)
  return hash.digest('hex')
}

describe('SDK file transfer', { concurrency: true }, () => {
  test('a 200 MiB file goes up and comes back intact while the client stays well under its size in memory', { timeout: 180_000 }, async (t) => {
    const source = path.join(dir, 'big.bin')
    const back = path.join(dir, 'back.bin')
    const sha = randomFile(source, 200)
    const r = await runScript(
      `import { Sandbox } from 'sandlot'
       const baseline = process.memoryUsage().rss
       const sandbox = await Sandbox.create({ metadata: { test: 'transfer' } })
       console.log(JSON.stringify({ id: sandbox.id }))
       const remote = await sandbox.uploadFile('big/big.bin', process.env.SOURCE)
       const sum = await sandbox.process.startAndWait('sha256sum big/big.bin && stat -c %s big/big.bin')
       const bytes = await sandbox.downloadFile(remote, process.env.BACK)
       await sandbox.kill()
       console.log(JSON.stringify({ remote, sum: sum.stdout, bytes, baseline, maxRSS: process.resourceUsage().maxRSS * 1024 }))`,
      { env: { SOURCE: source, BACK: back }, timeoutMs: 150_000 },
    )
    const [first, last] = r.stdout.trim().split('\n').map((l) => JSON.parse(l))
    if (first?.id) cleanup.add(first.id)
    assert.equal(r.code, 0, r.stderr)
    assert.equal(last.remote, '/home/user/big/big.bin')
    const [remoteSum, remoteSize] = last.sum.split('\n')
    assert.equal(remoteSum.split(' ')[0], sha, 'the sandbox has the same bytes')
    assert.equal(Number(remoteSize), 200 * MiB)
    assert.equal(last.bytes, 200 * MiB)
    assert.equal(await sha256File(back), sha, 'the same bytes came back')
    const growth = last.maxRSS - last.baseline
    t.diagnostic(`client peak RSS ${Math.round(last.maxRSS / MiB)} MiB, ${Math.round(growth / MiB)} MiB over its baseline`)
    assert.ok(growth < 150 * MiB, `the client grew by ${Math.round(growth / MiB)} MiB moving a 200 MiB file`)
  })

  test('examples/quickstart.cjs runs through the CommonJS build', { timeout: 60_000 }, async () => {
    const r = await runScript(fs.readFileSync(path.join(root, 'examples/quickstart.cjs'), 'utf8'), { cjs: true, timeoutMs: 45_000 })
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /^\[stdout\] 3\.\d+\.\d+\npython3 exited with 0\nnotes\/: todo\.txt\ntodo\.txt says: write more tests\n$/)
  })
})
