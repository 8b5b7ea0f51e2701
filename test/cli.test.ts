// The sandlot CLI against the test server: create, ls, exec, cp, kill, and its messages when things are wrong.
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { randomBytes, createHash } from 'node:crypto'
import fs from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { api, apiKey } from './helpers.js'

const cli = (args: string[], env: Record<string, string> = {}, input?: string | Buffer) => {
  const r = spawnSync(process.execPath, ['packages/cli/dist/main.js', ...args], { env: { ...process.env, ...env }, encoding: 'utf8', input, maxBuffer: 64 * 2 ** 20 })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

/** As cli(), without blocking this process (for servers the test itself runs). */
const cliAsync = (args: string[], env: Record<string, string> = {}) =>
  new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, ['packages/cli/dist/main.js', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    child.on('exit', (code) => resolve({ code, stdout, stderr }))
  })

/** No stack trace: no "    at …" lines. */
const noStack = (text: string) => assert.doesNotMatch(text, /^\s+at /m, text)

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

describe('sandlot CLI, everyday use', () => {
  let id = ''
  before(() => {
    const created = cli(['create', '--keep-alive', '10m', '--metadata', 'owner=cli-everyday'])
    assert.equal(created.code, 0, created.stderr)
    id = created.stdout.trim().split('\n').at(-1)!
  })
  after(() => {
    cli(['kill', id])
  })

  test('exec passes piped stdin on, small or big, and closes it at its end', () => {
    const small = cli(['exec', id, '--', 'cat'], {}, 'hi\n')
    assert.equal(small.code, 0, small.stderr)
    assert.equal(small.stdout, 'hi\n')
    const big = randomBytes(3 * 2 ** 20)
    const sum = cli(['exec', id, '--', 'sha256sum'], {}, big)
    assert.equal(sum.stdout.split(' ')[0], createHash('sha256').update(big).digest('hex'))
    // Nothing piped: the command sees end of file at once.
    assert.equal(cli(['exec', id, '--', 'wc', '-c'], {}, '').stdout.trim(), '0')
  })

  test('exec --env, --cwd, --user, and what each says when wrong', () => {
    const r = cli(['exec', '--env', 'FOO=bar baz', '-e', 'FROM_HERE', '--cwd', '/tmp', '--user', 'root', id, '--', 'sh', '-c', 'echo "$FOO|$FROM_HERE|$(pwd)|$(id -un)"'], { FROM_HERE: 'mine' })
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout, 'bar baz|mine|/tmp|root\n')
    // Options after the id belong to the command.
    assert.equal(cli(['exec', id, 'echo', '--env', 'x']).stdout, '--env x\n')

    const noUser = cli(['exec', '--user', 'nobody-here', id, '--', 'true'])
    assert.equal(noUser.code, 1)
    assert.match(noUser.stderr, new RegExp(`User "nobody-here" does not exist in sandbox ${id}`))
    assert.doesNotMatch(noUser.stderr, /API key/)
    const noDir = cli(['exec', '--cwd', '/no/such/dir', id, '--', 'true'])
    assert.equal(noDir.code, 1)
    assert.match(noDir.stderr, /cwd '\/no\/such\/dir' does not exist/)
    const badEnv = cli(['exec', '--env', '1X=2', id, '--', 'true'])
    assert.equal(badEnv.code, 2)
    assert.match(badEnv.stderr, /--env takes NAME=VALUE.*got "1X=2"/)
    const unset = cli(['exec', '--env', 'SURELY_NOT_SET_HERE', id, '--', 'true'])
    assert.equal(unset.code, 2)
    assert.match(unset.stderr, /SURELY_NOT_SET_HERE is not set/)
  })

  test('exec says when the server is down, the sandbox is gone, or the URL is not a Sandlot server', async () => {
    const down = await cliAsync(['exec', id, '--', 'true'], { SANDLOT_API_URL: 'http://127.0.0.1:1', SANDLOT_API_KEY: apiKey() })
    assert.equal(down.code, 1)
    assert.match(down.stderr, /^sandlot: Cannot reach the Sandlot server at http:\/\/127\.0\.0\.1:1 \(ECONNREFUSED\)\. Is it running\?/)
    noStack(down.stderr)

    const gone = await cliAsync(['exec', 'i00000000000000000000', '--', 'true'])
    assert.equal(gone.code, 1)
    assert.match(gone.stderr, /Sandbox i00000000000000000000 doesn't exist \(any more\), or is not running/)

    const other = http.createServer((req, res) => {
      res.writeHead(req.url === '/' ? 200 : 404, { 'content-type': 'text/html' })
      res.end('<html><body>Some other web server</body></html>')
    })
    await new Promise<void>((r) => other.listen(0, '127.0.0.1', r))
    try {
      const url = `http://127.0.0.1:${(other.address() as AddressInfo).port}`
      for (const args of [['exec', id, '--', 'true'], ['ls']]) {
        const r = await cliAsync(args, { SANDLOT_API_URL: url, SANDLOT_API_KEY: apiKey() })
        assert.equal(r.code, 1)
        assert.match(r.stderr, new RegExp(`The server at ${url} answered GET /api/v1/sandboxes\\S* with HTTP 404 \\(text/html\\) and a body that is not Sandlot's JSON: .*Some other web server.*Is SANDLOT_API_URL the address of a Sandlot server\\?`))
        noStack(r.stderr)
      }
    } finally {
      other.close()
    }
  })

  test('cp copies files and directories into a sandbox and out of it, as docker cp', () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sandlot-cp-'))
    try {
      const src = path.join(tmp, 'proj')
      fs.mkdirSync(path.join(src, 'sub/deeper'), { recursive: true })
      fs.writeFileSync(path.join(src, 'a.txt'), 'alpha\n')
      fs.writeFileSync(path.join(src, 'sub/deeper/big.bin'), randomBytes(2 * 2 ** 20))
      fs.chmodSync(path.join(src, 'a.txt'), 0o751)

      // A directory to a path that does not exist: it becomes that path.
      let r = cli(['cp', src, `${id}:/home/user/copied`])
      assert.equal(r.code, 0, r.stderr)
      const listing = cli(['exec', id, '--', 'sh', '-c', 'cd /home/user/copied && find . -type f | sort && stat -c "%a %U" a.txt && sha256sum sub/deeper/big.bin'])
      const local = createHash('sha256').update(fs.readFileSync(path.join(src, 'sub/deeper/big.bin'))).digest('hex')
      assert.equal(listing.stdout, `./a.txt\n./sub/deeper/big.bin\n751 user\n${local}  sub/deeper/big.bin\n`)
      // To a directory that exists: into it, under its own name.
      r = cli(['cp', src, `${id}:/home/user/copied`])
      assert.equal(r.code, 0, r.stderr)
      assert.equal(cli(['exec', id, '--', 'cat', '/home/user/copied/proj/a.txt']).stdout, 'alpha\n')

      // Out of the sandbox: a directory, then a file into a local directory.
      const out = path.join(tmp, 'back')
      r = cli(['cp', `${id}:/home/user/copied`, out])
      assert.equal(r.code, 0, r.stderr)
      assert.equal(fs.readFileSync(path.join(out, 'a.txt'), 'utf8'), 'alpha\n')
      assert.equal(fs.readFileSync(path.join(out, 'proj/a.txt'), 'utf8'), 'alpha\n')
      assert.ok(fs.readFileSync(path.join(out, 'sub/deeper/big.bin')).equals(fs.readFileSync(path.join(src, 'sub/deeper/big.bin'))))
      r = cli(['cp', `${id}:/home/user/copied/a.txt`, tmp])
      assert.equal(r.code, 0, r.stderr)
      assert.equal(fs.readFileSync(path.join(tmp, 'a.txt'), 'utf8'), 'alpha\n')
      // A file in, to a new name.
      r = cli(['cp', path.join(src, 'a.txt'), `${id}:/tmp/renamed.txt`])
      assert.equal(r.code, 0, r.stderr)
      assert.equal(r.stderr, `Copied ${path.join(src, 'a.txt')} to ${id}:/tmp/renamed.txt (6 bytes).\n`)
      assert.equal(cli(['exec', id, '--', 'cat', '/tmp/renamed.txt']).stdout, 'alpha\n')

      // --json: what was copied, both ways, files and directories.
      const size = 6 + 2 * 2 ** 20
      r = cli(['cp', '--json', src, `${id}:/tmp/json-dir`])
      assert.equal(r.code, 0, r.stderr)
      assert.deepEqual(JSON.parse(r.stdout), { from: src, to: `${id}:/tmp/json-dir`, type: 'directory', files: 2, bytes: size })
      r = cli(['cp', '--json', `${id}:/tmp/json-dir`, path.join(tmp, 'json-back')])
      assert.deepEqual(JSON.parse(r.stdout), { from: `${id}:/tmp/json-dir`, to: path.join(tmp, 'json-back'), type: 'directory', files: 2, bytes: size })
      r = cli(['cp', '--json', `${id}:/tmp/renamed.txt`, path.join(tmp, 'r.txt')])
      assert.deepEqual(JSON.parse(r.stdout), { from: `${id}:/tmp/renamed.txt`, to: path.join(tmp, 'r.txt'), type: 'file', files: 1, bytes: 6 })
      assert.match(cli(['cp', `${id}:/tmp/json-dir`, path.join(tmp, 'plain')]).stderr, /^Copied \S+:\/tmp\/json-dir\/ to \S+\/plain\/ \(2 files, 2097158 bytes\)\.\n$/)

      const missing = cli(['cp', `${id}:/no/such/path`, tmp])
      assert.equal(missing.code, 1)
      assert.match(missing.stderr, new RegExp(`${id}:/no/such/path does not exist`))
      assert.equal(cli(['cp', tmp, tmp]).code, 2)
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true })
    }
  })

  test('ls shows relative times in columns that fit the width; --json gives the data', () => {
    const wide = cli(['ls'], { COLUMNS: '200' })
    const line = wide.stdout.split('\n').find((l) => l.startsWith(id))!
    assert.match(line, /\bbase\s+running\s+(just now|\d+ s ago|\d+ min ago)\s+in (9|10) min\s+0\s+owner=cli-everyday/)
    for (const columns of [70, 50]) {
      const narrow = cli(['ls'], { COLUMNS: String(columns) })
      const lines = narrow.stdout.trimEnd().split('\n')
      for (const l of lines) assert.ok(l.length <= columns, `"${l}" is wider than ${columns}`)
      // The columns that do not fit go, from the right.
      assert.match(lines.find((l) => l.startsWith(id))!, /^i\w+\s+base(\s+running(\s+(just now|\d+ s ago|\d+ min ago))?)?(\s|$)/)
    }
    const list = JSON.parse(cli(['ls', '--json']).stdout)
    const mine = list.find((s: { id: string }) => s.id === id)
    assert.deepEqual(mine.metadata, { owner: 'cli-everyday' })
    assert.equal(typeof mine.startedAt, 'string')
  })

  test('--json on the commands that print data', () => {
    const info = JSON.parse(cli(['keep-alive', id, '10m', '--json']).stdout)
    assert.equal(info.id, id)
    assert.deepEqual(JSON.parse(cli(['network', id, '--json']).stdout), { allowInternetAccess: null, allowOut: [], denyOut: [], allowPublicTraffic: true, maskRequestHost: null })
    assert.match(JSON.parse(cli(['url', id, '8000', '--json']).stdout).url, new RegExp(`^http://8000-${id}\\.`))
  })

  test('--version, help per command, and usage errors that say what is wrong', () => {
    const version = JSON.parse(fs.readFileSync('packages/cli/package.json', 'utf8')).version
    assert.equal(cli(['--version']).stdout, `${version}\n`)
    const help = cli(['exec', '--help'])
    assert.equal(help.code, 0)
    assert.match(help.stdout, /Usage: sandlot exec \[options\] <id> <command\.\.\.>/)
    assert.match(help.stdout, /--env <name=value>/)
    const flag = cli(['ls', '--frob'])
    assert.equal(flag.code, 2)
    assert.match(flag.stderr, /^sandlot: unknown option '--frob'/)
    const typo = cli(['exce', id])
    assert.equal(typo.code, 2)
    assert.match(typo.stderr, /unknown command 'exce'\n\(Did you mean exec\?\)/)
    const missing = cli(['keep-alive', id])
    assert.equal(missing.code, 2)
    assert.match(missing.stderr, /missing required argument 'duration'/)
    assert.match(cli(['completion']).stdout, /complete -o default -F _sandlot sandlot/)
  })
})
