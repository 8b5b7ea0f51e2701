// `sandlot shell`: an interactive terminal in a sandbox, driven here through a real PTY on the host.
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { describe, test } from 'node:test'
import { createSandbox, killSandbox, run, waitFor } from './helpers.js'

const require = createRequire(import.meta.url)
const pty = require('node-pty') as typeof import('node-pty')

describe('sandlot shell', () => {
  test('gives an interactive terminal that follows resizes and exits with the shell', async () => {
    const { id } = await createSandbox()
    try {
      const term = pty.spawn(process.execPath, ['packages/cli/dist/main.js', 'shell', id], {
        cols: 100,
        rows: 30,
        env: process.env as Record<string, string>,
      })
      let screen = ''
      term.onData((d) => (screen += d))
      const exited = new Promise<number>((resolve) => term.onExit(({ exitCode }) => resolve(exitCode)))

      await waitFor(async () => /user@/.test(screen), 10_000, 'the prompt')
      term.write('echo "size $(stty size)"; whoami\r')
      await waitFor(async () => /size 30 100/.test(screen) && /\nuser\r*\n/.test(screen), 5_000, 'the first answer')
      term.resize(120, 40)
      await new Promise((r) => setTimeout(r, 300))
      term.write('stty size\r')
      await waitFor(async () => /40 120/.test(screen), 5_000, `the resized terminal: ${screen}`)
      // What the shell started is really in the sandbox.
      term.write('touch /home/user/from-shell\r')
      await waitFor(async () => (await run(id, 'test -e /home/user/from-shell')).exitCode === 0, 5_000, 'the file')
      term.write('exit 4\r')
      assert.equal(await exited, 4)
    } finally {
      await killSandbox(id)
    }
  })
})
