// The SDK's data plane against a real sandbox: filesystem, processes, terminals, directory watchers
// and typed errors.
import assert from 'node:assert/strict'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { Readable, Writable } from 'node:stream'
import { after, before, describe, test } from 'node:test'
import {
  AuthenticationError,
  FileNotFoundError,
  InvalidArgumentError,
  NotFoundError,
  Sandbox,
  SandboxNotFoundError,
  SandlotError,
  TimeoutError,
  type FilesystemEvent,
  type ProcessMessage,
} from 'sandlot'
import { Cleanup, sleep } from './sdk-env.js'

const cleanup = new Cleanup()
let sandbox: Sandbox

before(async () => {
  sandbox = await Sandbox.create({ cwd: '~/work', envVars: { SANDBOX_VAR: 'from-create' }, metadata: { suite: 'sdk-sandbox' } })
  cleanup.add(sandbox.id)
})
after(async () => {
  await sandbox?.kill()
  await cleanup.run()
})

async function until(what: string, fn: () => boolean, ms = 5_000): Promise<void> {
  const start = Date.now()
  while (!fn()) {
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
  }
}

describe('filesystem', () => {
  test('write and read text and bytes; relative paths are under cwd, which was created', async () => {
    assert.equal(await sandbox.filesystem.exists('/home/user/work'), true)
    await sandbox.filesystem.write('hello.txt', 'Hello World! ünïcødé')
    assert.equal(await sandbox.filesystem.read('hello.txt'), 'Hello World! ünïcødé')
    assert.equal(await sandbox.filesystem.read('/home/user/work/hello.txt'), 'Hello World! ünïcødé')
    assert.equal(await sandbox.filesystem.read('~/work/hello.txt'), 'Hello World! ünïcødé')
    const bytes = new Uint8Array([0, 1, 2, 255, 254, 10, 13])
    await sandbox.filesystem.writeBytes('sub/dir/bin.dat', bytes)
    assert.deepEqual(await sandbox.filesystem.readBytes('sub/dir/bin.dat'), bytes)
    await sandbox.filesystem.write('empty.txt', '')
    assert.equal(await sandbox.filesystem.read('empty.txt'), '')
    // Written as `user`, who owns what it creates.
    assert.equal((await sandbox.process.startAndWait('stat -c %U sub/dir/bin.dat')).stdout, 'user')
  })

  test('list, makeDir, exists, rename, remove', async () => {
    assert.equal(await sandbox.filesystem.makeDir('tree/a'), true)
    assert.equal(await sandbox.filesystem.makeDir('tree/a'), false, 'already there')
    await sandbox.filesystem.write('tree/f.txt', '12345')
    const list = await sandbox.filesystem.list('tree')
    assert.deepEqual(
      list.sort((x, y) => x.name.localeCompare(y.name)),
      [
        { name: 'a', isDir: true, path: '/home/user/work/tree/a' },
        { name: 'f.txt', isDir: false, path: '/home/user/work/tree/f.txt', size: 5 },
      ],
    )
    await sandbox.filesystem.rename('tree/f.txt', 'tree/a/g.txt')
    assert.equal(await sandbox.filesystem.exists('tree/f.txt'), false)
    assert.equal(await sandbox.filesystem.read('tree/a/g.txt'), '12345')
    await sandbox.filesystem.remove('tree')
    assert.equal(await sandbox.filesystem.exists('tree'), false)
    await sandbox.filesystem.remove('tree') // removing what is not there is fine
  })

  test('missing paths throw FileNotFoundError naming the path', async () => {
    for (const op of [
      () => sandbox.filesystem.read('nope.txt'),
      () => sandbox.filesystem.readBytes('/nope/x'),
      () => sandbox.filesystem.list('no-dir'),
      () => sandbox.filesystem.rename('nope.txt', 'other.txt'),
      () => sandbox.downloadStream('nope.txt'),
    ]) {
      await assert.rejects(op(), (err: unknown) => {
        assert.ok(err instanceof FileNotFoundError, String(err))
        assert.ok(err instanceof NotFoundError && err instanceof SandlotError)
        assert.match(err.message, /nope|no-dir/)
        return true
      })
    }
    await assert.rejects(sandbox.filesystem.read('sub'), InvalidArgumentError, 'a directory is not a file')
  })

  test('uploadFile and downloadFile with streams and bytes', async () => {
    async function* chunks() {
      for (let i = 0; i < 100; i++) yield new TextEncoder().encode(`line ${i}\n`)
    }
    const remote = await sandbox.uploadFile('up/gen.txt', chunks())
    assert.equal(remote, '/home/user/work/up/gen.txt')
    const expected = Array.from({ length: 100 }, (_, i) => `line ${i}\n`).join('')
    assert.equal(await sandbox.filesystem.read('up/gen.txt'), expected)
    await sandbox.uploadFile('up/node.txt', Readable.from([Buffer.from('node '), Buffer.from('stream')]))
    await sandbox.uploadFile('up/web.txt', new Blob(['web stream']).stream())
    await sandbox.uploadFile('up/bytes.txt', new TextEncoder().encode('bytes'))
    const got: Buffer[] = []
    const sink = new Writable({ write: (c, _e, cb) => (got.push(c), cb()) })
    assert.equal(await sandbox.downloadFile('up/node.txt', sink), 11)
    assert.equal(Buffer.concat(got).toString(), 'node stream')
    let streamed = ''
    for await (const c of await sandbox.downloadStream('up/web.txt')) streamed += c
    assert.equal(streamed, 'web stream')
    assert.equal(await sandbox.filesystem.read('up/bytes.txt'), 'bytes')
    await assert.rejects(sandbox.uploadFile('up/x', '/no/such/local/file'), InvalidArgumentError)
  })
})

