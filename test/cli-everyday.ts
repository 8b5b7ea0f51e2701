// The sandlot CLI's everyday cases (exec with stdin, env, cwd and user; its messages when the server
// is down, the sandbox gone or the URL not Sandlot's; cp both ways; ls; --json; usage errors), for
// any way of running the CLI: `everydayCases(title, cliRunner(() => how))`.
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { randomBytes, createHash } from 'node:crypto'
import fs from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { apiKey } from './helpers.js'
import { root } from './sdk-env.js'

/** How to run the CLI: the program, the arguments before the CLI's own, where, with what environment. */
export interface CliCommand {
  command: string
  args: string[]
  cwd: string
  env: NodeJS.ProcessEnv
}

/** The built CLI of this checkout. */
export const checkoutCli: CliCommand = { command: process.execPath, args: ['packages/cli/dist/main.js'], cwd: root, env: process.env }

export interface CliResult {
  code: number | null
  stdout: string
  stderr: string
}

export interface CliRunner {
  /** Runs the CLI to its end (blocking this process). */
  cli(args: string[], env?: Record<string, string>, input?: string | Buffer): CliResult
  /** As cli(), without blocking this process (for servers the test itself runs). */
  cliAsync(args: string[], env?: Record<string, string>): Promise<CliResult>
}

/** Runs the CLI as `how()` says (read at each call: an installed CLI is there only once its test's setup ran). */
export function cliRunner(how: () => CliCommand): CliRunner {
  return {
    cli(args, env = {}, input) {
      const c = how()
      const r = spawnSync(c.command, [...c.args, ...args], { cwd: c.cwd, env: { ...c.env, ...env }, encoding: 'utf8', input, maxBuffer: 64 * 2 ** 20 })
      return { code: r.status, stdout: r.stdout, stderr: r.stderr }
    },
    cliAsync(args, env = {}) {
      const c = how()
      return new Promise((resolve) => {
        const child = spawn(c.command, [...c.args, ...args], { cwd: c.cwd, env: { ...c.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
        let stdout = ''
        let stderr = ''
        child.stdout.on('data', (d) => (stdout += d))
        child.stderr.on('data', (d) => (stderr += d))
        child.on('close', (code) => resolve({ code, stdout, stderr }))
      })
    },
  }
}

/** No stack trace: no "    at …" lines. */
const noStack = (text: string) => assert.doesNotMatch(text, /^\s+at /m, text)

/**
 * The everyday cases, run by test/cli.test.ts through the checkout and by test/cli-install.test.ts
 * through the binary installed outside the repo.
 */
export function everydayCases(title: string, { cli, cliAsync }: CliRunner): void {
  describe(title, () => {
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
      const version = JSON.parse(fs.readFileSync(path.join(root, 'packages/cli/package.json'), 'utf8')).version
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
}
