// The official e2b SDK's `sandbox.commands` against Sandlot: foreground and background commands,
// environment, cwd, users, stdin, kill, list, connect by pid, exit codes, callbacks, timeouts.
import { CommandExitError, InvalidArgumentError, NotFoundError, Sandbox, TimeoutError, type CommandHandle } from 'e2b'
import { create, until } from './e2b-env.js'
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'

describe('e2b SDK: commands', { concurrency: true }, () => {
  let s: Sandbox
  before(async () => {
    s = await create()
  })
  after(() => s?.kill())

  /** Whether a process whose command line contains `marker` is running in the sandbox (the [x] keeps pgrep's own shell out). */
  const running = async (marker: string) => (await s.commands.run(`pgrep -f '[${marker[0]}]${marker.slice(1)}' || true`)).stdout.trim() !== ''

  test('foreground: stdout, stderr and exit code 0; a login shell in /home/user as user', async () => {
    const r = await s.commands.run('echo out; echo err >&2; echo "$HOME $USER $(pwd) $(id -un)"')
    assert.deepEqual({ ...r }, { exitCode: 0, error: undefined, stdout: 'out\n/home/user user /home/user user\n', stderr: 'err\n' })
    // 1 MB of output arrives whole.
    const big = await s.commands.run("head -c 1000000 /dev/zero | tr '\\0' a")
    assert.equal(big.stdout.length, 1_000_000)
    assert.ok(/^a+$/.test(big.stdout))
  })

  test('non-zero exit: CommandExitError with exitCode, stdout, stderr and error "exit status N"', async () => {
    const err = await s.commands.run('echo partial; echo oops >&2; exit 3').then(
      () => assert.fail('expected a CommandExitError'),
      (e: unknown) => e,
    )
    assert.ok(err instanceof CommandExitError)
    assert.equal(err.exitCode, 3)
    assert.equal(err.stdout, 'partial\n')
    assert.equal(err.stderr, 'oops\n')
    assert.equal(err.error, 'exit status 3')
    assert.equal(err.message, 'exit status 3')
    const missing = await s.commands.run('no-such-command-here').catch((e: unknown) => e)
    assert.ok(missing instanceof CommandExitError)
    assert.equal(missing.exitCode, 127)
    assert.match(missing.stderr, /no-such-command-here: command not found/)
  })

  test('background: returns a handle at once; wait() gives the result; a failing one throws from wait()', async () => {
    const t0 = Date.now()
    const h = await s.commands.run('sleep 0.7; echo done', { background: true })
    assert.ok(Date.now() - t0 < 600, 'run({ background: true }) returns before the command ends')
    assert.ok(Number.isInteger(h.pid) && h.pid > 0)
    assert.equal(h.exitCode, undefined)
    const r = await h.wait()
    assert.equal(r.stdout, 'done\n')
    assert.equal(r.exitCode, 0)
    assert.equal(h.exitCode, 0)
    const bad = await s.commands.run('exit 7', { background: true })
    const err = await bad.wait().catch((e: unknown) => e)
    assert.ok(err instanceof CommandExitError)
    assert.equal(err.exitCode, 7)
  })

  test('envs and cwd; a missing cwd is InvalidArgumentError', async () => {
    assert.equal((await s.commands.run('echo "$A-$B"', { envs: { A: '1', B: 'two words' } })).stdout, '1-two words\n')
    assert.equal((await s.commands.run('pwd', { cwd: '/tmp' })).stdout, '/tmp\n')
    await s.files.makeDir('/home/user/work dir')
    assert.equal((await s.commands.run('pwd', { cwd: '/home/user/work dir' })).stdout, '/home/user/work dir\n')
    await assert.rejects(s.commands.run('pwd', { cwd: '/no/such/dir' }), InvalidArgumentError)
  })

  test('user root: id -u is 0 and HOME is /root; the default user is uid 1000', async () => {
    assert.equal((await s.commands.run('id -u; echo $HOME; pwd', { user: 'root' })).stdout, '0\n/root\n/root\n')
    assert.equal((await s.commands.run('id -u')).stdout, '1000\n')
    assert.equal((await s.commands.run('id -u', { user: 'user' })).stdout, '1000\n')
  })

  test('stdin: stdin: true, sendStdin (commands and handle), closeStdin ends it; without stdin a command reads EOF', async () => {
    const h = await s.commands.run('cat; echo "[eof]"', { background: true, stdin: true })
    await s.commands.sendStdin(h.pid, 'hello\n')
    await h.sendStdin(new Uint8Array([0x77, 0x6f, 0x72, 0x6c, 0x64, 0x0a]))
    await s.commands.closeStdin(h.pid)
    const r = await h.wait()
    assert.equal(r.stdout, 'hello\nworld\n[eof]\n')
    const h2 = await s.commands.run('wc -c', { background: true, stdin: true })
    await h2.sendStdin('12345')
    await h2.closeStdin()
    assert.equal((await h2.wait()).stdout, '5\n')
    // Without stdin: true the command's stdin is closed, so cat ends at once.
    assert.equal((await s.commands.run('cat; echo no-input', { timeoutMs: 5000 })).stdout, 'no-input\n')
  })

  test('onStdout and onStderr callbacks receive the output as it comes', async () => {
    const out: string[] = []
    const err: string[] = []
    const t: number[] = []
    const t0 = Date.now()
    const r = await s.commands.run('echo one; sleep 0.4; echo two >&2; sleep 0.4; echo three', {
      onStdout: (d) => void (out.push(d), t.push(Date.now() - t0)),
      onStderr: (d) => void err.push(d),
    })
    assert.equal(out.join(''), 'one\nthree\n')
    assert.equal(err.join(''), 'two\n')
    assert.equal(r.stdout, 'one\nthree\n')
    assert.ok(t[0]! < t[t.length - 1]! - 500, `the first chunk came before the command ended (${t.join(', ')} ms)`)
  })

  test('kill: by pid and by handle; wait() then throws CommandExitError "signal: killed"; a second kill is false', async () => {
    const h = await s.commands.run('sleep 41', { background: true })
    assert.equal(await running('sleep 41'), true)
    assert.equal(await s.commands.kill(h.pid), true)
    const err = await h.wait().catch((e: unknown) => e)
    assert.ok(err instanceof CommandExitError)
    assert.equal(err.exitCode, -1)
    assert.equal(err.error, 'signal: killed')
    assert.equal(await running('sleep 41'), false)
    assert.equal(await s.commands.kill(h.pid), false)

    const h2 = await s.commands.run('sleep 42', { background: true })
    assert.equal(await h2.kill(), true)
    await assert.rejects(h2.wait(), CommandExitError)
    assert.equal(await s.commands.kill(999_999), false)
  })

  test('list: running commands with pid, cmd, args, envs and cwd; gone once killed', async () => {
    const h = await s.commands.run('sleep 43', { background: true, envs: { LISTED: 'yes' }, cwd: '/tmp' })
    const mine = (await s.commands.list()).find((p) => p.pid === h.pid)
    assert.ok(mine, 'the command is listed')
    assert.equal(mine.cmd, '/bin/bash')
    assert.deepEqual(mine.args, ['-l', '-c', 'sleep 43'])
    assert.equal(mine.envs.LISTED, 'yes')
    assert.equal(mine.cwd, '/tmp')
    await h.kill()
    await h.wait().catch(() => {})
    assert.equal((await s.commands.list()).find((p) => p.pid === h.pid), undefined)
  })

  test('connect to a running command by pid: its further output and its result; an unknown pid is NotFoundError', async () => {
    // Quiet until told to go (a file), so its output comes after the connect however slow the host:
    // an event arriving between disconnect() and the abort would also leave the SDK's stream
    // deadline timer (timeoutMs) armed, holding this test process open until it fires.
    const go = `/tmp/go-${Date.now()}`
    const started = await s.commands.run(`for n in $(seq 300); do [ -e ${go} ] && break; sleep 0.05; done; for i in 1 2 3 4; do echo tick $i; sleep 0.1; done; exit 5`, { background: true, timeoutMs: 30_000 })
    await started.disconnect()
    const seen: string[] = []
    const again: CommandHandle = await s.commands.connect(started.pid, { onStdout: (d) => void seen.push(d) })
    assert.equal(again.pid, started.pid)
    await s.files.write(go, '')
    const err = await again.wait().catch((e: unknown) => e)
    assert.ok(err instanceof CommandExitError)
    assert.equal(err.exitCode, 5)
    assert.match(seen.join(''), /tick 4\n$/)
    await assert.rejects(s.commands.connect(999_999), NotFoundError)
  })

  test('a command outlives the stream that started it: disconnect, then find it still running', async () => {
    const h = await s.commands.run('sleep 1; echo finished > /tmp/outlived', { background: true })
    await h.disconnect()
    await until(async () => (await s.files.exists('/tmp/outlived')) && true, 4000, 'the disconnected command to finish')
    assert.equal(await s.files.read('/tmp/outlived'), 'finished\n')
  })

  test('timeoutMs: the command is killed at its deadline and run() throws TimeoutError', async () => {
    const t0 = Date.now()
    const err = await s.commands.run('sleep 44', { timeoutMs: 1000 }).catch((e: unknown) => e)
    const took = Date.now() - t0
    assert.ok(err instanceof TimeoutError, String(err))
    assert.match(err.message, /deadline_exceeded/)
    assert.ok(took >= 900 && took < 5000, `run() ended after ${took} ms`)
    await until(async () => !(await running('sleep 44')), 3000, 'the timed-out command to be killed')
    // timeoutMs: 0 means no deadline.
    assert.equal((await s.commands.run('sleep 1.2; echo no deadline', { timeoutMs: 0 })).stdout, 'no deadline\n')
  })

  test('requestTimeoutMs bounds the request, not the command: a command may run longer; a tiny one aborts the call', async () => {
    const t0 = Date.now()
    // The handshake gets 3 s (a loaded 2-core host, other suites filling disks beside it, once took
    // over 1.5 s to start the process); the command runs past it.
    const r = await s.commands.run('sleep 4; echo ok', { requestTimeoutMs: 3000 })
    assert.equal(r.stdout, 'ok\n')
    assert.ok(Date.now() - t0 >= 4000)
    await assert.rejects(s.files.read('/etc/hostname', { requestTimeoutMs: 1 }), (e: Error) => e.name === 'TimeoutError')
    await assert.rejects(s.getInfo({ requestTimeoutMs: 1 }), (e: Error) => e.name === 'TimeoutError')
    // A request that answers in time is unaffected.
    assert.equal((await s.commands.run('echo fine', { requestTimeoutMs: 10_000 })).stdout, 'fine\n')
  })
})
