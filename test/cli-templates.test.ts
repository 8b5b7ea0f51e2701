// `sandlot template …` against the test server: a Dockerfile read and mapped (unit tests of the
// parser), then real builds: progress, the result running (its files, env, user and the CMD's server
// answering), the layer cache, a failing RUN, refusals by name with the line, a source escaping the
// context, ls, tag, rm (refused while in use), and progress on a real terminal (colours, the clock).
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { createRequire } from 'node:module'
import { parseDockerfile } from '../packages/cli/src/dockerfile.js'
import { api, waitFor } from './helpers.js'

const require = createRequire(import.meta.url)
const pty = require('node-pty') as typeof import('node-pty')

/** Runs the CLI on a real terminal (a PTY): everything it wrote, and its exit code. */
async function cliOnTerminal(args: string[]): Promise<{ code: number; screen: string }> {
  const env = { ...process.env } as Record<string, string>
  delete env.NO_COLOR
  const term = pty.spawn(process.execPath, [path.resolve('packages/cli/dist/main.js'), ...args], { cols: 200, rows: 40, env })
  let screen = ''
  term.onData((d) => (screen += d))
  const code = await new Promise<number>((resolve) => term.onExit(({ exitCode }) => resolve(exitCode)))
  // The last output may come just after the exit.
  await waitFor(async () => screen.includes('Built '), 2000, 'the summary').catch(() => undefined)
  return { code, screen }
}

interface CliResult {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs the CLI without blocking the test's event loop (builds take a while). */
function cli(args: string[], cwd = process.cwd()): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.resolve('packages/cli/dist/main.js'), ...args], { cwd, env: process.env })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    child.on('exit', (code) => resolve({ code, stdout, stderr }))
  })
}

/** Makes a build context: path → content, or { link } for a symlink. */
function context(files: Record<string, string | { link: string }>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sandlot-tplcli-'))
  for (const [name, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true })
    if (typeof content === 'string') fs.writeFileSync(path.join(dir, name), content)
    else fs.symlinkSync(content.link, path.join(dir, name))
  }
  return dir
}

describe('Dockerfile mapping (parser)', () => {
  test('E2B\'s frame, ARG scopes and --build-arg, ENV forms, exec and heredoc RUN, COPY flags and sources, CMD with ENTRYPOINT', () => {
    const plan = parseDockerfile(
      [
        'ARG BASE=base',
        'FROM ${BASE}',
        'ARG BASE',
        'ARG WHO=world',
        'ENV A=1 B="two words" \\',
        '    C=${WHO}',
        'ENV D three four',
        'WORKDIR /srv/$WHO',
        'COPY --chown=user:user --chmod=0750 a.txt dir/ /dest/',
        'RUN ["echo", "x y"]',
        'RUN <<EOT',
        'echo one',
        'EOT',
        'LABEL x=y',
        'ENTRYPOINT ["node"]',
        'CMD ["server.js", "--port", "80"]',
      ].join('\n'),
      { buildArgs: { WHO: 'earth' } },
    )
    assert.equal(plan.from, 'base')
    assert.deepEqual(
      plan.steps.map((s) => (s.type === 'COPY' ? ['COPY', s.src, s.dest, s.owner, s.mode, s.line] : [s.type, ...s.args])),
      [
        ['USER', 'root'],
        ['WORKDIR', '/'],
        ['ENV', 'A', '1', 'B', 'two words', 'C', 'earth'],
        ['ENV', 'D', 'three four'],
        ['WORKDIR', '/srv/earth'],
        ['COPY', 'a.txt', '/dest/', 'user:user', '0750', 9],
        ['COPY', 'dir/', '/dest/', 'user:user', '0750', 9],
        ['RUN', "export BASE=base; export WHO=earth\necho 'x y'"],
        ['RUN', 'export BASE=base; export WHO=earth\necho one'],
        ['USER', 'user'],
      ],
    )
    assert.equal(plan.startCmd, 'node server.js --port 80')
    assert.deepEqual(plan.notes, ['line 14: LABEL ignored (templates carry no labels)'])
    assert.equal(parseDockerfile('FROM base\nENTRYPOINT node a.js\nCMD ["ignored"]').startCmd, 'node a.js')
    assert.equal(parseDockerfile('FROM base\nCMD python3 -m http.server').startCmd, 'python3 -m http.server')
    // ENV leaves what only the server knows (the base's PATH) for it to expand.
    assert.deepEqual(parseDockerfile('FROM base\nENV PATH=/opt/bin:$PATH').steps[2]!.args, ['PATH', '/opt/bin:$PATH'])
    assert.equal(parseDockerfile('FROM python:3.12\nWORKDIR /app').from, 'python:3.12')
    assert.deepEqual(parseDockerfile('FROM base', { buildArgs: { NOPE: '1' } }).unusedBuildArgs, ['NOPE'])
  })

  test('what a template cannot be is refused by name, with its line', () => {
    const refused: [string, RegExp][] = [
      ['FROM base AS one\nRUN true\nFROM base\nRUN true', /Dockerfile line 3: multi-stage builds are not supported/],
      ['FROM base\nCOPY --from=build /out /out', /Dockerfile line 2: COPY --from=build is not supported/],
      ['FROM base\nADD https://example.com/a.tgz /tmp/', /Dockerfile line 2: ADD https:\/\/example\.com\/a\.tgz: ADD of a URL is not supported/],
      ['FROM base\n\nADD site.tar.gz /srv/', /Dockerfile line 3: ADD site\.tar\.gz: ADD of a local archive .* is not supported/],
      ['FROM base\nSHELL ["/bin/zsh", "-c"]', /Dockerfile line 2: SHELL is not supported/],
      ['FROM base\nONBUILD RUN true', /Dockerfile line 2: ONBUILD is not supported/],
      ['FROM base\nRUN --mount=type=cache,target=/c true', /Dockerfile line 2: RUN --mount is not supported/],
      ['FROM base\nCOPY <<EOF /x\nhi\nEOF', /Dockerfile line 2: COPY <<EOF \(a heredoc file\) is not supported/],
      ['FROM scratch', /Dockerfile line 1: FROM scratch is not supported/],
      ['RUN true\nFROM base', /Dockerfile line 1: RUN before FROM/],
      ['# nothing', /has no FROM/],
      ['FROM base\nFROBNICATE now', /Dockerfile line 2: unknown instruction FROBNICATE/],
    ]
    for (const [text, message] of refused) assert.throws(() => parseDockerfile(text), message, text)
    // Ignored with a note rather than refused: nothing in the template depends on them.
    assert.deepEqual(parseDockerfile('FROM base\nHEALTHCHECK CMD true\nSTOPSIGNAL SIGINT\nEXPOSE 80\nVOLUME /data').notes.length, 4)
  })
})

