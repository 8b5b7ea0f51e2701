// Custom templates through Sandlot's REST: a build from base with every step type and a start
// command, the layer cache (a second identical build reuses every layer; a changed step rebuilds
// only from there), failures that name the step with its output and leave no template behind,
// delete while in use, and bad input; templates from images in a local registry (a Debian one with
// its User and Entrypoint+Cmd applied, a static busybox one, a private one through the e2b SDK with
// credentials) and the collection of what nothing uses. On a daemon of its own with a short ready
// timeout.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { Sandbox as E2BSandbox, Template } from 'e2b'
import { apiAt, run, spawnDaemon, terminal, waitFor, type Daemon } from './helpers.js'
import { makeImage, push, startRegistry, type Registry } from './oci-registry.js'

const port = Number(process.env.SANDLOT_TEST_PORT ?? 3190) + 7
const ownHome = path.resolve(`.sandlot-test/templates-${port}`)
const registryPort = port + 1
// A registry behind a username and password (and a self-signed certificate).
const securedPort = port + 9
const CREDS = { username: 'carol', password: 'pw-Tq52-never-stored' }
let daemon: Daemon
// No warm pool: the tests count the daemon's containers (no build sandbox may be left behind).
const daemonEnv = { SANDLOT_HOME: ownHome, SANDLOT_READY_TIMEOUT_MS: '3000', SANDLOT_INSECURE_REGISTRIES: `127.0.0.1:${registryPort},127.0.0.1:${securedPort}`, SANDLOT_POOL: '0' }
let registry: Registry | undefined
let key = ''

const call = apiAt(() => daemon.url, () => key)

interface BuildStatus {
  status: string
  logEntries: { message: string; step?: string; level: string }[]
  reason?: { message: string; step?: string }
}

/** Starts a build and waits for its end; returns its status with every log entry. */
async function build(body: Record<string, unknown>): Promise<BuildStatus & { templateId: string; buildId: string; ms: number }> {
  const t0 = Date.now()
  const r = await call('POST', '/api/v1/templates', body)
  assert.equal(r.status, 202, JSON.stringify(r.json))
  const { templateId, buildId } = r.json
  const logs: BuildStatus['logEntries'] = []
  for (;;) {
    const s = await call<BuildStatus>('GET', `/api/v1/templates/${templateId}/builds/${buildId}?logsOffset=${logs.length}`)
    assert.equal(s.status, 200)
    logs.push(...s.json.logEntries)
    if (s.json.status === 'ready' || s.json.status === 'error') {
      if (s.json.logEntries.length === 0) return { ...s.json, logEntries: logs, templateId, buildId, ms: Date.now() - t0 }
      continue
    }
    await new Promise((r) => setTimeout(r, 200))
  }
}

/** A gzip tar of `files` (path → content, or { link } for a symlink), uploaded under a hash of its own. */
async function upload(files: Record<string, string | { link: string }>): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sandlot-ctx-'))
  for (const [name, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true })
    if (typeof content === 'string') fs.writeFileSync(path.join(dir, name), content)
    else fs.symlinkSync(content.link, path.join(dir, name))
  }
  const archive = execFileSync('tar', ['-czf', '-', '-C', dir, ...Object.keys(files)])
  fs.rmSync(dir, { recursive: true })
  const hash = crypto.createHash('sha256').update(archive).digest('hex')
  const res = await fetch(`${daemon.url}/api/v1/templates/files/${hash}`, { method: 'PUT', headers: { 'x-api-key': key }, body: archive })
  assert.equal(res.status, 201, await res.text())
  return hash
}

const createFrom = (template: string) => call('POST', '/api/v1/sandboxes', { template, keepAliveMs: 600_000 })
const sh = (id: string, cmd: string, user = 'user') => run(id, cmd, { url: daemon.url, key, user })

