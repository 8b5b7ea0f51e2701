// The official e2b SDK's Template builder against Sandlot, unchanged: Template.build() from the base
// image with copy (files, a directory, a symlink), runCmd, setEnvs, setWorkdir, setUser and a start
// command with its ready check; the sandbox from it; exists, tags (the default one kept), skipCache,
// buildInBackground, the build error of a failing step; and `e2b template create` of the pinned CLI.
import { BuildError, Sandbox, Template, waitForPort } from 'e2b'
import { RUN, apiKey, apiUrl } from './e2b-env.js'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, describe, test } from 'node:test'
import { stripVTControlCharacters } from 'node:util'

const name = `e2b-tpl-${process.pid}`
const context = fs.mkdtempSync(path.join(os.tmpdir(), 'sandlot-e2b-ctx-'))
after(() => fs.rmSync(context, { recursive: true, force: true }))

describe('e2b SDK: templates', { concurrency: false }, () => {
  test('Template.build: copy, run, env, workdir, user, start and ready commands; a sandbox from it has them all, its server answering', async () => {
    fs.mkdirSync(path.join(context, 'app/sub'), { recursive: true })
    fs.writeFileSync(path.join(context, 'app/index.html'), '<h1>from the template</h1>\n')
    fs.writeFileSync(path.join(context, 'app/sub/data.txt'), 'data\n')
    fs.symlinkSync('index.html', path.join(context, 'app/home.html'))
    fs.writeFileSync(path.join(context, 'notes.txt'), 'notes\n')
    const template = Template({ fileContextPath: context })
      .fromBaseImage()
      .copy('notes.txt', '/home/user/notes.txt')
      .copy('app', '/srv/app')
      .runCmd('echo "ran as $(whoami)" > /home/user/ran.txt')
      .setEnvs({ GREETING: 'hello', TARGET: 'world' })
      .setWorkdir('/srv/app')
      .runCmd('echo "$GREETING $TARGET in $(pwd)" > /tmp/env.txt')
      .setUser('user')
      .setStartCmd('python3 -m http.server 8000', waitForPort(8000))
    const logs: string[] = []
    const info = await Template.build(template, name, { cpuCount: 1, memoryMB: 1024, onBuildLogs: (e) => logs.push(e.message) })
    assert.equal(info.name, name)
    assert.match(info.templateId, /^[a-z0-9]{20}$/)
    assert.ok(logs.length > 0)
    assert.equal(await Template.exists(name), true)
    assert.equal(await Template.exists('base'), true)
    assert.equal(await Template.exists(`no-such-${process.pid}`), false)

    const s = await Sandbox.create(name, { metadata: { suite: 'e2b', run: RUN } })
    try {
      const r = await s.commands.run('cat /home/user/notes.txt /srv/app/sub/data.txt /home/user/ran.txt /tmp/env.txt; readlink /srv/app/home.html; echo "$GREETING"; pwd; curl -s http://127.0.0.1:8000/index.html')
      assert.equal(r.stdout, 'notes\ndata\nran as user\nhello world in /srv/app\nindex.html\nhello\n/srv/app\n<h1>from the template</h1>\n')
      // Through a port preview too: the start command's server was up before create answered.
      const page = await fetch(`${process.env.E2B_SANDBOX_URL}/index.html`, { headers: { 'e2b-sandbox-id': s.sandboxId, 'e2b-sandbox-port': '8000' } })
      assert.equal(await page.text(), '<h1>from the template</h1>\n')
      assert.equal((await s.getInfo()).memoryMB, 1024, 'the resources Template.build named')
    } finally {
      await s.kill()
    }

    // E2B's list and detail (`e2b template list`): the base and this one, its build, how often used.
    const list = await e2bApi<any[]>('/templates')
    const mine = list.find((t) => t.aliases.includes(name))
    assert.ok(list.some((t) => t.templateID === 'base' && t.public && t.buildStatus === 'ready'))
    assert.equal(mine.templateID, info.templateId)
    assert.equal(mine.buildID, info.buildId)
    assert.deepEqual([mine.cpuCount, mine.memoryMB, mine.buildStatus, mine.buildCount, mine.spawnCount], [1, 1024, 'ready', 1, 1])
    assert.ok(Date.parse(mine.lastSpawnedAt) > Date.parse(mine.createdAt))
    const detail = await e2bApi<any>(`/templates/${info.templateId}`)
    assert.deepEqual(detail.builds.map((b: any) => [b.buildID, b.status, b.memoryMB]), [[info.buildId, 'ready', 1024]])
    assert.equal(detail.spawnCount, 1)
    const page = await fetch(`${process.env.E2B_API_URL}/v2/templates?limit=1`, { headers: { 'x-api-key': process.env.E2B_API_KEY! } })
    assert.equal(((await page.json()) as unknown[]).length, 1)
    assert.ok(page.headers.get('x-next-token'))
    assert.equal((await fetch(`${process.env.E2B_API_URL}/templates/no-such-${process.pid}`, { headers: { 'x-api-key': process.env.E2B_API_KEY! } })).status, 404)
  })

  test('a second identical build is cached; tags; a failing step is a BuildError with E2B\'s text', async () => {
    const t = () => Template().fromTemplate('base').runCmd('echo one > /tmp/one')
    await Template.build(t(), `${name}-tags:v1`, { cpuCount: 1, memoryMB: 1024 })
    const logs: string[] = []
    await Template.build(t(), `${name}-tags:v2`, { cpuCount: 1, memoryMB: 1024, onBuildLogs: (e) => logs.push(e.message) })
    assert.ok(logs.some((m) => m.startsWith('CACHED')), logs.join('\n'))
    const tags = (await Template.getTags((await fetchId(`${name}-tags`))!)).map((x) => x.tag).sort()
    assert.deepEqual(tags, ['v1', 'v2'])
    await Template.assignTags(`${name}-tags:v1`, ['stable'])
    assert.ok((await Template.getTags((await fetchId(`${name}-tags`))!)).some((x) => x.tag === 'stable'))
    await Template.removeTags(`${name}-tags`, ['stable'])
    assert.ok(!(await Template.getTags((await fetchId(`${name}-tags`))!)).some((x) => x.tag === 'stable'))
    // The default tag stays (E2B refuses to remove it), and so does the template.
    await Template.build(t(), `${name}-tags`, { cpuCount: 1, memoryMB: 1024 })
    await assert.rejects(Template.removeTags(`${name}-tags`, ['default']), /The "default" tag cannot be removed/)
    assert.ok((await Template.getTags((await fetchId(`${name}-tags`))!)).some((x) => x.tag === 'default'))

    // skipCache: every step built again, none reported as cached.
    const skipped: string[] = []
    await Template.build(t(), `${name}-tags:v3`, { cpuCount: 1, memoryMB: 1024, skipCache: true, onBuildLogs: (e) => skipped.push(e.message) })
    assert.ok(skipped.some((m) => m.includes('RUN echo one > /tmp/one')), skipped.join('\n'))
    assert.ok(!skipped.some((m) => m.startsWith('CACHED')), skipped.join('\n'))

    // buildInBackground: "building" at once, then ready, as getBuildStatus reads it (a step of its
    // own, never cached, that cannot end before the status is read).
    const bg = await Template.buildInBackground(Template().fromTemplate('base').runCmd(`sleep 2; echo ${Date.now()} > /tmp/bg`), `${name}-bg`, { cpuCount: 1, memoryMB: 1024 })
    assert.equal((await Template.getBuildStatus(bg)).status, 'building')
    let status = 'building'
    for (const deadline = Date.now() + 120_000; status === 'building' && Date.now() < deadline; ) {
      await new Promise((r) => setTimeout(r, 250))
      status = (await Template.getBuildStatus(bg)).status
    }
    assert.equal(status, 'ready')

    const failing = Template().fromBaseImage().runCmd('echo before').runCmd('exit 7')
    const err = await Template.build(failing, `${name}-fails`, { cpuCount: 1, memoryMB: 1024 }).then(
      () => assert.fail('the build should fail'),
      (e: unknown) => e,
    )
    assert.ok(err instanceof BuildError, String(err))
    assert.match((err as Error).message, /failed to run command 'exit 7': exit status 7/)
  })
})