describe('everyday traps', () => {
  test('Sandbox.create(name) takes the template first, as E2B does; an unknown one lists what exists', async () => {
    const s = await Sandbox.create('base', { metadata: { suite: 'sdk-sandbox' } })
    cleanup.add(s.id)
    assert.equal((await s.getInfo()).template, 'base')
    await s.kill()
    await assert.rejects(Sandbox.create('no-such-template', { metadata: { suite: 'sdk-sandbox' } }), /Unknown template "no-such-template"\. Available templates: .*base/)
  })

  test('the handle is async-disposable: `await using` closes it', async () => {
    const s = await Sandbox.create({ metadata: { suite: 'sdk-sandbox' } })
    cleanup.add(s.id)
    assert.equal(typeof s[Symbol.asyncDispose], 'function')
    await s[Symbol.asyncDispose]()
    await assert.rejects(s.process.startAndWait('true'), /closed/)
  })

  test('read() of a file past 256 MiB is a clear error pointing at the streams, not a crash', async () => {
    await sandbox.process.startAndWait('truncate -s 300M /tmp/huge.bin')
    const t0 = Date.now()
    const err = await sandbox.filesystem.read('/tmp/huge.bin').then(() => undefined, (e: unknown) => e)
    assert.ok(err instanceof SandlotError, String(err))
    assert.equal((err as SandlotError).code, 'file_too_large')
    assert.match((err as Error).message, /downloadFile|downloadStream/)
    assert.ok(Date.now() - t0 < 10_000)
    // The handle still works.
    assert.equal((await sandbox.process.startAndWait('echo fine')).stdout, 'fine')
    await sandbox.process.startAndWait('rm /tmp/huge.bin')
  })
})