describe('sandlot template (real server)', { concurrency: false }, () => {
  // New content each run, so the uploads are new (the server keeps archives by hash).
  const nonce = crypto.randomUUID()
  const ctx = context({
    Dockerfile: [
      'ARG BASE=base',
      'FROM ${BASE}',
      'ARG GREETING=hello',
      'ARG PORT=8080',
      'ENV APP_HOME=/srv/app MSG="${GREETING} world"',
      'WORKDIR $APP_HOME',
      'COPY hello.txt ./',
      'COPY --chown=user:user site/ ./site/',
      'COPY --chmod=755 run.sh /usr/local/bin/run-site',
      'COPY . /srv/ctx/',
      'RUN echo "building for port $PORT as $(id -un) in $(pwd)" && test -f hello.txt && echo "$GREETING" > greeting.txt',
      'USER user',
      'RUN id -un > $HOME/whoami.txt && echo "to stderr" >&2',
      'EXPOSE 8080',
      'CMD ["python3", "-m", "http.server", "8080", "--directory", "site"]',
    ].join('\n'),
    '.dockerignore': 'secret.txt\n**/*.log\nsite/drafts\n',
    'hello.txt': `hello from the context ${nonce}\n`,
    'secret.txt': 'never sent\n',
    'run.sh': `#!/bin/sh\n# ${nonce}\necho running\n`,
    'site/index.html': `<h1>served by the CMD ${nonce}</h1>\n`,
    'site/app.log': 'ignored\n',
    'site/drafts/x.html': 'ignored\n',
    'site/hello-link': { link: '../hello.txt' },
    'site/host-link': { link: '/etc/hostname' },
  })
  const made: string[] = []
  let sandbox = ''

  before(() => {
    fs.chmodSync(path.join(ctx, 'run.sh'), 0o644)
  })

  after(async () => {
    if (sandbox) await api('DELETE', `/api/v1/sandboxes/${sandbox}`)
    for (const name of made) await api('DELETE', `/api/v1/templates/${name}`)
    fs.rmSync(ctx, { recursive: true, force: true })
  })

  const ready = ['--ready-cmd', 'curl -fsS http://127.0.0.1:8080/index.html >/dev/null']

  test('builds from a Dockerfile with progress; the result has the files, env, user and the CMD answering', async () => {
    made.push('tplweb')
    // --no-cache: cold, whatever earlier runs left in the server's layer cache.
    const r = await cli(['template', 'build', 'tplweb', ctx, '--tag', 'v1', '--build-arg', 'GREETING=bonjour', '--no-cache', ...ready])
    assert.equal(r.code, 0, r.stderr)
    // USER root and WORKDIR / (Docker's start, as E2B maps it), then the Dockerfile's nine.
    assert.match(r.stderr, /^Step 1\/11: USER root \(Docker starts as root\)$/m)
    assert.match(r.stderr, /Note: .*Dockerfile line 14: EXPOSE ignored/)
    assert.match(r.stderr, /Context .*: 4 archives for 4 COPY steps, 4 uploaded/)
    assert.match(r.stderr, /^Step 6\/11: COPY --chown=user:user site\/ \.\/site\/ \(line 8\)$/m)
    assert.match(r.stderr, /^Step 9\/11: RUN echo "building for port \$PORT .* \(line 11\)\n {4}building for port 8080 as root in \/srv\/app$/m)
    assert.match(r.stderr, /^Step 11\/11: RUN id -un .*\n {4}to stderr$/m)
    assert.match(r.stderr, /Trying the start command: python3 -m http\.server 8080 --directory site/)
    assert.match(r.stdout, /^Built tplweb \(tags: default, v1\) in [\d.]+ s: 11 steps, 0 cached/m)

    const created = await cli(['create', '--template', 'tplweb:v1', '--keep-alive', '10m'])
    assert.equal(created.code, 0, created.stderr)
    sandbox = created.stdout.trim().split('\n').at(-1)!
    const sh = async (cmd: string) => {
      const x = await cli(['exec', sandbox, '--', 'bash', '-lc', cmd])
      assert.equal(x.code, 0, `${cmd}: ${x.stderr}`)
      return x.stdout.trim()
    }
    assert.equal(await sh('pwd; id -un; echo "$MSG"; cat greeting.txt ~/whoami.txt hello.txt'), `/srv/app\nuser\nbonjour world\nbonjour\nuser\nhello from the context ${nonce}`)
    assert.equal(await sh('stat -c "%U:%G %n" site/index.html hello.txt'), 'user:user site/index.html\nroot:root hello.txt')
    assert.equal(await sh('stat -c %a /usr/local/bin/run-site && run-site'), '755\nrunning')
    // Symlinks are copied as links, never followed (even one pointing out of the context).
    assert.equal(await sh('readlink site/hello-link site/host-link'), '../hello.txt\n/etc/hostname')
    // .dockerignore: neither in a directory COPY nor in `COPY .`.
    assert.equal(await sh('ls -A site | LC_ALL=C sort | tr "\\n" " "; echo; ls -A /srv/ctx | LC_ALL=C sort | tr "\\n" " "'), 'hello-link host-link index.html \n.dockerignore Dockerfile hello.txt run.sh site')
    assert.equal(await sh('ls -A /srv/ctx/site | LC_ALL=C sort | tr "\\n" " "'), 'hello-link host-link index.html')
    // The CMD's server was up before the create answered.
    assert.equal(await sh('curl -fsS http://127.0.0.1:8080/index.html'), `<h1>served by the CMD ${nonce}</h1>`)
  })

  test('a second identical build reuses every layer and says CACHED', async () => {
    const r = await cli(['template', 'build', 'tplweb', ctx, '--build-arg', 'GREETING=bonjour', ...ready, '--json'])
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stderr, /^Step 9\/11: RUN echo "building for port .* CACHED$/m)
    assert.match(r.stderr, /all on the server already/)
    const summary = JSON.parse(r.stdout)
    assert.equal(summary.status, 'ready')
    // Every step but the ENV, which is config, not a layer.
    assert.equal(summary.cached, 10)
    assert.doesNotMatch(r.stderr, /^ {4}building for port/m)
  })

  test('FROM another template of the server builds on it (fromTemplate), with its files and config', async () => {
    made.push('tplchild')
    const dir = context({ Dockerfile: 'FROM tplweb:v1\nRUN cat /srv/app/hello.txt && echo "$MSG from $(pwd)"\n' })
    try {
      const r = await cli(['template', 'build', 'tplchild', dir])
      assert.equal(r.code, 0, r.stderr)
      assert.match(r.stderr, /from template tplweb:v1: /)
      assert.match(r.stderr, new RegExp(`^ {4}hello from the context ${nonce}\n {4}bonjour world from /$`, 'm'))
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  test('ls lists name, tags and creation; tag adds tags; rm is refused while a sandbox uses it', async () => {
    const ls = await cli(['template', 'ls'])
    assert.equal(ls.code, 0, ls.stderr)
    assert.match(ls.stdout, /^NAME\s+TAGS\s+CREATED$/m)
    assert.match(ls.stdout, /^base\s+default\s+-$/m)
    assert.match(ls.stdout, /^tplweb\s+default,v1\s+(just now|\d+ s ago|\d+ min ago)$/m)
    const tagged = await cli(['template', 'tag', 'tplweb:v1', 'stable', 'prod'])
    assert.equal(tagged.code, 0, tagged.stderr)
    assert.match(tagged.stdout, /tplweb: build [0-9a-f-]{36} is tagged prod, stable, v1/)
    const json = JSON.parse((await cli(['template', 'ls', '--json'])).stdout)
    assert.deepEqual(json.find((t: { name: string }) => t.name === 'tplweb').tags, ['default', 'prod', 'stable', 'v1'])
    // The REST under it: unknown template, bad tag, base.
    assert.equal((await api('POST', '/api/v1/templates/nope/tags', { tags: ['x'] })).status, 404)
    assert.equal((await api('POST', '/api/v1/templates/tplweb/tags', { tags: ['Bad Tag'] })).status, 400)
    assert.equal((await api('POST', '/api/v1/templates/tplweb/tags', { tags: [] })).status, 400)
    assert.equal((await api('POST', '/api/v1/templates/base/tags', { tags: ['x'] })).status, 400)
    const missingTag = await cli(['template', 'tag', 'tplweb:nope', 'x'])
    assert.equal(missingTag.code, 1)
    assert.match(missingTag.stderr, /Template "tplweb" has no tag "nope" \(tags: default, prod, stable, v1\)/)

    const refused = await cli(['template', 'rm', 'tplweb'])
    assert.equal(refused.code, 1)
    assert.match(refused.stderr, /Template "tplweb" is in use by running sandboxes: kill them first/)
    assert.equal((await cli(['kill', sandbox])).code, 0)
    sandbox = ''
    const removed = await cli(['template', 'rm', 'tplweb', '--json'])
    assert.equal(removed.code, 0, removed.stderr)
    assert.deepEqual(JSON.parse(removed.stdout), { name: 'tplweb', removed: true })
    assert.doesNotMatch((await cli(['template', 'ls'])).stdout, /tplweb/)
    assert.equal((await cli(['template', 'rm', 'tplweb'])).code, 1)
  })

  test('a failing RUN names the step and its line, shows its output, exits 1 and tags nothing', async () => {
    made.push('tplfail')
    const dir = context({ Dockerfile: 'FROM base\nRUN echo before the failure && echo on stderr >&2 && exit 3\nRUN echo never\n' })
    try {
      const r = await cli(['template', 'build', 'tplfail', dir])
      assert.equal(r.code, 1, r.stderr)
      assert.match(r.stderr, /Error: the build of tplfail failed at step 3\/6, line 2: RUN echo before the failure/)
      assert.match(r.stderr, /failed to run command '.*': exit status 3/)
      assert.match(r.stderr, /Its output:\n {4}before the failure\n {4}on stderr\n/)
      assert.doesNotMatch(r.stderr, /Step 4\/6/)
      const listed = (await api('GET', '/api/v1/templates')).json.find((t: { name: string }) => t.name === 'tplfail')
      assert.deepEqual(listed?.tags ?? [], [])
      const create = await cli(['create', '--template', 'tplfail'])
      assert.equal(create.code, 1)
      assert.match(create.stderr, /has no tag "default"/)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  test('refusals name the instruction and its line; sources may not leave the context', async () => {
    const cases: [Record<string, string | { link: string }>, RegExp][] = [
      [{ Dockerfile: 'FROM base AS build\nRUN true\nFROM base\nCOPY --from=build /a /a\n' }, /Dockerfile: line 3: multi-stage builds are not supported/],
      [{ Dockerfile: 'FROM base\nCOPY --from=builder /out /out\n' }, /Dockerfile: line 2: COPY --from=builder is not supported/],
      [{ Dockerfile: 'FROM base\nCOPY ../outside.txt /x\n' }, /Dockerfile: line 2: COPY \.\.\/outside\.txt: the source escapes the build context/],
      [{ Dockerfile: 'FROM base\nRUN true\nCOPY /etc/passwd /x\n' }, /Dockerfile: line 3: COPY \/etc\/passwd: an absolute source is outside the build context/],
      [{ Dockerfile: 'FROM base\nCOPY out/passwd /x\n', out: { link: '/etc' } }, /Dockerfile: line 2: COPY out\/passwd: out is a symlink; a source may not go through one/],
      [{ Dockerfile: 'FROM base\nCOPY secret.txt /x\n', 'secret.txt': 's', '.dockerignore': 'secret.txt' }, /line 2: COPY secret\.txt: secret\.txt is excluded by \.dockerignore/],
      [{ Dockerfile: 'FROM base\nCOPY missing.txt /x\n' }, /line 2: COPY missing\.txt: no such file or directory in the build context/],
    ]
    for (const [files, message] of cases) {
      const dir = context(files)
      try {
        const r = await cli(['template', 'build', 'tplrefused', dir])
        assert.equal(r.code, 1, r.stderr)
        assert.match(r.stderr, message)
      } finally {
        fs.rmSync(dir, { recursive: true, force: true })
      }
    }
    // Nothing was started for any of them.
    assert.equal((await api('GET', '/api/v1/templates')).json.some((t: { name: string }) => t.name === 'tplrefused'), false)
    const usage = await cli(['template', 'build'])
    assert.equal(usage.code, 2)
    assert.equal((await cli(['template', 'frobnicate'])).code, 2)
  })

  test('a heredoc with a shebang runs with its interpreter, its ARGs in the environment; $HOME in WORKDIR and COPY is the step user\'s home', async () => {
    made.push('tplheredoc')
    const dir = context({
      Dockerfile: [
        'FROM base',
        'ARG WHO=the-heredoc',
        'USER user',
        'WORKDIR $HOME/app',
        'COPY note.txt $HOME/notes/',
        'RUN <<EOF',
        '#!/usr/bin/env python3',
        'import os',
        'open("made-by-python.txt", "w").write("python saw " + os.environ["WHO"] + " in " + os.getcwd() + "\\n")',
        'EOF',
      ].join('\n'),
      'note.txt': `a note ${nonce}\n`,
    })
    try {
      const r = await cli(['template', 'build', 'tplheredoc', dir])
      assert.equal(r.code, 0, r.stderr)
      const created = await cli(['create', '--template', 'tplheredoc', '--keep-alive', '5m'])
      const id = created.stdout.trim().split('\n').at(-1)!
      try {
        const x = await cli(['exec', id, '--', 'bash', '-lc', 'pwd; cat made-by-python.txt ~/notes/note.txt'])
        assert.equal(x.stdout, `/home/user/app\npython saw the-heredoc in /home/user/app\na note ${nonce}\n`, x.stderr)
      } finally {
        await api('DELETE', `/api/v1/sandboxes/${id}`)
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  test('on a terminal: the steps in bold, a running clock on the step under way, CACHED in green', async () => {
    made.push('tplterm')
    // A step of this run's own (never in the cache), silent past the clock's first tick (the clock
    // runs on a step's line until its first output).
    const dir = context({ Dockerfile: ['FROM base', `RUN sleep 2.5; echo "terminal ${nonce}"`, ''].join('\n') })
    try {
      const first = await cliOnTerminal(['template', 'build', 'tplterm', dir])
      assert.equal(first.code, 0, first.screen)
      assert.match(first.screen, /\x1b\[1mStep 3\/5:\x1b\[0m RUN sleep 2\.5; echo "terminal /)
      // The clock rewrites the step's line in place: "\r", erase the line, the header, the seconds.
      assert.match(first.screen, /\r\x1b\[K\x1b\[1mStep 3\/5:\x1b\[0m RUN sleep 2\.5; echo "terminal [^\r\n]* \x1b\[2m[1-9]\d*s\x1b\[0m/)
      assert.match(first.screen, new RegExp(`\\x1b\\[2mterminal ${nonce}\\x1b\\[0m`))
      const again = await cliOnTerminal(['template', 'build', 'tplterm', dir])
      assert.equal(again.code, 0, again.screen)
      assert.match(again.screen, /\x1b\[1mStep 3\/5:\x1b\[0m RUN sleep 2\.5; echo "terminal [^\r\n]* \x1b\[32mCACHED\x1b\[0m/)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})
