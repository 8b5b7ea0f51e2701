// The sandlot CLI of this checkout against the test server: create, ls, exec, kill, and its messages when
// things are wrong; then the everyday cases (test/cli-everyday.ts), which test/cli-install.test.ts also
// runs through the CLI installed outside the repo.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { describe, test } from 'node:test'
import { checkoutCli, cliRunner, everydayCases } from './cli-everyday.js'
import { api, apiKey } from './helpers.js'

const { cli } = cliRunner(() => checkoutCli)

describe('sandlot CLI', () => {
  test('create, ls, exec and kill', () => {
    const created = cli(['create', '--template', 'base', '--metadata', 'owner=cli-test', '--metadata', 'team=a=b'])
    assert.equal(created.code, 0, created.stderr)
    const id = created.stdout.trim().split('\n').at(-1)!
    assert.match(id, /^i[a-z0-9]{20}$/)
    try {
      const ls = cli(['ls', '--json'])
      const mine = JSON.parse(ls.stdout).find((s: { id: string }) => s.id === id)
      assert.deepEqual(mine.metadata, { owner: 'cli-test', team: 'a=b' })
      assert.match(cli(['ls']).stdout, new RegExp(`${id}\\s+base`))

      const ok = cli(['exec', id, '--', 'sh', '-c', 'echo to-out; echo to-err >&2; exit 5'])
      assert.equal(ok.stdout, 'to-out\n')
      assert.equal(ok.stderr, 'to-err\n')
      assert.equal(ok.code, 5)
      assert.equal(cli(['exec', id, '--', 'id', '-un']).stdout, 'user\n')
      assert.equal(cli(['exec', '--user', 'root', id, '--', 'id', '-un']).stdout, 'root\n')
      const missing = cli(['exec', id, '--', 'no-such-command'])
      assert.notEqual(missing.code, 0)
      assert.match(missing.stderr, /failed to start process 'no-such-command': not found/)
    } finally {
      const killed = cli(['kill', id, '--json'])
      assert.equal(killed.code, 0, killed.stderr)
      assert.deepEqual(JSON.parse(killed.stdout), { id, killed: true })
    }
    const again = cli(['kill', id])
    assert.equal(again.code, 1)
    assert.match(again.stderr, /doesn't exist/)
    assert.notEqual(cli(['exec', id, '--', 'true']).code, 0)
  })

  test('create keeps the sandbox alive for the limit by default, or --keep-alive; keep-alive extends it', async () => {
    const byDefault = cli(['create'])
    assert.equal(byDefault.code, 0, byDefault.stderr)
    const id = byDefault.stdout.trim().split('\n').at(-1)!
    const short = cli(['create', '--keep-alive', '90s'])
    const shortId = short.stdout.trim().split('\n').at(-1)!
    try {
      assert.match(byDefault.stderr, new RegExp(`for 1h: it is kept alive until .*sandlot keep-alive ${id} DURATION`))
      const endsIn = async (sid: string) => {
        const s = (await api('GET', `/api/v1/sandboxes/${sid}`)).json
        assert.equal(s.holds, 0)
        return Date.parse(s.endAt) - Date.now()
      }
      const limit = await endsIn(id)
      assert.ok(limit > 3_590_000 && limit <= 3_600_000, `default keepAlive ${limit}`)
      assert.match(short.stderr, /for 90s/)
      const ninety = await endsIn(shortId)
      assert.ok(ninety > 80_000 && ninety <= 90_000, `--keep-alive 90s gave ${ninety}`)

      const extended = cli(['keep-alive', shortId, '10m'])
      assert.equal(extended.code, 0, extended.stderr)
      const ten = await endsIn(shortId)
      assert.ok(ten > 590_000 && ten <= 600_000, `keep-alive 10m gave ${ten}`)
      const tooLong = cli(['keep-alive', shortId, '2h'])
      assert.equal(tooLong.code, 1)
      assert.match(tooLong.stderr, /limit of 3600000 ms \(1 hour\)/)
      assert.equal(cli(['keep-alive', shortId, 'soon']).code, 2)
    } finally {
      cli(['kill', id])
      cli(['kill', shortId])
    }
  })

  test("the README's `npx sandlot` runs this CLI (its bin is linked by `npm ci`, before any build)", () => {
    const r = spawnSync('npx', ['--no-install', 'sandlot', '--help'], { encoding: 'utf8' })
    assert.equal(r.status, 0, r.stderr)
    assert.match(r.stdout, /^Usage: sandlot \[options\] \[command\]/m)
  })

  test('says so when the server is not running or the key is wrong', () => {
    const down = cli(['ls'], { SANDLOT_API_URL: 'http://127.0.0.1:1', SANDLOT_API_KEY: apiKey() })
    assert.equal(down.code, 1)
    assert.match(down.stderr, /Cannot reach the Sandlot server at http:\/\/127\.0\.0\.1:1.*Is it running\?/)
    const badKey = cli(['ls'], { SANDLOT_API_KEY: `e2b_${'1'.repeat(40)}` })
    assert.equal(badKey.code, 1)
    assert.match(badKey.stderr, /refused the API key/)
    assert.equal(cli(['frobnicate']).code, 2)
  })
})


everydayCases('sandlot CLI, everyday use (the checkout)', cliRunner(() => checkoutCli))
