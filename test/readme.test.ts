// The README's quick start, run as written: `npm start` (on a port and home of its own, the template
// cache shared), then every line of its CLI block through `npx`, one after the other in the
// checkout (the interactive shell on a pty, `logs -f` alongside the lines after it), then the SDK
// snippet of "The Sandlot SDK".
import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import pty from 'node-pty'
import { killAllOn, removeHome } from './helpers.js'
import { root } from './sdk-env.js'

const port = Number(process.env.SANDLOT_TEST_PORT ?? 3190) + 23
const url = `http://127.0.0.1:${port}`
const home = path.join(root, '.sandlot-test', `readme-${port}`)
const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8')

/** The fenced blocks of a README section (from its heading to the next of the same level), by language. */
function blocks(heading: string, lang: string): string[] {
  const at = readme.indexOf(`\n${heading}\n`)
  assert.ok(at >= 0, `README has no "${heading}"`)
  const level = heading.split(' ')[0]
  const next = readme.indexOf(`\n${level} `, at + heading.length + 2)
  const section = readme.slice(at, next < 0 ? undefined : next)
  return [...section.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1]!)
}

/** Where the client lines talk to: this server, its key read from its home as on the server's machine. */
const clientEnv = (): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = { ...process.env, SANDLOT_API_URL: url, SANDLOT_HOME: home, COLUMNS: '200', npm_config_update_notifier: 'false' }
  delete env.SANDLOT_API_KEY
  return env
}

let server: ChildProcess | undefined
let serverOut = ''
const key = () => fs.readFileSync(path.join(home, 'api-key'), 'utf8').trim()


