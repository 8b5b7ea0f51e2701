// What `npm start` does before the server, on a copy of the checkout (its packages with their builds,
// its own node_modules of links to this one's dependencies, so nothing here is touched): it builds
// only the workspaces whose files changed and those built from them, and as a user other than root
// it stops at once with what to do, before any work.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { root } from './sdk-env.js'

let copy = ''

/** The checkout's sources and builds, and a node_modules whose workspace links point into the copy. */
function copyCheckout(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sandlot-setup-'))
  // Readable by the non-root user of the last test.
  fs.chmodSync(dir, 0o755)
  for (const f of ['package.json', 'package-lock.json', 'tsconfig.base.json']) fs.copyFileSync(path.join(root, f), path.join(dir, f))
  for (const d of ['scripts', 'packages']) fs.cpSync(path.join(root, d), path.join(dir, d), { recursive: true, filter: (src) => !src.includes(`${path.sep}node_modules`) })
  const modules = path.join(dir, 'node_modules')
  fs.mkdirSync(modules)
  const real = path.join(root, 'node_modules')
  for (const e of fs.readdirSync(real, { withFileTypes: true })) {
    const from = path.join(real, e.name)
    const to = path.join(modules, e.name)
    if (e.isSymbolicLink() && !path.isAbsolute(fs.readlinkSync(from))) fs.symlinkSync(fs.readlinkSync(from), to) // a workspace: the copy's
    else if (e.name === '@sandlot') {
      fs.mkdirSync(to)
      for (const w of fs.readdirSync(from)) fs.symlinkSync(fs.readlinkSync(path.join(from, w)), path.join(to, w))
    } else if (e.isFile()) fs.copyFileSync(from, to) // the build stamps, npm's own lock
    else fs.symlinkSync(from, to)
  }
  return dir
}

/** `build()` of the copy's scripts/setup.mjs: what it printed, and its exit code. */
function buildCopy(): { out: string; code: number | null } {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', "const { build } = await import('./scripts/setup.mjs'); build()"], { cwd: copy, encoding: 'utf8', timeout: 300_000 })
  return { out: r.stdout + r.stderr, code: r.status }
}

const mtime = (file: string) => fs.statSync(path.join(copy, file)).mtimeMs
const OUTPUTS = {
  'envd-proto': 'packages/envd-proto/dist/index.js',
  sdk: 'packages/sdk/dist/index.mjs',
  agent: 'packages/agent/dist/agent.mjs',
  'code-interpreter': 'packages/code-interpreter/dist/code-interpreter.mjs',
  server: 'packages/server/dist/main.js',
  cli: 'packages/cli/dist/main.js',
}
const outputTimes = () => Object.fromEntries(Object.entries(OUTPUTS).map(([name, file]) => [name, mtime(file)]))
const rebuilt = (before: Record<string, number>) => Object.keys(OUTPUTS).filter((name) => mtime(OUTPUTS[name as keyof typeof OUTPUTS]) !== before[name])
const appendComment = (file: string) => fs.appendFileSync(path.join(copy, file), `\n// changed by test/setup.test.ts ${Date.now()}\n`)

describe('npm start before the server (scripts/setup.mjs)', () => {
  before(() => {
    // What is built must follow from what changed, not from a forced rebuild.
    delete process.env.SANDLOT_REBUILD
    copy = copyCheckout()
    // The copy starts as built as the checkout is (the suite's setup built it just now).
    const first = buildCopy()
    assert.equal(first.code, 0, first.out)
  })
  after(() => fs.rmSync(copy, { recursive: true, force: true }))

  test('nothing changed: nothing is built', () => {
    const times = outputTimes()
    const r = buildCopy()
    assert.equal(r.code, 0, r.out)
    assert.equal(r.out, '')
    assert.deepEqual(rebuilt(times), [])
  })

  test('a change to the CLI builds the CLI alone; one to the SDK builds the SDK and the CLI built on it', () => {
    let times = outputTimes()
    appendComment('packages/cli/src/format.ts')
    let r = buildCopy()
    assert.equal(r.code, 0, r.out)
    assert.match(r.out, /^\[setup\] building cli$/m)
    assert.deepEqual(rebuilt(times), ['cli'])

    times = outputTimes()
    appendComment('packages/sdk/src/errors.ts')
    r = buildCopy()
    assert.equal(r.code, 0, r.out)
    assert.match(r.out, /^\[setup\] building sdk, cli$/m)
    assert.deepEqual(rebuilt(times), ['sdk', 'cli'])
  })

  test('what is stale: a changed proto reaches every workspace built on it; a missing output is built again; shared inputs rebuild all', async () => {
    const { staleWorkspaces } = (await import(path.join(copy, 'scripts/setup.mjs'))) as { staleWorkspaces: () => Map<string, string> }
    const proto = fs.readdirSync(path.join(copy, 'packages/envd-proto/proto'), { recursive: true, encoding: 'utf8' }).find((f) => f.endsWith('.proto'))!
    const protoFile = path.join(copy, 'packages/envd-proto/proto', proto)
    const original = fs.readFileSync(protoFile)
    fs.appendFileSync(protoFile, '\n// changed\n')
    assert.deepEqual([...staleWorkspaces().keys()], ['envd-proto', 'sdk', 'agent', 'server', 'cli'])
    fs.writeFileSync(protoFile, original)
    assert.deepEqual([...staleWorkspaces().keys()], [])

    fs.renameSync(path.join(copy, OUTPUTS['code-interpreter']), path.join(copy, `${OUTPUTS['code-interpreter']}.away`))
    assert.deepEqual([...staleWorkspaces().keys()], ['code-interpreter'])
    fs.renameSync(path.join(copy, `${OUTPUTS['code-interpreter']}.away`), path.join(copy, OUTPUTS['code-interpreter']))

    const lock = path.join(copy, 'tsconfig.base.json')
    const base = fs.readFileSync(lock)
    fs.writeFileSync(lock, `${base.toString().trimEnd()}\n\n`)
    assert.equal(staleWorkspaces().size, Object.keys(OUTPUTS).length)
    fs.writeFileSync(lock, base)
    assert.deepEqual([...staleWorkspaces().keys()], [])
  })

  test('as a user other than root, npm start stops at once with what to do, before any work', () => {
    appendComment('packages/server/src/config.ts')
    const stamps = fs.readFileSync(path.join(copy, 'node_modules/.sandlot-build.json'), 'utf8')
    const times = outputTimes()
    const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'npm', 'start'], {
      cwd: copy,
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, HOME: '/nonexistent', npm_config_update_notifier: 'false' },
    })
    assert.equal(r.status, 1, r.stdout + r.stderr)
    assert.match(r.stderr, /npm start needs root: sandlotd creates mounts, namespaces, cgroups and firewall rules for sandboxes\.\nRun it as root, e\.g\.: sudo npm start/)
    // Nothing was installed or built, though the server had changed.
    assert.doesNotMatch(r.stdout + r.stderr, /\[setup\]/)
    assert.deepEqual(rebuilt(times), [])
    assert.equal(fs.readFileSync(path.join(copy, 'node_modules/.sandlot-build.json'), 'utf8'), stamps)
  })
})