describe('process', () => {
  test('stdout and stderr arrive as lines through the callbacks; exit code and error', async () => {
    const out: ProcessMessage[] = []
    const err: ProcessMessage[] = []
    let exit: number | undefined
    const result = await sandbox.process.startAndWait({
      cmd: 'echo one; echo two >&2; printf "three\\nfour"; exit 3',
      onStdout: (m) => out.push(m),
      onStderr: (m) => err.push(m),
      onExit: (code) => (exit = code),
    })
    assert.deepEqual(out.map((m) => m.line), ['one', 'three', 'four'])
    assert.deepEqual(err.map((m) => [m.line, m.error]), [['two', true]])
    assert.ok(out.every((m) => !m.error && m.timestamp > 0))
    assert.equal(exit, 3)
    assert.deepEqual(result, { stdout: 'one\nthree\nfour', stderr: 'two', exitCode: 3, error: 'exit status 3' })
    const ok = await sandbox.process.startAndWait('true')
    assert.deepEqual(ok, { stdout: '', stderr: '', exitCode: 0 })
  })

  test('envVars (the sandbox’s and the process’s), cwd (default and given), a login shell', async () => {
    const r = await sandbox.process.startAndWait({ cmd: 'echo $SANDBOX_VAR $MINE; pwd; echo $0; shopt -q login_shell && echo login', envVars: { MINE: 'mine' } })
    assert.equal(r.stdout, 'from-create mine\n/home/user/work\n/bin/bash\nlogin')
    assert.equal((await sandbox.process.startAndWait({ cmd: 'pwd', cwd: '/tmp' })).stdout, '/tmp')
    assert.equal((await sandbox.process.startAndWait({ cmd: 'pwd', cwd: '~' })).stdout, '/home/user')
    await assert.rejects(sandbox.process.start({ cmd: 'pwd', cwd: '/no/such/dir' }), InvalidArgumentError)
  })

  test('runs as user by default, as root when asked; an unknown user is refused', async () => {
    assert.equal((await sandbox.process.startAndWait('id -un')).stdout, 'user')
    assert.equal((await sandbox.process.startAndWait({ cmd: 'id -un; cat /root/.bashrc >/dev/null && echo can-read', user: 'root' })).stdout, 'root\ncan-read')
    await assert.rejects(sandbox.process.start({ cmd: 'id', user: 'nobody-here' }), (err: unknown) => {
      assert.ok(err instanceof InvalidArgumentError, String(err))
      assert.match(err.message, /nobody-here/)
      return true
    })
  })

  test('kill, sendStdin, output so far, pid and processID', async () => {
    const lines: string[] = []
    const cat = await sandbox.process.start({ cmd: 'while read l; do echo "got $l"; done', onStdout: (m) => lines.push(m.line), processID: 'reader' })
    assert.equal(cat.processID, 'reader')
    assert.ok(cat.pid > 1)
    await cat.sendStdin('a\n')
    await cat.sendStdin(new TextEncoder().encode('b\n'))
    await until('echoed input', () => lines.length === 2)
    assert.deepEqual(cat.output, { stdout: 'got a\ngot b', stderr: '', exitCode: undefined })
    await cat.closeStdin()
    assert.equal((await cat.wait()).exitCode, 0)

    const sleeper = await sandbox.process.start('sleep 600')
    assert.equal((await sandbox.process.startAndWait(`kill -0 ${sleeper.pid} && echo running`)).stdout, 'running')
    await sleeper.kill()
    const end = await sleeper.finished
    assert.equal(end.exitCode, 137)
    assert.equal(end.error, 'signal: killed')
    await sleeper.kill() // already gone: nothing to do
    await assert.rejects(sleeper.sendStdin('x'), NotFoundError)
  })

  test('a timeout kills the process and wait() throws TimeoutError', async () => {
    const started = Date.now()
    const proc = await sandbox.process.start({ cmd: 'echo started; sleep 30', timeout: 1500 })
    await assert.rejects(proc.wait(), (err: unknown) => {
      assert.ok(err instanceof TimeoutError, String(err))
      assert.match(err.message, /1500 ms/)
      return true
    })
    assert.ok(Date.now() - started < 10_000)
    assert.equal(proc.output.stdout, 'started')
    const left = await sandbox.process.startAndWait(`kill -0 ${proc.pid} 2>/dev/null && echo alive || echo gone`)
    assert.equal(left.stdout, 'gone')
    // A process that ends in time is unaffected by its timeout.
    assert.equal((await sandbox.process.startAndWait({ cmd: 'echo quick', timeout: 10_000 })).stdout, 'quick')
  })
})

describe('terminal', () => {
  test('data, resize and kill', async () => {
    let data = ''
    let exited: number | undefined
    const term = await sandbox.terminal.start({ size: { cols: 80, rows: 24 }, onData: (d) => (data += d), onExit: (c) => (exited = c) })
    await term.sendData('stty size; echo "tty:$TERM:$(pwd)"\n')
    await until('the first answer', () => /24 80[\s\S]*tty:xterm-256color:\/home\/user\/work/.test(data))
    await term.resize({ cols: 120, rows: 40 })
    await term.sendData('stty size\n')
    await until('the new size', () => /40 120/.test(data))
    assert.equal(term.data, data)
    await term.kill()
    const end = await term.wait()
    assert.equal(end.exitCode, 137)
    assert.equal(exited, 137)
    await assert.rejects(term.resize({ cols: 0, rows: 10 }), InvalidArgumentError)
  })

  test('a command in a terminal, with its own cwd and env, sees a TTY and ends with its exit code', async () => {
    let data = ''
    const term = await sandbox.terminal.start({
      size: { cols: 50, rows: 10 },
      cmd: 'test -t 0 && echo "tty $FOO $(pwd)"; exit 4',
      cwd: '/tmp',
      envVars: { FOO: 'bar' },
      onData: (d) => (data += d),
    })
    const end = await term.wait()
    assert.equal(end.exitCode, 4)
    assert.match(data, /tty bar \/tmp/)
  })
})