describe("the README's quick start, as written", () => {
  before(async () => {
    const [start] = blocks('## Quick start (as root, on Debian 12 with Node 20)', 'sh')
    assert.match(start!, /^npm start\b/m)
    removeHome(home)
    // npm start on its own home and port; the shared template cache and a bridge of its own, as the suites'.
    server = spawn('npm', ['start'], {
      cwd: root,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        SANDLOT_HOME: home,
        SANDLOT_LISTEN: `127.0.0.1:${port}`,
        SANDLOT_TEMPLATES_DIR: path.join(root, '.sandlot-test/templates'),
        SANDLOT_BRIDGE: `sandlot${port}`,
        SANDLOT_SUBNET: `10.${(port >> 8) & 255}.${port & 255}.0/24`,
        npm_config_update_notifier: 'false',
      },
    })
    server.stdout!.on('data', (d) => (serverOut += d))
    server.stderr!.on('data', (d) => (serverOut += d))
    const deadline = Date.now() + 180_000
    for (;;) {
      if (server.exitCode !== null) assert.fail(`npm start exited:\n${serverOut.slice(-3000)}`)
      if ((await fetch(`${url}/health`).catch(() => undefined))?.status === 200) break
      if (Date.now() > deadline) assert.fail(`GET /health did not answer 200 within 3 minutes:\n${serverOut.slice(-3000)}`)
      await new Promise((r) => setTimeout(r, 500))
    }
    assert.equal(fs.statSync(path.join(home, 'api-key')).mode & 0o777, 0o600)
  })

  after(async () => {
    if (server?.exitCode === null) {
      await Promise.resolve()
        .then(() => killAllOn(url, key()))
        .catch(() => {})
      const exited = new Promise((r) => server!.once('exit', r))
      process.kill(-server.pid!, 'SIGTERM')
      await exited
    }
    removeHome(home)
  })

  test('every line of the CLI block runs through npx and does what its comment says', async () => {
    const cliBlock = blocks('## Quick start (as root, on Debian 12 with Node 20)', 'sh')[1]!
    const lines = cliBlock.split('\n').filter((l) => l.trim())
    assert.ok(lines.length >= 10 && lines.every((l) => /(^|\| )npx sandlot |^id=\$\(npx sandlot /.test(l)), cliBlock)
    let id = ''
    const sh = (line: string) => {
      const r = spawnSync('bash', ['-c', line], { cwd: root, env: { ...clientEnv(), id }, encoding: 'utf8', timeout: 120_000 })
      assert.equal(r.status, 0, `${line}\n${r.stdout}${r.stderr}`)
      return r.stdout
    }
    // What each line must show, besides its exit code 0.
    const checks: [RegExp, (out: string) => void][] = [
      [/sandlot exec \$id -- python -c/, (out) => assert.equal(out, `hello from ${id}\n`)],
      [/\| npx sandlot exec \$id -- python3/, (out) => assert.equal(out, '42\n')],
      [/sandlot cp \.\/README\.md \$id:\/home\/user\//, () => assert.equal(sh('npx sandlot exec $id -- cat /home/user/README.md'), readme)],
      [/sandlot ls\b/, (out) => assert.match(out, new RegExp(`^${id}\\s+base\\s+running\\b.*owner=me`, 'm'))],
      [/sandlot metrics \$id/, () => {}],
      [/sandlot pause \$id/, () => assert.match(sh('npx sandlot ls'), new RegExp(`^${id}\\s+base\\s+paused\\b`, 'm'))],
      [/sandlot resume \$id/, () => assert.match(sh('npx sandlot ls'), new RegExp(`^${id}\\s+base\\s+running\\b`, 'm'))],
      [/sandlot snapshot \$id/, (out) => assert.match(out, /^\S+\n$/)],
      [/sandlot fork \$id -c 3/, (out) => assert.equal(out.trim().split('\n').filter((l) => /^i[a-z0-9]{20}$/.test(l)).length, 3)],
      [/sandlot kill \$id/, () => {}],
    ]
    let follower: Promise<{ code: number | null; out: string }> | undefined
    for (const line of lines) {
      if (line.startsWith('id=$(')) {
        id = sh(`${line}\nprintf %s "$id"`)
        assert.match(id, /^i[a-z0-9]{20}$/)
      } else if (/sandlot shell \$id/.test(line)) {
        assert.equal(await onTerminal(line, id), 0)
      } else if (/sandlot logs -f \$id/.test(line)) {
        // It follows until the sandbox has ended: the block's last line.
        const child = spawn('bash', ['-c', line], { cwd: root, env: { ...clientEnv(), id }, stdio: ['ignore', 'pipe', 'pipe'] })
        let out = ''
        child.stdout.on('data', (d) => (out += d))
        child.stderr.on('data', (d) => (out += d))
        follower = new Promise((resolve) => child.on('close', (code) => resolve({ code, out })))
      } else {
        const out = sh(line)
        checks.find(([re]) => re.test(line))?.[1](out)
      }
    }
    for (const [re] of checks) assert.ok(lines.some((l) => re.test(l)), `the README has no line for ${re}`)
    assert.ok(follower, 'no logs -f line')
    const followed = await Promise.race([follower, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('logs -f did not end after kill')), 60_000))])
    assert.equal(followed.code, 0, followed.out)
    assert.match(followed.out, /sandbox created/)
    assert.match(followed.out, /sandbox paused/)
  })

  test('the SDK snippet of "The Sandlot SDK" runs as written', () => {
    const [snippet] = blocks('## The Sandlot SDK', 'js')
    assert.match(snippet!, /from 'sandlot'/)
    // In the checkout, where `sandlot` is the SDK's workspace.
    const file = path.join(root, '.sandlot-test', `readme-sdk-${port}.mjs`)
    fs.writeFileSync(file, snippet!)
    try {
      const r = spawnSync(process.execPath, [file], { cwd: root, env: clientEnv(), encoding: 'utf8', timeout: 120_000 })
      assert.equal(r.status, 0, r.stderr)
      assert.equal(r.stdout, 'Hello World!\n')
    } finally {
      fs.rmSync(file, { force: true })
    }
  })
})

/** A line run on a pty of its own (an interactive shell): types a command and exit once it prompts. */
function onTerminal(line: string, id: string): Promise<number> {
  const p = pty.spawn('bash', ['-c', line], { cwd: root, env: { ...(clientEnv() as Record<string, string>), id }, cols: 100, rows: 30 })
  let out = ''
  let typed = false
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      p.kill('SIGKILL')
      reject(new Error(`the shell did not end:\n${out}`))
    }, 90_000)
    const type = () => {
      if (typed) return
      typed = true
      p.write('echo "in the shell: $((6 * 7)) as $(id -un)"; exit\r')
    }
    p.onData((d) => {
      out += d
      // Its prompt ends in "$ " once the escape sequences (colours, title, bracketed paste) are left out.
      if (/\$\s*$/.test(out.replace(/\x1b\][^\x07]*\x07|\x1b\[[0-9;?]*[a-zA-Z]/g, ''))) type()
    })
    // Should a prompt of its own not end in "$", type anyway once the shell has had time to start.
    const fallback = setTimeout(type, 15_000)
    p.onExit(({ exitCode }) => {
      clearTimeout(timer)
      clearTimeout(fallback)
      try {
        assert.match(out, /in the shell: 42 as user/)
        resolve(exitCode)
      } catch (err) {
        reject(err)
      }
    })
  })
}
