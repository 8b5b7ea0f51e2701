// sandlotd's own log as people and machines read it: on a terminal (a real pty) one line per event
// with its fields inline and nothing else between the lines; piped, one JSON object per line. The
// access log (SANDLOT_ACCESS_LOG=1) in both, for a REST call (with its route), a 401, an envd call,
// a preview, and upgrades (a preview's 101, a refused one).
import assert from 'node:assert/strict'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import pty from 'node-pty'
import { formatEvent } from '../packages/server/src/log.js'
import { apiAt, killAllOn, removeHome, run, spawnDaemon, waitFor } from './helpers.js'
import { root } from './sdk-env.js'

const port = Number(process.env.SANDLOT_TEST_PORT ?? 3190) + 22
const url = `http://127.0.0.1:${port}`
const home = path.join(root, '.sandlot-test', `server-log-${port}`)
const PREVIEW_PORT = 8000

describe('the log line of an event (pure)', () => {
  test('fields inline as key=value, quoted when they are not one word; nothing the message already says', () => {
    const line = formatEvent({ level: 30, time: 1, pid: 9, hostname: 'h', msg: 'created i123 in 12 ms', sandboxId: 'i123', ms: 12, template: 'base', note: 'two words', n: 3, ok: true, meta: { a: 1 } }, false)
    assert.equal(line, 'created i123 in 12 ms template=base note="two words" n=3 ok=true meta={"a":1}')
    assert.equal(formatEvent({ msg: 'GET / 200 8.0 ms', status: 200, ms: 8, port: 20 }, false), 'GET / 200 8.0 ms port=20')
    assert.equal(formatEvent({ msg: 'took 1.25 s', s: 1.2, t: 1.25 }, false), 'took 1.25 s s=1.2')
  })

  test('a message or value with line breaks stays on one line', () => {
    assert.equal(formatEvent({ msg: 'step output:\nline 1\r\nline 2', out: 'a\nb' }, false), 'step output:\\nline 1\\nline 2 out="a\\nb"')
  })

  test("an error is its message, unless the log level is debug: then its stack follows", () => {
    const err = { type: 'Error', message: 'disk full', stack: 'Error: disk full\n    at write (file.js:1:1)' }
    assert.equal(formatEvent({ msg: 'cannot write the layer', err }, false), 'cannot write the layer err="disk full"')
    assert.equal(formatEvent({ msg: 'cannot write the layer: disk full', err }, false), 'cannot write the layer: disk full')
    assert.equal(formatEvent({ msg: 'cannot write the layer: disk full', err }, true), 'cannot write the layer: disk full\n    Error: disk full\n        at write (file.js:1:1)')
  })
})

interface Server {
  /** What it wrote so far. */
  output(): string
  stop(): Promise<void>
}

/** Its own home, port, bridge and subnet (the template cache shared), no pool, the access log on, the log's format left to it. */
function serverEnv(): Record<string, string> {
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    SANDLOT_HOME: home,
    SANDLOT_TEMPLATES_DIR: path.join(root, '.sandlot-test/templates'),
    SANDLOT_LISTEN: `127.0.0.1:${port}`,
    SANDLOT_BRIDGE: `sandlot${port}`,
    SANDLOT_SUBNET: `10.${(port >> 8) & 255}.${port & 255}.0/24`,
    SANDLOT_POOL: 'base=0',
    SANDLOT_ACCESS_LOG: '1',
  }
  delete env.SANDLOT_LOG_JSON
  return env
}

/** sandlotd on a pty of its own, as when a person starts it in a terminal. */
function onTerminal(): Server {
  const p = pty.spawn(process.execPath, ['packages/server/dist/main.js'], { cwd: root, env: serverEnv(), cols: 120, rows: 40 })
  let out = ''
  p.onData((d) => (out += d))
  let running = true
  const exited = new Promise<void>((resolve) => p.onExit(() => resolve())).then(() => void (running = false))
  return { output: () => out, stop: () => stopping(exited, () => running, (signal) => p.kill(signal)) }
}

/** sandlotd with its output to a file, as under systemd. */
function piped(): Server {
  const logFile = `${home}.log`
  const fd = fs.openSync(logFile, 'w')
  const daemon = spawnDaemon(port, serverEnv(), fd)
  fs.closeSync(fd)
  return {
    output: () => fs.readFileSync(logFile, 'utf8'),
    stop: () => daemon.stop(),
  }
}

