// The CLI and the SDK as users get them: packed (npm pack) and installed outside the repo, the CLI
// with `npm install -g`, the SDK into a project of its own; then used against the test server.
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { apiKey, apiUrl, killSandbox } from './helpers.js'
import { root } from './sdk-env.js'

const npm = (args: string[], cwd: string) => execFileSync('npm', [...args, '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], { cwd, encoding: 'utf8', stdio: 'pipe' })

describe('installed outside the repo', () => {
  let tmp = ''
  let sdkTarball = ''
  let cliTarball = ''
  // The server's address and key only: no SANDLOT_HOME, no path into the checkout.
  const env = () => {
    const e: NodeJS.ProcessEnv = { ...process.env, SANDLOT_API_URL: apiUrl, SANDLOT_API_KEY: apiKey() }
    delete e.SANDLOT_HOME
    delete e.NODE_PATH
    return e
  }

  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sandlot-install-'))
    const packed = JSON.parse(execFileSync('npm', ['pack', '--json', '-w', 'sandlot', '-w', '@sandlot/cli', '--pack-destination', tmp], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })) as { name: string; filename: string; files: { path: string }[] }[]
    const sdk = packed.find((p) => p.name === 'sandlot')!
    const cli = packed.find((p) => p.name === '@sandlot/cli')!
    sdkTarball = path.join(tmp, sdk.filename)
    cliTarball = path.join(tmp, cli.filename)
    // What is published: built JavaScript, no TypeScript sources, nothing private.
    assert.ok(cli.files.some((f) => f.path === 'dist/main.js') && cli.files.some((f) => f.path === 'bin/sandlot.js'))
    assert.ok(!cli.files.some((f) => f.path.startsWith('src/')))
    assert.ok(sdk.files.some((f) => f.path === 'dist/index.mjs'))
  })
  after(() => fs.rmSync(tmp, { recursive: true, force: true }))

  test('npm install -g of the packed CLI gives a sandlot that works, with the SDK and no server inside', () => {
    const prefix = path.join(tmp, 'global')
    npm(['install', '-g', '--prefix', prefix, sdkTarball, cliTarball], tmp)
    const bin = path.join(prefix, 'bin/sandlot')
    const lib = path.join(prefix, 'lib/node_modules')
    const cliDeps = JSON.parse(fs.readFileSync(path.join(lib, '@sandlot/cli/package.json'), 'utf8')).dependencies
    assert.equal(cliDeps['@sandlot/server'], undefined)
    for (const serverOnly of ['fastify', 'pino', 'better-sqlite3', '@sandlot/server']) {
      assert.ok(!fs.existsSync(path.join(lib, '@sandlot/cli/node_modules', serverOnly)) && !fs.existsSync(path.join(lib, 'sandlot/node_modules', serverOnly)), `${serverOnly} was installed`)
    }
    const run = (args: string[], input?: string) => spawnSync(bin, args, { cwd: tmp, env: env(), encoding: 'utf8', input })

    assert.equal(run(['--version']).stdout.trim(), '0.1.0')
    const created = run(['create', '--keep-alive', '5m'])
    assert.equal(created.status, 0, created.stderr)
    const id = created.stdout.trim().split('\n').at(-1)!
    try {
      const r = run(['exec', id, '--', 'sh', '-c', 'cat; echo " from $(id -un)"'], 'hello')
      assert.equal(r.status, 0, r.stderr)
      assert.equal(r.stdout, 'hello from user\n')
      assert.ok(JSON.parse(run(['ls', '--json']).stdout).some((s: { id: string }) => s.id === id))
      const server = run(['server'])
      assert.equal(server.status, 1)
      assert.match(server.stderr, /not installed with this CLI\. Run it with "sandlotd"/)
    } finally {
      assert.equal(run(['kill', id]).status, 0)
    }
  })

  test('the SDK installed by path into a project of its own creates a sandbox, runs a command and closes it', () => {
    const project = path.join(tmp, 'app')
    fs.mkdirSync(project)
    fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }))
    npm(['install', sdkTarball], project)
    fs.writeFileSync(
      path.join(project, 'main.js'),
      `import { Sandbox } from 'sandlot'
const sandbox = await Sandbox.create()
const out = await sandbox.process.startAndWait('echo "hi from $(hostname)"')
console.log(JSON.stringify({ id: sandbox.id, stdout: out.stdout }))
await sandbox.close()
`,
    )
    const r = spawnSync(process.execPath, ['main.js'], { cwd: project, env: env(), encoding: 'utf8', timeout: 60_000 })
    assert.equal(r.status, 0, r.stderr)
    const { id, stdout } = JSON.parse(r.stdout)
    assert.equal(stdout, `hi from ${id}`)
    // Closed without keepAlive: the sandbox goes.
    return killSandbox(id).catch(() => {})
  })
})