describe('watchDir', () => {
  test('reports create, write, rename and remove, with isDir; nothing after stop()', async () => {
    await sandbox.filesystem.makeDir('watched')
    const events: FilesystemEvent[] = []
    const watcher = sandbox.filesystem.watchDir('watched', { recursive: true })
    watcher.addEventListener((e) => events.push(e))
    await watcher.start()
    await sandbox.filesystem.makeDir('watched/dir')
    await sandbox.filesystem.write('watched/dir/a.txt', 'a')
    await sandbox.filesystem.rename('watched/dir/a.txt', 'watched/dir/b.txt')
    await sandbox.filesystem.remove('watched/dir/b.txt')
    const has = (op: string, p: string, isDir = false) => events.some((e) => e.operation === op && e.path === `/home/user/work/watched/${p}` && e.isDir === isDir)
    await until('all the events', () => has('Create', 'dir', true) && has('Create', 'dir/a.txt') && has('Write', 'dir/a.txt') && has('Rename', 'dir/a.txt') && has('Create', 'dir/b.txt') && has('Remove', 'dir/b.txt'))
    const e = events.find((x) => x.path.endsWith('/a.txt'))!
    assert.equal(e.name, 'a.txt')
    assert.ok(Math.abs(e.timestamp - Date.now()) < 60_000)
    await watcher.stop()
    const count = events.length
    await sandbox.filesystem.write('watched/late.txt', 'late')
    await sleep(500)
    assert.equal(events.length, count, 'no events after stop')
  })

  test('watching a missing directory throws FileNotFoundError', async () => {
    await assert.rejects(sandbox.filesystem.watchDir('no-such-dir').start(), FileNotFoundError)
  })
})

describe('errors', () => {
  test('a wrong API key: AuthenticationError that says where the key lives', async () => {
    const apiKey = `e2b_${'0'.repeat(40)}`
    for (const op of [() => Sandbox.create({ apiKey }), () => Sandbox.list({ apiKey }), () => Sandbox.reconnect(sandbox.id, { apiKey })]) {
      await assert.rejects(op(), (err: unknown) => {
        assert.ok(err instanceof AuthenticationError, String(err))
        assert.match(err.message, /SANDLOT_API_KEY/)
        assert.match(err.message, /api-key/)
        return true
      })
    }
  })

  test('an unknown sandbox id: SandboxNotFoundError from reconnect and kill', async () => {
    await assert.rejects(Sandbox.reconnect('i00000000000000000000'), SandboxNotFoundError)
    await assert.rejects(Sandbox.kill('i00000000000000000000'), SandboxNotFoundError)
  })

  test('an unreachable server, and a create that runs out of time', async () => {
    await assert.rejects(Sandbox.list({ apiUrl: 'http://127.0.0.1:9' }), (err: unknown) => {
      assert.ok(err instanceof SandlotError && err.code === 'connection_failed', String(err))
      assert.match(err.message, /127\.0\.0\.1:9/)
      return true
    })
    // A server that accepts the request and never answers: the create's timeout ends the wait.
    const silent = http.createServer(() => {})
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r))
    try {
      const apiUrl = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`
      const started = Date.now()
      await assert.rejects(Sandbox.create({ apiUrl, timeout: 300 }), (err: unknown) => {
        assert.ok(err instanceof TimeoutError, String(err))
        assert.match(err.message, /timeout of 300 ms/)
        return true
      })
      await assert.rejects(Sandbox.reconnect(sandbox.id, { apiUrl, timeout: 300 }), TimeoutError)
      assert.ok(Date.now() - started < 5_000)
    } finally {
      silent.closeAllConnections()
      silent.close()
    }
  })

  test('a closed handle refuses further use and says how to reconnect', async () => {
    const other = await Sandbox.reconnect(sandbox.id)
    await other.close()
    assert.equal(other.isOpen, false)
    await assert.rejects(other.filesystem.read('hello.txt'), /Sandbox\.reconnect/)
    assert.equal(sandbox.isOpen, true, 'the first handle is unaffected')
    assert.equal(await sandbox.filesystem.read('hello.txt'), 'Hello World! ünïcødé')
  })
})
