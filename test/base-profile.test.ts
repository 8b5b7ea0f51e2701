// The base template's /etc/profile (templates/base.ts), which login shells read (E2B runs every
// command as `bash -l -c`): it takes the PATH of the user it runs as from bash's $EUID instead of a
// fork of `id`; sh, which has no $EUID, still asks `id`. Both, for root and `user`, get Debian's PATHs.
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { createSandbox, killSandbox, run } from './helpers.js'

const ROOT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
const USER_PATH = '/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games'

describe("the base template's login shells", () => {
  let id = ''
  before(async () => {
    id = (await createSandbox()).id
  })
  after(async () => {
    if (id) await killSandbox(id)
  })

  test('/etc/profile reads $EUID before it forks id', async () => {
    const r = await run(id, 'grep -c \'"${EUID:-$(id -u)}"\' /etc/profile; grep -c \'"$(id -u)"\' /etc/profile')
    assert.equal(r.stdout, '2\n0\n', r.stderr)
  })

  for (const [user, expected] of [['root', ROOT_PATH], ['user', USER_PATH]] as const) {
    test(`bash and sh reading /etc/profile as ${user} get ${user}'s PATH`, async () => {
      // env -i: nothing inherited (sh sees no EUID), and the profile alone (not the user's ~/.profile).
      const r = await run(id, `env -i /bin/bash -c '. /etc/profile; echo "$PATH"'; env -i /bin/sh -c '. /etc/profile; echo "$PATH"'`, { user })
      assert.equal(r.exitCode, 0, r.stderr)
      assert.equal(r.stdout, `${expected}\n${expected}\n`)
    })
  }
})
