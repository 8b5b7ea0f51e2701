// The official e2b SDK's `sandbox.pty` against Sandlot: terminals with input, resize, kill,
// control characters, user/cwd/envs, and reconnecting to a running terminal.
import { CommandExitError, Sandbox, type CommandHandle } from 'e2b'
import { bytes, create, sleep, text, until } from './e2b-env.js'
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'

describe('e2b SDK: pty', { concurrency: true }, () => {
  let s: Sandbox
  before(async () => {
    s = await create()
  })
  after(() => s?.kill())

  /** A terminal whose output accumulates in `out()`. */
  async function terminal(opts: { cols?: number; rows?: number; user?: string; cwd?: string; envs?: Record<string, string> } = {}) {
    let out = ''
    const handle = await s.pty.create({ cols: 80, rows: 24, ...opts, onData: (d) => void (out += text(d)) })
    const input = (line: string) => s.pty.sendInput(handle.pid, bytes(line))
    const waitFor = (what: string | RegExp) =>
      until(async () => (typeof what === 'string' ? out.includes(what) : what.test(out)), 5000, `terminal output ${String(what)}; got ${JSON.stringify(out)}`)
    return { handle, input, waitFor, out: () => out }
  }

  test('create, sendInput, resize (stty size follows), kill; a killed terminal cannot be killed again', async () => {
    const t = await terminal()
    await t.input('stty size; echo "term=$TERM lang=$LANG"\n')
    await t.waitFor('24 80')
    await t.waitFor('term=xterm-256color lang=C.UTF-8')
    await s.pty.resize(t.handle.pid, { cols: 100, rows: 30 })
    await t.input('stty size\n')
    await t.waitFor('30 100')
    assert.equal(await s.pty.kill(t.handle.pid), true)
    const err = await t.handle.wait().catch((e: unknown) => e)
    assert.ok(err instanceof CommandExitError)
    assert.equal(err.exitCode, -1)
    assert.equal(await s.pty.kill(t.handle.pid), false)
  })

  test('control characters: Ctrl-C interrupts a program, Ctrl-D at the prompt ends the shell with exit code 0', async () => {
    const t = await terminal()
    await t.input('cat\n')
    await t.input('echo-me\n')
    await t.waitFor(/echo-me\r\n(.|\r|\n)*echo-me\r\n/) // the terminal echoes the line, then cat prints it
    await t.input('\x03')
    await t.waitFor('^C')
    await t.input('echo after-interrupt-$((1+1))\n')
    await t.waitFor('after-interrupt-2')
    await t.input('\x04')
    const r = await t.handle.wait()
    assert.equal(r.exitCode, 0)
  })

  test('exit N ends the terminal with CommandExitError exit code N', async () => {
    const t = await terminal()
    await t.input('exit 3\n')
    const err = await t.handle.wait().catch((e: unknown) => e)
    assert.ok(err instanceof CommandExitError)
    assert.equal(err.exitCode, 3)
  })

  test('user, cwd and envs', async () => {
    const t = await terminal({ user: 'root', cwd: '/tmp', envs: { PTY_VAR: 'from-envs' } })
    await t.input('echo "[$(id -u):$(pwd):$PTY_VAR]"\n')
    await t.waitFor('[0:/tmp:from-envs]')
    const u = await terminal()
    await u.input('echo "[$(id -un):$(pwd)]"\n')
    await u.waitFor('[user:/home/user]')
    await Promise.all([s.pty.kill(t.handle.pid), s.pty.kill(u.handle.pid)])
  })

  test('a terminal is listed among the processes, with its command and TERM', async () => {
    const t = await terminal()
    const listed = (await s.commands.list()).find((p) => p.pid === t.handle.pid)
    assert.ok(listed)
    assert.equal(listed.cmd, '/bin/bash')
    assert.deepEqual(listed.args, ['-i', '-l'])
    assert.equal(listed.envs.TERM, 'xterm-256color')
    await s.pty.kill(t.handle.pid)
  })

  test('connect to a running terminal by pid: new output goes to the new handle, not the disconnected one', async () => {
    const t = await terminal()
    await t.waitFor('$ ')
    // Let the prompt settle: output arriving while disconnecting would keep the SDK's stream timer armed.
    let last = t.out()
    for (;;) {
      await sleep(200)
      if (t.out() === last) break
      last = t.out()
    }
    await t.handle.disconnect()
    let again = ''
    const h2: CommandHandle = await s.pty.connect(t.handle.pid, { onData: (d) => void (again += text(d)) })
    assert.equal(h2.pid, t.handle.pid)
    await t.input('echo reconnected-$((6*7))\n')
    await until(async () => again.includes('reconnected-42'), 5000, `output on the new handle; got ${JSON.stringify(again)}`)
    assert.ok(!t.out().includes('reconnected-42'), 'the disconnected handle gets nothing more')
    assert.equal(await h2.kill(), true)
    await assert.rejects(h2.wait(), CommandExitError)
  })
})