describe('templates (Sandlot REST)', { concurrency: false }, () => {
  before(async () => {
    fs.rmSync(ownHome, { recursive: true, force: true })
    fs.mkdirSync(path.dirname(ownHome), { recursive: true })
    daemon = spawnDaemon(port, daemonEnv, fs.openSync(`${ownHome}.log`, 'w'))
    await waitFor(async () => (await fetch(`${daemon.url}/health`).catch(() => undefined))?.ok, 120_000, 'the templates daemon')
    key = fs.readFileSync(path.join(ownHome, 'api-key'), 'utf8').trim()
  })
  after(async () => {
    const list = await call<{ id: string }[]>('GET', '/api/v1/sandboxes')
    for (const s of list.json ?? []) await call('DELETE', `/api/v1/sandboxes/${s.id}`)
    await daemon?.stop()
    await registry?.stop()
  })

  let steps: unknown[]
  test('a build from base with RUN, COPY, ENV, WORKDIR, USER and a start command; a sandbox from it has all of it, its server already answering', async () => {
    const files = await upload({ 'app/main.txt': 'main\n', 'app/sub/deep.txt': 'deep\n', 'app/link': { link: 'main.txt' }, 'single.txt': 'single\n' })
    steps = [
      { type: 'RUN', args: ['echo built-as-$(id -un) > /home/user/who.txt'] },
      { type: 'ENV', args: ['GREETING', 'hello', 'PHRASE', '${GREETING} world'] },
      { type: 'WORKDIR', args: ['/srv/app'] },
      { type: 'COPY', args: ['app', '.', '', ''], filesHash: files },
      { type: 'COPY', args: ['single.txt', '/opt/data/', 'root:root', '0600'], filesHash: files },
      { type: 'USER', args: ['builder'] },
      { type: 'RUN', args: ['echo "$PHRASE" > phrase.txt 2>/dev/null || echo "$PHRASE" > ~/phrase.txt; rm -f /etc/motd || true', 'root'] },
      { type: 'RUN', args: ['id -un > ~/whoami.txt'] },
    ]
    const b = await build({ name: 'webapp', steps, startCmd: 'python3 -m http.server 8000 --bind 127.0.0.1', readyCmd: 'curl -sf http://127.0.0.1:8000/ >/dev/null' })
    assert.equal(b.status, 'ready', JSON.stringify(b.reason))
    assert.ok(b.logEntries.some((e) => e.step === '1' && /RUN echo built-as/.test(e.message)))

    const s = await createFrom('webapp')
    assert.equal(s.status, 201, JSON.stringify(s.json))
    assert.equal(s.json.template, 'webapp')
    const id = s.json.id as string
    const out = await sh(id, [
      'cat /home/user/who.txt /srv/app/main.txt /srv/app/sub/deep.txt /srv/app/link',
      'readlink /srv/app/link',
      'stat -c "%U:%G %a" /srv/app/main.txt /opt/data/single.txt',
      'echo "$PHRASE" "$(pwd)"',
      'cat /srv/app/phrase.txt; cat /home/builder/whoami.txt',
      'test -e /etc/motd && echo motd-present || echo motd-gone',
      // The start command's server answers already.
      'curl -sf http://127.0.0.1:8000/ | grep -c main.txt',
    ].join('; '))
    assert.equal(out.exitCode, 0, out.stderr)
    assert.equal(
      out.stdout,
      ['built-as-user', 'main', 'deep', 'main', 'main.txt', 'user:user 644', 'root:root 600', 'hello world /srv/app', 'hello world', 'builder', 'motd-gone', '1', ''].join('\n'),
    )
    // The build sandbox's secrets and identity stay out of the template.
    assert.match((await sh(id, 'cat /etc/hostname', 'root')).stdout, new RegExp(id))
    await call('DELETE', `/api/v1/sandboxes/${id}`)
  })

  test('a second identical build reuses every layer and takes a fraction of the first; a changed step rebuilds only from there', async () => {
    const first = await build({ name: 'cached', steps: [{ type: 'RUN', args: ['sleep 1; echo one > /tmp/one'] }, { type: 'RUN', args: ['sleep 1; echo two > /tmp/two'] }] })
    assert.equal(first.status, 'ready')
    const again = await build({ name: 'cached', steps: [{ type: 'RUN', args: ['sleep 1; echo one > /tmp/one'] }, { type: 'RUN', args: ['sleep 1; echo two > /tmp/two'] }] })
    assert.equal(again.status, 'ready')
    const cached = (b: BuildStatus) => b.logEntries.filter((e) => e.message.startsWith('CACHED')).map((e) => e.step)
    assert.deepEqual(cached(again), ['1', '2'])
    assert.ok(again.ms < first.ms / 2, `cached ${again.ms} ms, first ${first.ms} ms`)
    const changed = await build({ name: 'cached', steps: [{ type: 'RUN', args: ['sleep 1; echo one > /tmp/one'] }, { type: 'RUN', args: ['echo three > /tmp/two'] }] })
    assert.deepEqual(cached(changed), ['1'])
    const forced = await build({ name: 'cached', force: true, steps: [{ type: 'RUN', args: ['sleep 1; echo one > /tmp/one'] }] })
    assert.equal(forced.status, 'ready', JSON.stringify(forced.reason))
    assert.deepEqual(cached(forced), [])
    // The tag points at the last build: its files.
    const s = await createFrom('cached')
    assert.equal((await sh(s.json.id, 'cat /tmp/one; test -e /tmp/two && echo two || echo none')).stdout, 'one\nnone\n')
    await call('DELETE', `/api/v1/sandboxes/${s.json.id}`)
  })

  test('a failing step: E2B\'s error text naming the step, its output in the logs, no template left to create from', async () => {
    const b = await build({ name: 'broken', steps: [{ type: 'RUN', args: ['echo fine'] }, { type: 'RUN', args: ['echo about to fail; echo oops >&2; exit 3'] }, { type: 'RUN', args: ['echo never'] }] })
    assert.equal(b.status, 'error')
    assert.deepEqual(b.reason, { message: "failed to run command 'echo about to fail; echo oops >&2; exit 3': exit status 3", step: '2' })
    assert.ok(b.logEntries.some((e) => e.step === '2' && e.message === 'about to fail'))
    assert.ok(b.logEntries.some((e) => e.step === '2' && e.message === 'oops' && e.level === 'warn'))
    assert.ok(!b.logEntries.some((e) => e.message === 'never'))
    const s = await createFrom('broken')
    assert.equal(s.status, 400)
    assert.match(s.json.message, /Template "broken" has no tag "default"/)
    // An unknown user: E2B's exact text.
    const u = await build({ name: 'broken', steps: [{ type: 'RUN', args: ['whoami', 'root123'] }] })
    assert.deepEqual(u.reason, { message: "failed to run command 'whoami': command failed: unauthenticated: invalid username: 'root123'", step: '1' })
    // A ready command that never passes fails the build at "finalize".
    const r = await build({ name: 'broken', steps: [], startCmd: 'sleep 1000', readyCmd: 'false' })
    assert.equal(r.reason?.step, 'finalize')
    assert.match(r.reason!.message, /the ready command 'false' did not pass within 3 s/)
    // No build sandbox is left running.
    const runtime = execFileSync('runc', ['--root', path.join(ownHome, 'runtime/runc'), 'list', '-q']).toString().trim().split('\n').filter(Boolean)
    const sandboxes = (await call<{ id: string }[]>('GET', '/api/v1/sandboxes')).json.map((s) => s.id)
    assert.deepEqual(runtime.filter((id) => !sandboxes.includes(id)), [])
  })

  test('unknown names list what exists; delete is refused while a sandbox uses the template', async () => {
    const unknown = await createFrom('nope')
    assert.equal(unknown.status, 400)
    assert.match(unknown.json.message, /Unknown template "nope"\. Available templates: .*base.*webapp/)
    const list = await call<{ name: string; tags: string[] }[]>('GET', '/api/v1/templates')
    assert.deepEqual(list.json.find((t) => t.name === 'webapp')?.tags, ['default'])
    const b = await build({ name: 'doomed', steps: [{ type: 'RUN', args: ['true'] }] })
    assert.equal(b.status, 'ready')
    const s = await createFrom('doomed')
    const refused = await call('DELETE', '/api/v1/templates/doomed')
    assert.equal(refused.status, 400)
    assert.match(refused.json.message, /in use/)
    await call('DELETE', `/api/v1/sandboxes/${s.json.id}`)
    assert.equal((await call('DELETE', '/api/v1/templates/doomed')).status, 204)
    assert.equal((await createFrom('doomed')).status, 400)
  })

  test('bad input: clear 400s, the server up', async () => {
    const cases: [unknown, RegExp][] = [
      [{ name: 'Bad Name', steps: [] }, /Invalid template name/],
      [{ name: 'base', steps: [] }, /"base" is built by Sandlot/],
      [{ name: 'x', steps: [{ type: 'FROM', args: ['x'] }] }, /steps\[0\]\.type must be one of/],
      [{ name: 'x', steps: [{ type: 'COPY', args: ['a', 'b'] }] }, /COPY needs filesHash/],
      [{ name: 'x', steps: [{ type: 'WORKDIR', args: [] }] }, /WORKDIR takes 1 arguments/],
      [{ name: 'x', fromTemplate: 'missing', steps: [] }, /Unknown template "missing"/],
      [{ name: 'x', tags: ['Not A Tag'], steps: [] }, /Invalid tag/],
    ]
    for (const [body, message] of cases) {
      const r = await call('POST', '/api/v1/templates', body)
      assert.equal(r.status, 400, JSON.stringify(body))
      assert.match(r.json.message, message)
    }
    const notGzip = await fetch(`${daemon.url}/api/v1/templates/files/${'a'.repeat(64)}`, { method: 'PUT', headers: { 'x-api-key': key }, body: 'plain text' })
    assert.equal(notGzip.status, 400)
    const badHash = await fetch(`${daemon.url}/api/v1/templates/files/xyz`, { method: 'PUT', headers: { 'x-api-key': key }, body: 'x' })
    assert.equal(badHash.status, 400)
    // A COPY whose files were never uploaded fails its step, clearly.
    const b = await build({ name: 'nofiles', steps: [{ type: 'COPY', args: ['a', 'b'], filesHash: 'b'.repeat(64) }] })
    assert.match(b.reason!.message, /were never uploaded/)
    // An archive whose members climb out of the context changes nothing outside the build sandbox.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sandlot-evil-'))
    fs.writeFileSync(path.join(dir, 'x'), 'evil')
    const evil = execFileSync('tar', ['-czf', '-', '-C', dir, '--transform', 's|^x$|../../../../tmp/sandlot-escaped|', 'x'])
    const hash = crypto.createHash('sha256').update(evil).digest('hex')
    assert.equal((await fetch(`${daemon.url}/api/v1/templates/files/${hash}`, { method: 'PUT', headers: { 'x-api-key': key }, body: evil })).status, 201)
    await build({ name: 'escape', steps: [{ type: 'COPY', args: ['.', '/data', '', ''], filesHash: hash }] })
    assert.equal(fs.existsSync('/tmp/sandlot-escaped'), false)
    assert.equal((await fetch(`${daemon.url}/health`)).status, 200)
  })

  test('from an OCI image in a registry: pulled, the user account made, the image\'s User and Entrypoint+Cmd applied, steps on top; files, commands and a terminal; cached the second time; a registry that is down fails the base step', async () => {
    // An image made from the base template's files (Debian), pushed to a registry on loopback.
    const baseDir = path.resolve('.sandlot-test/templates/base')
    const built = fs.readdirSync(baseDir).map((h) => path.join(baseDir, h, 'rootfs')).find((r) => fs.existsSync(path.join(r, 'etc/os-release')))
    assert.ok(built, 'the base template is built')
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'sandlot-img-'))
    const hostId = fs.statSync(built).uid
    const hostIds = execFileSync('find', [built, '-printf', '%U\\n%G\\n'], { encoding: 'utf8' }).split('\n').filter(Boolean)
    const map = path.join(work, 'id-map')
    fs.writeFileSync(map, [...new Set(hostIds)].map((h) => `+${h} +${Number(h) - hostId}`).join('\n') + '\n')
    const tarFile = path.join(work, 'rootfs.tar')
    execFileSync('tar', ['--numeric-owner', `--owner-map=${map}`, `--group-map=${map}`, '-C', built, '-cf', tarFile, '--exclude=./home/user', '.'])
    const layout = path.join(work, 'layout')
    // User by uid (33 is Debian's www-data); Entrypoint+Cmd a server, which becomes the start command.
    makeImage(layout, 'debian', { layers: [{ file: tarFile }], env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'FROM_IMAGE=yes'], workdir: '/opt', user: '33', entrypoint: ['python3', '-m', 'http.server'], cmd: ['8123', '--bind', '127.0.0.1'] })
    registry = await startRegistry({ port: registryPort, dir: path.join(work, 'registry') })
    push(layout, 'debian', registry, 'tests/debian:12')
    fs.rmSync(tarFile)

    const ref = `${registry.host}/tests/debian:12`
    const b = await build({ name: 'from-image', fromImage: { ref }, steps: [{ type: 'RUN', args: ['echo "from image as $(whoami) in $(pwd), FROM_IMAGE=$FROM_IMAGE" > /tmp/made.txt'] }] })
    assert.equal(b.status, 'ready', JSON.stringify(b.reason))
    assert.ok(b.logEntries.some((e) => /is sha256:[0-9a-f]{64}/.test(e.message)))
    assert.ok(b.logEntries.some((e) => e.message === 'Note: the image\'s user "33" (www-data) runs the steps and is the template\'s user'))
    const config = (await call('GET', '/api/v1/templates/from-image')).json.builds[0].config
    assert.deepEqual([config.user, config.startCmd, config.readyCmd], ['www-data', 'python3 -m http.server 8123 --bind 127.0.0.1', null])
    const s = await createFrom('from-image')
    assert.equal(s.status, 201, JSON.stringify(s.json))
    const id = s.json.id as string
    const out = await sh(id, 'cat /tmp/made.txt; grep -q bookworm /etc/os-release && echo bookworm; id -un', 'root')
    assert.equal(out.stdout, 'from image as www-data in /opt, FROM_IMAGE=yes\nbookworm\nroot\n')
    // The image's command runs as its user (no ready command: the create does not wait for it).
    const served = await waitFor(async () => {
      const r = await sh(id, 'curl -sf http://127.0.0.1:8123/ >/dev/null && for p in /proc/[0-9]*; do grep -qa http.server $p/cmdline 2>/dev/null && stat -c %U $p; done | head -1')
      return r.exitCode === 0 && r.stdout
    }, 30_000, "the image's command to serve")
    assert.equal(served.trim(), 'www-data')
    // The e2b SDK, with no user named, is the template's user; files and a terminal as well.
    const e2b = await E2BSandbox.connect(id, { apiKey: key, apiUrl: daemon.url, sandboxUrl: daemon.url } as Parameters<typeof E2BSandbox.connect>[1])
    assert.equal((await e2b.commands.run('id -un; pwd')).stdout, 'www-data\n/opt\n')
    await e2b.files.write('/tmp/hello.txt', 'hello\n', { user: 'user' })
    assert.equal(await e2b.files.read('/tmp/hello.txt', { user: 'root' }), 'hello\n')
    assert.equal((await sh(id, 'stat -c %U /tmp/hello.txt')).stdout, 'user\n')
    const t = await terminal(id, 'echo "sum=$((6*7)) as $(id -un)"; exit 3\n', { url: daemon.url, key })
    assert.match(t.output, /sum=42 as user\n/)
    assert.equal(t.exitCode, 3)
    await call('DELETE', `/api/v1/sandboxes/${id}`)

    // A start command of the build's own and a USER step win over the image's.
    const own = await build({ name: 'from-image-own', fromImage: { ref }, steps: [{ type: 'USER', args: ['user'] }], startCmd: 'sleep 1000', readyCmd: 'true' })
    assert.equal(own.status, 'ready', JSON.stringify(own.reason))
    const ownConfig = (await call('GET', '/api/v1/templates/from-image-own')).json.builds[0].config
    assert.deepEqual([ownConfig.user, ownConfig.startCmd, ownConfig.readyCmd], ['user', 'sleep 1000', 'true'])

    const again = await build({ name: 'from-image', fromImage: { ref }, steps: [{ type: 'RUN', args: ['echo "from image as $(whoami) in $(pwd), FROM_IMAGE=$FROM_IMAGE" > /tmp/made.txt'] }] })
    assert.ok(again.logEntries.some((e) => e.message === 'CACHED the user account'))
    assert.ok(again.logEntries.some((e) => e.step === '1' && e.message.startsWith('CACHED')))

    const down = await build({ name: 'from-image', fromImage: { ref: `127.0.0.1:${registryPort + 50}/tests/debian:12` }, steps: [] })
    assert.equal(down.status, 'error')
    assert.equal(down.reason?.step, 'base')
    assert.match(down.reason!.message, /cannot use the image 127\.0\.0\.1:\d+\/tests\/debian:12/)
    // An image the registry does not have: the same, and no template to create from.
    const unknown = await build({ name: 'no-such-image', fromImage: { ref: `${registry.host}/tests/nothing:1` }, steps: [] })
    assert.deepEqual([unknown.status, unknown.reason?.step], ['error', 'base'])
    assert.match(unknown.reason!.message, /cannot use the image .*tests\/nothing:1: .*has no image/)
    assert.equal((await createFrom('no-such-image')).status, 400)
    fs.rmSync(work, { recursive: true, force: true })
  })

  test('from a static busybox image (no libc at all): the user account made by busybox, a step on top; files, commands and a terminal work', async () => {
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'sandlot-img-'))
    const root = path.join(work, 'root')
    for (const d of ['bin', 'etc', 'tmp', 'root']) fs.mkdirSync(path.join(root, d), { recursive: true })
    fs.chmodSync(path.join(root, 'tmp'), 0o1777)
    fs.copyFileSync('/bin/busybox', path.join(root, 'bin/busybox'))
    // Every applet in /bin, as busybox's own image has them.
    const applets = execFileSync('/bin/busybox', ['--list'], { encoding: 'utf8' }).split('\n').filter((a) => a && a !== 'busybox')
    for (const applet of applets) fs.symlinkSync('busybox', path.join(root, 'bin', applet))
    fs.writeFileSync(path.join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n')
    fs.writeFileSync(path.join(root, 'etc/group'), 'root:x:0:\n')
    const layout = path.join(work, 'layout')
    // A User the image has no account for: the steps run as `user`, and the log says so.
    makeImage(layout, 'busybox', { layers: [{ dir: root }], env: ['PATH=/bin'], user: 'ghost', cmd: ['sh'] })
    // A registry of this test's own (the one before had its storage removed with its files).
    await registry?.stop()
    registry = await startRegistry({ port: registryPort, dir: path.join(work, 'registry') })
    push(layout, 'busybox', registry, 'tests/busybox:static')

    const b = await build({ name: 'from-busybox', fromImage: { ref: `${registry.host}/tests/busybox:static` }, steps: [{ type: 'RUN', args: ['echo "as $(whoami)" > /tmp/made.txt'] }] })
    assert.equal(b.status, 'ready', JSON.stringify(b.reason) + b.logEntries.map((e) => e.message).join('\n'))
    assert.ok(b.logEntries.some((e) => e.message === 'Note: the image\'s user "ghost" is not an account in the image; the steps run as "user"'))
    const s = await createFrom('from-busybox')
    assert.equal(s.status, 201, JSON.stringify(s.json))
    const id = s.json.id
    assert.equal((await sh(id, 'cat /tmp/made.txt; id -un; ls /lib /usr/lib 2>&1 | grep -c "No such file"')).stdout, 'as user\nuser\n2\n', 'no library directory at all')
    const written = await fetch(`${daemon.url}/files?path=/home/user/hello.txt&username=user`, { method: 'POST', headers: { 'e2b-sandbox-id': id, 'x-api-key': key, 'content-type': 'application/octet-stream' }, body: 'hello\n' })
    assert.equal(written.status, 200, await written.text())
    const read = await fetch(`${daemon.url}/files?path=/home/user/hello.txt&username=user`, { headers: { 'e2b-sandbox-id': id, 'x-api-key': key } })
    assert.equal(await read.text(), 'hello\n')
    const t = await terminal(id, 'echo "sum=$((6*7)) in $PWD"; exit 4\n', { url: daemon.url, key })
    assert.match(t.output, /sum=42 in \/home\/user\n/)
    assert.equal(t.exitCode, 4)
    await call('DELETE', `/api/v1/sandboxes/${id}`)
    fs.rmSync(work, { recursive: true, force: true })
  })

  test('the e2b SDK\'s fromImage with registry credentials: built and run; the password in neither the store nor the log; a wrong one fails the base step', async () => {
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'sandlot-img-'))
    const root = path.join(work, 'root')
    for (const d of ['bin', 'etc', 'tmp']) fs.mkdirSync(path.join(root, d), { recursive: true })
    fs.chmodSync(path.join(root, 'tmp'), 0o1777)
    fs.copyFileSync('/bin/busybox', path.join(root, 'bin/busybox'))
    for (const applet of ['sh', 'echo', 'cat', 'id', 'adduser', 'addgroup', 'mkdir', 'chmod']) fs.symlinkSync('busybox', path.join(root, 'bin', applet))
    fs.writeFileSync(path.join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n')
    fs.writeFileSync(path.join(root, 'etc/group'), 'root:x:0:\n')
    const layout = path.join(work, 'layout')
    makeImage(layout, 'private', { layers: [{ dir: root }], env: ['PATH=/bin'] })
    const secured = await startRegistry({ port: securedPort, dir: path.join(work, 'registry'), auth: CREDS })
    try {
      push(layout, 'private', secured, 'private/tool:1', CREDS)
      Object.assign(process.env, { E2B_API_URL: daemon.url, E2B_SANDBOX_URL: daemon.url, E2B_API_KEY: key })
      const ref = `${secured.host}/private/tool:1`
      const info = await Template.build(Template().fromImage(ref, CREDS).runCmd('echo "private as $(id -un)" > /tmp/private.txt'), 'private-tool', { cpuCount: 1, memoryMB: 512 })
      const s = await E2BSandbox.create('private-tool')
      try {
        assert.equal((await s.commands.run('cat /tmp/private.txt')).stdout, 'private as user\n')
      } finally {
        await s.kill()
      }
      const refused = await Template.build(Template().fromImage(ref, { username: CREDS.username, password: 'wrong-pw-Tq52' }).runCmd('true'), 'private-tool-2').then(
        () => assert.fail('a wrong password should fail the build'),
        (err: Error) => err,
      )
      assert.match(refused.message, /cannot use the image 127\.0\.0\.1:\d+\/private\/tool:1: .*username and password/)
      // The store keeps who, never the password; nor does the daemon's log.
      const stored = fs.readdirSync(ownHome).filter((f) => f.startsWith('sandlot.db')).map((f) => fs.readFileSync(path.join(ownHome, f)).toString('latin1')).join('')
      assert.ok(stored.includes(info.buildId) && stored.includes(CREDS.username))
      for (const secret of [CREDS.password, 'wrong-pw-Tq52']) {
        assert.ok(!stored.includes(secret), 'a password in the store')
        assert.ok(!fs.readFileSync(`${ownHome}.log`, 'latin1').includes(secret), 'a password in the log')
      }
    } finally {
      // Its image goes with them (the collection test below counts what is left).
      for (const name of ['private-tool', 'private-tool-2']) await call('DELETE', `/api/v1/templates/${name}`)
      await secured.stop()
      fs.rmSync(work, { recursive: true, force: true })
    }
  })

  test('E2B-style detail of a template: its builds, tags and use', async () => {
    const d = await call('GET', '/api/v1/templates/from-busybox')
    assert.equal(d.status, 200)
    assert.equal(d.json.spawnCount, 1)
    assert.deepEqual(d.json.builds.map((x: any) => [x.status, x.tags]), [['ready', ['default']]])
    assert.equal(d.json.builds[0].config.user, 'user')
    assert.equal((await call('GET', '/api/v1/templates/no-such')).status, 404)
  })

  test('unused layers and images are collected at start; those a template stands on stay', async () => {
    const images = path.join(ownHome, 'images')
    const layers = path.join(ownHome, 'layers')
    const keptLayers = (await call('GET', '/api/v1/templates/from-busybox')).json.builds[0]
    for (const name of ['from-image', 'from-image-own']) assert.equal((await call('DELETE', `/api/v1/templates/${name}`)).status, 204)
    const before = { images: fs.readdirSync(images), layers: fs.readdirSync(layers) }
    assert.ok(before.images.length >= 2, 'the Debian and the busybox image (and the private one)')
    // Past the hour of grace.
    const old = new Date(Date.now() - 2 * 60 * 60_000)
    for (const d of [...before.images.map((n) => path.join(images, n)), ...before.layers.map((n) => path.join(layers, n))]) fs.utimesSync(d, old, old)
    await daemon.stop()
    daemon = spawnDaemon(port, daemonEnv, fs.openSync(`${ownHome}.log`, 'a'))
    await waitFor(async () => (await fetch(`${daemon.url}/health`).catch(() => undefined))?.ok, 120_000, 'the templates daemon')
    // Removing an unpacked Debian image is a child process over its many files: slow on a busy host.
    await waitFor(async () => fs.readdirSync(images).length === 1, 180_000, 'the unused images collected')
    const s = await createFrom('from-busybox')
    assert.equal(s.status, 201, 'the template still stands: ' + JSON.stringify(s.json) + JSON.stringify(keptLayers))
    assert.equal((await sh(s.json.id, 'cat /tmp/made.txt')).stdout, 'as user\n')
    await call('DELETE', `/api/v1/sandboxes/${s.json.id}`)
    assert.ok(fs.readdirSync(layers).length < before.layers.length, 'unused layers went')
  })
})