async function e2bApi<T>(route: string): Promise<T> {
  const res = await fetch(`${process.env.E2B_API_URL}${route}`, { headers: { 'x-api-key': process.env.E2B_API_KEY! } })
  assert.equal(res.status, 200, route)
  return (await res.json()) as T
}

/** The template id behind a name, through the alias route the SDK's exists() uses. */
async function fetchId(alias: string): Promise<string | undefined> {
  const res = await fetch(`${process.env.E2B_API_URL}/templates/aliases/${alias}`, { headers: { 'x-api-key': process.env.E2B_API_KEY! } })
  return res.ok ? ((await res.json()) as { templateID: string }).templateID : undefined
}

describe('e2b CLI: templates', () => {
  test('`e2b template create` (pinned @e2b/cli, no Docker) builds an e2b.Dockerfile with its context, start and ready commands; a sandbox from it has it all', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sandlot-e2b-cli-'))
    try {
      fs.writeFileSync(path.join(dir, 'e2b.Dockerfile'), ['FROM e2bdev/base', 'RUN echo "ran as $(whoami)" > /tmp/ran.txt', 'COPY site /home/user/site', 'ENV MODE=cli', ''].join('\n'))
      fs.mkdirSync(path.join(dir, 'site'))
      fs.writeFileSync(path.join(dir, 'site/index.html'), 'from the cli\n')
      const cliName = `${name}-cli`
      const bin = path.resolve('node_modules/@e2b/cli/dist/index.js')
      const out = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        execFile(
          process.execPath,
          [bin, 'template', 'create', cliName, '--path', dir, '--cmd', 'cd /home/user/site && python3 -m http.server 8080', '--ready-cmd', 'curl -sf http://127.0.0.1:8080/ >/dev/null', '--cpu-count', '1', '--memory-mb', '1024'],
          { env: { ...process.env, E2B_API_URL: apiUrl, E2B_API_KEY: apiKey(), NO_COLOR: '1', FORCE_COLOR: '0' }, timeout: 240_000 },
          (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout: stripVTControlCharacters(stdout), stderr: stripVTControlCharacters(stderr) }),
        )
      })
      assert.equal(out.code, 0, out.stdout + out.stderr)
      assert.match(out.stdout, new RegExp(`Building sandbox template ${cliName} finished`))
      const s = await Sandbox.create(cliName, { metadata: { suite: 'e2b', run: RUN } })
      try {
        const r = await s.commands.run('cat /tmp/ran.txt; echo "$MODE"; curl -s http://127.0.0.1:8080/index.html')
        assert.equal(r.stdout, 'ran as root\ncli\nfrom the cli\n')
      } finally {
        await s.kill()
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})
