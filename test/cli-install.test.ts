// The CLI and the SDK as users get them: packed (npm pack) and installed outside the repo, the CLI
// with `npm install -g`, the SDK into a project of its own; then used against the test server: the
// CLI's everyday cases (test/cli-everyday.ts) through the installed binary, and the SDK's create,
// reconnect after keepAlive, and a list that waits for a server coming up.
import assert from 'node:assert/strict'
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { cliRunner, everydayCases, type CliCommand } from './cli-everyday.js'
import { api, apiKey, apiUrl, killSandbox } from './helpers.js'
import { root } from './sdk-env.js'

const npm = (args: string[], cwd: string) => execFileSync('npm', [...args, '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], { cwd, encoding: 'utf8', stdio: 'pipe' })

/** A port nothing listens on until the list test forwards it to the server. */
const laterPort = Number(process.env.SANDLOT_TEST_PORT ?? 3190) + 24

describe('installed outside the repo', () => {
  let tmp = ''
  let sdkTarball = ''
  let project = ''
  let installed: CliCommand | undefined
  // The server's address and key only: no SANDLOT_HOME, no path into the checkout.
  const env = () => {
    const e: NodeJS.ProcessEnv = { ...process.env, SANDLOT_API_URL: apiUrl, SANDLOT_API_KEY: apiKey() }
    delete e.SANDLOT_HOME
    delete e.NODE_PATH
    return e
  }
  /** Runs a script of the SDK project to its end. */
  const node = (file: string, code: string, extraEnv: Record<string, string> = {}) => {
    fs.writeFileSync(path.join(project, file), code)
    return spawnSync(process.execPath, [file], { cwd: project, env: { ...env(), ...extraEnv }, encoding: 'utf8', timeout: 90_000 })
  }

  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sandlot-install-'))
    const packed = JSON.parse(execFileSync('npm', ['pack', '--json', '-w', 'sandlot', '-w', '@sandlot/cli', '--pack-destination', tmp], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })) as { name: string; filename: string; files: { path: string }[] }[]
    const sdk = packed.find((p) => p.name === 'sandlot')!
    const cli = packed.find((p) => p.name === '@sandlot/cli')!
    sdkTarball = path.join(tmp, sdk.filename)
    // What is published: built JavaScript, no TypeScript sources, nothing private.
    assert.ok(cli.files.some((f) => f.path === 'dist/main.js') && cli.files.some((f) => f.path === 'bin/sandlot.js'))
    assert.ok(!cli.files.some((f) => f.path.startsWith('src/')))
    assert.ok(sdk.files.some((f) => f.path === 'dist/index.mjs'))

    const prefix = path.join(tmp, 'global')
    npm(['install', '-g', '--prefix', prefix, sdkTarball, path.join(tmp, cli.filename)], tmp)
    installed = { command: path.join(prefix, 'bin/sandlot'), args: [], cwd: tmp, env: env() }

    project = path.join(tmp, 'app')
    fs.mkdirSync(project)
    fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }))
    npm(['install', sdkTarball], project)
  })
  after(() => fs.rmSync(tmp, { recursive: true, force: true }))

  test('npm install -g of the packed CLI gives a sandlot that works, with the SDK and no server inside', () => {
    const lib = path.join(tmp, 'global/lib/node_modules')
    const cliDeps = JSON.parse(fs.readFileSync(path.join(lib, '@sandlot/cli/package.json'), 'utf8')).dependencies
    assert.equal(cliDeps['@sandlot/server'], undefined)
    for (const serverOnly of ['fastify', 'pino', 'better-sqlite3', '@sandlot/server']) {
      assert.ok(!fs.existsSync(path.join(lib, '@sandlot/cli/node_modules', serverOnly)) && !fs.existsSync(path.join(lib, 'sandlot/node_modules', serverOnly)), `${serverOnly} was installed`)
    }
    const { cli } = cliRunner(() => installed!)
    assert.equal(cli(['--version']).stdout.trim(), '0.1.0')
    const created = cli(['create', '--keep-alive', '5m'])
    assert.equal(created.code, 0, created.stderr)
    const id = created.stdout.trim().split('\n').at(-1)!
    try {
      const r = cli(['exec', id, '--', 'sh', '-c', 'cat; echo " from $(id -un)"'], {}, 'hello')
      assert.equal(r.code, 0, r.stderr)
      assert.equal(r.stdout, 'hello from user\n')
      const server = cli(['server'])
      assert.equal(server.code, 1)
      assert.match(server.stderr, /not installed with this CLI\. Run it with "sandlotd"/)
    } finally {
      assert.equal(cli(['kill', id]).code, 0)
    }
  })

  everydayCases('the installed CLI, everyday use', cliRunner(() => installed!))

  test('the SDK installed by path into a project of its own creates a sandbox, runs a command and closes it', () => {
    const r = node(
      'main.js',
      `import { Sandbox } from 'sandlot'
const sandbox = await Sandbox.create()
const out = await sandbox.process.startAndWait('echo "hi from $(hostname)"')
console.log(JSON.stringify({ id: sandbox.id, stdout: out.stdout }))
await sandbox.close()
`,
    )
    assert.equal(r.status, 0, r.stderr)
    const { id, stdout } = JSON.parse(r.stdout)
    assert.equal(stdout, `hi from ${id}`)
    // Closed without keepAlive: the sandbox goes.
    return killSandbox(id).catch(() => {})
  })

  test('from that project: a sandbox kept alive outlives its process, and another process reconnects to it', async () => {
    const made = node(
      'keep.js',
      `import { Sandbox } from 'sandlot'
const sandbox = await Sandbox.create({ metadata: { from: 'keep.js' } })
await sandbox.filesystem.write('note.txt', 'left by ' + process.pid)
await sandbox.keepAlive(120_000)
await sandbox.close()
console.log(JSON.stringify({ id: sandbox.id, pid: process.pid }))
`,
    )
    assert.equal(made.status, 0, made.stderr)
    const { id, pid } = JSON.parse(made.stdout)
    try {
      // Its process has ended; it is still there, held by nobody.
      const info = await api('GET', `/api/v1/sandboxes/${id}`)
      assert.equal(info.status, 200)
      assert.equal(info.json.holds, 0)
      assert.deepEqual(info.json.metadata, { from: 'keep.js' })
      const again = node(
        'again.js',
        `import { Sandbox } from 'sandlot'
const sandbox = await Sandbox.reconnect(${JSON.stringify(id)})
console.log(JSON.stringify({ note: await sandbox.filesystem.read('note.txt') }))
await sandbox.close()
`,
      )
      assert.equal(again.status, 0, again.stderr)
      assert.deepEqual(JSON.parse(again.stdout), { note: `left by ${pid}` })
    } finally {
      await killSandbox(id)
    }
  })

  test('from that project: Sandbox.list() waits for a server that is not up yet, and answers once it is', async () => {
    // The script says when it calls list() against a port nothing listens on; a second later the
    // port starts forwarding to the server, as a server that comes up would.
    fs.writeFileSync(
      path.join(project, 'list.js'),
      `import { Sandbox } from 'sandlot'
console.error('listing')
const started = Date.now()
const list = await Sandbox.list()
console.log(JSON.stringify({ count: list.length, waitedMs: Date.now() - started }))
`,
    )
    const child = spawn(process.execPath, ['list.js'], {
      cwd: project,
      // Retries for long enough on a busy machine.
      env: { ...env(), SANDLOT_API_URL: `http://127.0.0.1:${laterPort}`, SANDLOT_RETRY_TIMEOUT_MS: '60000' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve))
    let forward: net.Server | undefined
    const sockets = new Set<net.Socket>()
    try {
      const deadline = Date.now() + 60_000
      while (!stderr.includes('listing')) {
        assert.ok(child.exitCode === null && Date.now() < deadline, `the script did not start listing: ${stderr}`)
        await new Promise((r) => setTimeout(r, 50))
      }
      await new Promise((r) => setTimeout(r, 1000))
      const target = new URL(apiUrl)
      forward = net.createServer((c) => {
        const s = net.connect(Number(target.port), target.hostname)
        sockets.add(c).add(s)
        c.pipe(s).pipe(c)
        c.on('error', () => s.destroy())
        s.on('error', () => c.destroy())
      })
      await new Promise<void>((resolve) => forward!.listen(laterPort, '127.0.0.1', resolve))
      assert.equal(await exited, 0, stderr)
      const { count, waitedMs } = JSON.parse(stdout)
      assert.equal(typeof count, 'number')
      assert.ok(waitedMs >= 1000, `list answered after ${waitedMs} ms, before the server was up`)
    } finally {
      child.kill()
      forward?.close()
      for (const socket of sockets) socket.destroy()
    }
  })
})