/** SIGTERM, and SIGKILL if it has not stopped 30 s later; done at once if it had stopped. */
async function stopping(exited: Promise<void>, running: () => boolean, kill: (signal: string) => void): Promise<void> {
  if (!running()) return exited
  kill('SIGTERM')
  const timer = setTimeout(() => running() && kill('SIGKILL'), 30_000)
  await exited
  clearTimeout(timer)
}

/**
 * Runs a server through exercise(), then `check` with its sandbox's id while it runs; kills its
 * sandboxes and stops it whatever happens.
 */
async function session(server: Server, check: (id: string) => Promise<void>): Promise<void> {
  try {
    await check(await exercise(server))
  } finally {
    // Also one a failed exercise() made.
    await Promise.resolve()
      .then(() => killAllOn(url, fs.readFileSync(path.join(home, 'api-key'), 'utf8').trim()))
      .catch(() => {})
    await server.stop()
  }
}

/**
 * Waits until the server can create sandboxes, then makes one of each request the access log must
 * show; returns the sandbox's id.
 */
async function exercise(server: Server): Promise<string> {
  await waitFor(async () => (await fetch(`${url}/health`).catch(() => undefined))?.ok || (server.output().includes('sandlotd: ') && fail(server)), 120_000, 'the server to be ready')
  const key = fs.readFileSync(path.join(home, 'api-key'), 'utf8').trim()
  const api = apiAt(() => url, () => key)
  assert.equal((await fetch(`${url}/api/v1/sandboxes`)).status, 401)
  const created = await api('POST', '/api/v1/sandboxes', { keepAliveMs: 120_000 })
  assert.equal(created.status, 201, JSON.stringify(created.json))
  const id: string = created.json.id
  // An envd call (Connect's process start), which also starts the previews' servers: a plain one,
  // and one that takes upgrades (101, as a WebSocket server answers).
  await run(id, `nohup python3 -m http.server ${PREVIEW_PORT} >/dev/null 2>&1 &`, { url, key })
  await run(id, `nohup node -e "${UPGRADING_SERVER}" >/dev/null 2>&1 &`, { url, key })
  for (const port of [PREVIEW_PORT, UPGRADE_PORT]) {
    await waitFor(async () => {
      const r = await fetch(`${url}/`, { headers: { 'e2b-sandbox-id': id, 'e2b-sandbox-port': String(port) } })
      await r.arrayBuffer()
      return r.status === 200
    }, 60_000, `the preview of port ${port} to answer`)
  }
  assert.equal((await api('GET', '/api/v1/sandboxes')).status, 200)
  assert.equal((await api('GET', `/api/v1/sandboxes/${id}`)).status, 200)
  assert.equal((await api('GET', '/api/v1/no-such-route')).status, 404)
  assert.equal(await upgrade({ 'e2b-sandbox-id': id, 'e2b-sandbox-port': String(UPGRADE_PORT) }, '/ws'), 'HTTP/1.1 101 Switching Protocols')
  // Sandlot's own routes take no upgrade.
  assert.match(await upgrade({}, '/api/v1/sandboxes'), /^HTTP\/1\.1 400 /)
  return id
}

const UPGRADE_PORT = 8001
/** Answers every upgrade with a 101, and closes when its client does (node's http, no module needed). */
const UPGRADING_SERVER = `require('http').createServer((q, r) => r.end('ok')).on('upgrade', (q, s) => s.on('end', () => s.end()).write('HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n\\r\\n')).listen(${UPGRADE_PORT})`

/** A WebSocket upgrade request to the server with these headers: the status line of its answer; then it hangs up. */
function upgrade(headers: Record<string, string>, target: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1')
    let got = ''
    socket.on('error', reject)
    socket.setTimeout(60_000, () => {
      socket.destroy()
      reject(new Error(`no answer to the upgrade of ${target}: ${JSON.stringify(got)}`))
    })
    socket.on('data', (d) => {
      got += d.toString('latin1')
      if (!got.includes('\r\n')) return
      // Hung up as a client closing does; the proxy closes its side once the sandbox's server has.
      socket.end()
      setTimeout(() => socket.destroy(), 10_000).unref()
      resolve(got.split('\r\n')[0]!)
    })
    const head = { host: `127.0.0.1:${port}`, connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-version': '13', ...headers }
    socket.write(`GET ${target} HTTP/1.1\r\n${Object.entries(head).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`)
  })
}

function fail(server: Server): never {
  throw new Error(`the server stopped:\n${server.output().slice(-3000)}`)
}

const ANSI = /\x1b\[[0-9;]*m/g

describe('sandlotd log', () => {
  before(() => removeHome(home))
  after(() => {
    removeHome(home)
    fs.rmSync(`${home}.log`, { force: true })
  })

  test('on a terminal: one readable line per event, fields inline, no warnings between them; the access log too', async () => {
    const server = onTerminal()
    const messages = () => server.output().replace(ANSI, '').split(/\r?\n/).filter(Boolean).map((l) => /^\[\d\d:\d\d:\d\d\] (?:DEBUG|INFO|WARN|ERROR|FATAL): (.*)$/.exec(l)?.[1] ?? l)
    await session(server, async (id) => {
      const expected = [
        /^GET \/api\/v1\/sandboxes 401 [\d.]+ ms access=true$/,
        /^GET \/api\/v1\/sandboxes 200 [\d.]+ ms access=true$/,
        new RegExp(`^POST /process\\.Process/Start 200 [\\d.]+ ms \\(${id}\\) access=true$`),
        new RegExp(`^GET / 200 [\\d.]+ ms \\(${id}:${PREVIEW_PORT}\\) access=true$`),
        // The route's template, with the path it took.
        new RegExp(`^GET /api/v1/sandboxes/:id 200 [\\d.]+ ms \\(${id}\\) access=true path=/api/v1/sandboxes/${id}$`),
        // Upgrades, once their connection closes.
        new RegExp(`^GET /ws 101 [\\d.]+ ms \\(${id}:${UPGRADE_PORT}\\) access=true upgrade=websocket$`),
        /^GET \/api\/v1\/sandboxes 400 [\d.]+ ms access=true upgrade=websocket$/,
        // No route took it: its path.
        /^GET \/api\/v1\/no-such-route 404 [\d.]+ ms access=true$/,
      ]
      // Each line is written once its reply has ended: wait for them.
      await waitFor(async () => expected.every((re) => messages().some((m) => re.test(m))), 10_000, 'the access lines').catch(() => assert.fail(`access lines missing in:\n${messages().join('\n')}`))
    })
    const lines = server.output().replace(ANSI, '').split(/\r?\n/).filter(Boolean)
    for (const line of lines) assert.match(line, /^\[\d\d:\d\d:\d\d\] (DEBUG|INFO|WARN|ERROR|FATAL): \S/, `not a log line: ${JSON.stringify(line)}`)
    assert.doesNotMatch(server.output(), /Warning|FSTDEP/)
    assert.ok(messages().some((m) => /^sandlotd listening on http:\/\/127\.0\.0\.1:\d+; API key in \S+ runtime=runc domain=sandlot\.localhost:\d+/.test(m)), lines.join('\n'))
  })

  test('piped: one JSON object per line; access lines carry method, path, status, time, sandbox and port', async () => {
    const server = piped()
    const entries = () =>
      server
        .output()
        .split('\n')
        // (The last piece may be a line still being written.)
        .slice(0, -1)
        .filter(Boolean)
        .map((l) => {
          try {
            return JSON.parse(l) as Record<string, unknown>
          } catch {
            return assert.fail(`not a JSON line: ${JSON.stringify(l)}`)
          }
        })
    const access = () => entries().filter((e) => e.access === true)
    await session(server, async (id) => {
      const has = (want: Record<string, unknown>) => access().some((e) => Object.entries(want).every(([k, v]) => e[k] === v) && typeof e.ms === 'number')
      const wanted = [
        { method: 'GET', path: '/api/v1/sandboxes', status: 401 },
        { method: 'GET', path: '/api/v1/sandboxes', status: 200 },
        { method: 'POST', path: '/process.Process/Start', status: 200, sandboxId: id },
        { method: 'GET', path: '/', status: 200, sandboxId: id, port: PREVIEW_PORT },
        { method: 'GET', path: `/api/v1/sandboxes/${id}`, route: '/api/v1/sandboxes/:id', status: 200, sandboxId: id },
        { method: 'GET', path: '/ws', status: 101, sandboxId: id, port: UPGRADE_PORT, upgrade: 'websocket' },
        { method: 'GET', path: '/api/v1/sandboxes', status: 400, upgrade: 'websocket' },
        { method: 'GET', path: '/api/v1/no-such-route', route: undefined, status: 404 },
      ]
      await waitFor(async () => wanted.every(has), 10_000, 'the access lines').catch(() => assert.fail(`access lines missing in:\n${JSON.stringify(access(), null, 1)}`))
    })
    assert.ok(entries().some((e) => e.msg === 'ready: sandboxes can be created'))
    assert.doesNotMatch(server.output(), /Warning|FSTDEP/)
  })
})
