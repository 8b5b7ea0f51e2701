// The escape suite, files side (issue 17, item 1): path tricks through the data plane's /files and
// envd's Filesystem RPC, with the API key (Sandlot's REST) and with the sandbox's own token (E2B's
// envd): `..` climbs, symlinks and hard links, /proc/*/root and /proc/*/fd, paths swapped for links
// during writes and reads; one sandbox's token on another; the template's shared files; the agent's
// config and socket. Each case checks that the host's canary and a neighbour sandbox are as they were.
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { apiKey, apiUrl, createSandbox, home, killSandbox, run, startBackground } from '../helpers.js'
import { byKey, getFile, initPid, long, putFile, root, rpc, tokenInside, tokenOf, World, type Auth } from './escape-env.js'

/** Requests made while a path is being swapped (more in the long variant). */
const RACE_ROUNDS = long ? 2000 : 150

const world = new World()
let id = ''
let token: Auth
const auths = (): [string, Auth][] => [['the API key', byKey()], ["the sandbox's token", token]]

before(async () => {
  await world.start()
  id = (await createSandbox({ metadata: { suite: 'escape' } })).id
  token = { token: await tokenOf(id) }
})
after(async () => {
  await killSandbox(id)
  await world.stop()
})

/** The canary's path climbed to from inside the sandbox, in several spellings. */
const climbs = () => [`/../../../..${world.canaryPath}`, `/home/user/../../../../..${world.canaryPath}`, `/proc/1/root/../../..${world.canaryPath}`, `/proc/self/root${world.canaryPath}`, `/proc/self/cwd/../../..${world.canaryPath}`]

describe('/files and the Filesystem RPC: path tricks', () => {
  for (const [who, auth] of [['the API key', 'key'], ["the sandbox's token", 'token']] as const) {
    test(`GET /files with ${who}: '..' and /proc/*/root climbs reach only the sandbox's own files`, async () => {
      for (const p of climbs()) {
        const r = await getFile(id, p, auth === 'key' ? byKey() : token)
        assert.equal(r.status, 404, `${p}: ${r.status} ${r.body}`)
        assert.ok(!r.body.includes(world.canary))
      }
      await world.unaffected()
    })
  }

  test("POST /files climbing out with '..' writes inside the sandbox", async () => {
    const r = await putFile(id, `/../../..${world.canaryPath}`, 'overwritten', token)
    assert.equal(r.status, 200, r.body)
    assert.equal(await root(id, `cat ${world.canaryPath}; rm ${world.canaryPath}`), 'overwritten')
    await world.unaffected()
  })

  test("a symlink to the host canary's path leads to the sandbox's own (missing) file, for reads and writes", async () => {
    await root(id, `ln -sfn ${world.canaryPath} /home/user/to-host && ln -sfn /proc/1/root/../..${path.dirname(world.canaryPath)} /home/user/to-host-dir`)
    for (const [, auth] of auths()) {
      assert.equal((await getFile(id, '/home/user/to-host', auth)).status, 404)
      // /proc/1/root is the init's, which no one in the sandbox may follow (it is non-dumpable): 403.
      assert.equal((await getFile(id, `/home/user/to-host-dir/${path.basename(world.canaryPath)}`, auth)).status, 403)
    }
    assert.equal((await putFile(id, '/home/user/to-host', 'through a link', token)).status, 200)
    assert.equal(await root(id, `cat ${world.canaryPath}; rm ${world.canaryPath}`), 'through a link')
    await world.unaffected()
  })

  test("/proc/<pid>/root of the neighbour's and the host's processes: no such process inside", async () => {
    const neighbourInit = initPid(world.neighbour, home)
    for (const p of [`/proc/${neighbourInit}/root/home/user/n/secret`, `/proc/${process.pid}/root${world.canaryPath}`]) {
      const r = await getFile(id, p, token)
      assert.equal(r.status, 404, `${p}: ${r.body}`)
      assert.ok(!r.body.includes(world.neighbourSecret))
    }
    await world.unaffected()
  })

  test("the init's descriptors (the agent's socket, the log on the host) cannot be listed or opened", async () => {
    const inside = await root(id, 'ls /proc/1/fd 2>&1; readlink /proc/1/fd/1 2>&1; cat /proc/1/fd/1 2>&1 | head -c 100; echo end')
    assert.match(inside, /Permission denied/)
    assert.ok(!inside.includes(home), inside)
    for (const p of ['/proc/1/fd/1', '/proc/1/fd/3', '/proc/1/environ', '/proc/1/mem']) {
      const r = await getFile(id, p, token)
      assert.notEqual(r.status, 200, `${p}: ${r.body.slice(0, 200)}`)
      assert.equal((await putFile(id, p, 'x', token)).status === 200, false, `${p} was written`)
    }
    // The agent's own listening socket, through its own /proc/self/fd, is no file to read.
    assert.equal((await getFile(id, '/proc/self/fd/3', token)).status, 400)
    await world.unaffected()
  })

  test("the agent's own /proc/self files hold nothing of the host: no API key, no host path", async () => {
    for (const p of ['/proc/self/environ', '/proc/self/cmdline', '/proc/self/mountinfo', '/proc/self/cgroup']) {
      const r = await getFile(id, p, token)
      assert.equal(r.status, 200, p)
      assert.ok(!r.body.includes(apiKey()), `${p} holds the API key`)
      assert.ok(!r.body.includes(home) && !r.body.includes('/work/'), `${p} names a host path: ${r.body.slice(0, 300)}`)
    }
    await world.unaffected()
  })

  test("a hard link to a file of the agent's image is refused; one to a root-only file gives user no way in", async () => {
    const out = await root(id, 'ln /opt/sandlot/bin/node /tmp/node-link 2>&1; echo $?')
    assert.match(out, /Invalid cross-device link|Operation not permitted|Read-only/)
    const user = await run(id, 'ln /etc/shadow /home/user/shadow 2>&1; ln /run/sandlot/agent.json /home/user/token 2>&1; echo done')
    assert.match(user.stdout, /Operation not permitted|Permission denied/)
    assert.equal(await root(id, 'ls /home/user/shadow /home/user/token 2>/dev/null; echo'), '\n')
    await world.unaffected()
  })

  test(`a directory swapped for symlinks (to the host canary's dir, the agent image, /proc) during ${RACE_ROUNDS} writes: nothing written outside the sandbox`, async () => {
    const targets = [path.dirname(world.canaryPath), '/opt/sandlot/agent', `/proc/1/root/../../..${path.dirname(world.canaryPath)}`, '/proc/self/fd']
    const swap = targets.map((t) => `rm -rf /home/user/race/d; mkdir /home/user/race/d; rm -rf /home/user/race/d; ln -sfn ${t} /home/user/race/d`).join('; ')
    const pid = await startBackground(id, `mkdir -p /home/user/race; while :; do ${swap}; done`)
    const name = path.basename(world.canaryPath)
    const statuses = new Set<number>()
    try {
      for (let i = 0; i < RACE_ROUNDS; i++) statuses.add((await putFile(id, `/home/user/race/d/${name}`, `race ${i}`, token, 'user')).status)
    } finally {
      await root(id, `kill ${pid}`)
    }
    assert.ok(statuses.has(200), [...statuses].join(','))
    assert.equal(await root(id, `ls /opt/sandlot/agent/${name} 2>&1 | grep -c 'No such'`), '1\n')
    // What went through a link to /tmp landed in the sandbox's own /tmp.
    assert.match(await root(id, `cat /tmp/${name} && rm /tmp/${name}`), /^race \d+$/)
    await world.unaffected()
  })

  test(`a file swapped for symlinks (to the host canary, the init's log, the neighbour's root) during ${RACE_ROUNDS} reads: nothing of the host or the neighbour comes back`, async () => {
    const neighbourInit = initPid(world.neighbour, home)
    const targets = [world.canaryPath, '/proc/1/fd/1', `/proc/${neighbourInit}/root/home/user/n/secret`, `/proc/1/root/../..${world.canaryPath}`]
    const swap = targets.map((t) => `echo own > /home/user/race/r.new; mv -f /home/user/race/r.new /home/user/race/r; ln -sfn ${t} /home/user/race/r`).join('; ')
    const pid = await startBackground(id, `mkdir -p /home/user/race; while :; do ${swap}; done`)
    const bodies = new Set<string>()
    try {
      for (let i = 0; i < RACE_ROUNDS; i++) {
        const r = await getFile(id, '/home/user/race/r', token)
        if (r.status === 200) bodies.add(r.body)
      }
    } finally {
      await root(id, `kill ${pid}`)
    }
    for (const b of bodies) assert.equal(b, 'own\n', `read through the race: ${b.slice(0, 200)}`)
    await world.unaffected()
  })

  test('Filesystem RPC: Stat and ListDir of climbs and /proc see only the sandbox', async () => {
    for (const [, auth] of auths()) {
      for (const p of climbs()) assert.equal((await rpc(id, 'Stat', { path: p }, auth)).status, 404, p)
      const procs = await rpc(id, 'ListDir', { path: '/proc', depth: 1 }, auth)
      assert.equal(procs.status, 200)
      const pids = (procs.json.entries as { name: string }[]).map((e) => e.name).filter((n) => /^\d+$/.test(n)).map(Number)
      assert.ok(pids.length > 0 && pids.length < 20, String(pids))
      assert.ok(!pids.includes(initPid(world.neighbour, home)) && !pids.includes(process.pid))
      const up = await rpc(id, 'ListDir', { path: '/proc/1/root/../../../..', depth: 1 }, auth)
      assert.ok((up.json.entries as { name: string }[]).some((e) => e.name === 'opt'))
      assert.ok(!(up.json.entries as { name: string }[]).some((e) => e.name === 'work'), 'the host\'s root was listed')
    }
    await world.unaffected()
  })

  test('Filesystem RPC: Move, MakeDir and Remove aimed at host paths act inside the sandbox', async () => {
    await root(id, 'echo moved > /home/user/m')
    const name = path.basename(world.canaryPath)
    assert.equal((await rpc(id, 'Move', { source: '/home/user/m', destination: `/proc/self/root/../../..${world.canaryPath}` }, token)).status, 200)
    assert.equal((await rpc(id, 'MakeDir', { path: `/../..${path.dirname(world.canaryPath)}/${name}.d` }, token)).status, 200)
    assert.equal(await root(id, `cat ${world.canaryPath}; test -d ${world.canaryPath}.d && echo dir; rm -rf ${world.canaryPath}.d`), 'moved\ndir\n')
    // Removing the host canary's path removes the sandbox's own file there.
    assert.equal((await rpc(id, 'Remove', { path: `/home/user/../../..${world.canaryPath}` }, token)).status, 200)
    assert.equal(await root(id, `test -e ${world.canaryPath} && echo still there; echo`), '\n')
    await world.unaffected()
  })

  test("one sandbox's token opens nothing of another: /files, the RPC, a process", async () => {
    const r = await getFile(world.neighbour, '/home/user/n/secret', token)
    assert.equal(r.status, 401)
    assert.equal((await putFile(world.neighbour, '/home/user/n/secret', 'overwritten', token)).status, 401)
    assert.equal((await rpc(world.neighbour, 'ListDir', { path: '/home/user' }, token)).status, 401)
    assert.equal((await rpc(world.neighbour, 'Remove', { path: '/home/user/n/secret' }, token)).status, 401)
    const proc = await fetch(`${apiUrl}/process.Process/List`, {
      method: 'POST',
      headers: { 'e2b-sandbox-id': world.neighbour, 'x-access-token': (token as { token: string }).token, 'content-type': 'application/json', 'connect-protocol-version': '1' },
      body: '{}',
    })
    assert.equal(proc.status, 401)
    await world.unaffected()
  })
})

describe("the template's shared files", () => {
  const files = ['/etc/os-release', '/usr/bin/sudo', '/bin/bash']
  const sums = (sb: string) => root(sb, `sha256sum ${files.join(' ')}; stat -c '%a %u' ${files.join(' ')}`)

  test('writing, chmodding and hard-linking them in one sandbox changes them for no other sandbox and not on the host', async () => {
    const original = await sums(world.neighbour)
    const lower = path.join(home, 'sandboxes', id, 'lower/0/etc/os-release')
    const hostBefore = crypto.createHash('sha256').update(fs.readFileSync(lower)).digest('hex')
    const out = await root(id, `echo pwned > /etc/os-release && chmod 4777 /bin/bash && echo pwned >> /usr/bin/sudo && ln /bin/bash /tmp/bash-link && echo more >> /tmp/bash-link && echo done`)
    assert.match(out, /done/)
    assert.notEqual(await sums(id), original, 'the writes did not even land in the sandbox')
    // Written through /files too, to a hard link of a template file.
    await root(id, 'ln /etc/hostname /tmp/h 2>/dev/null; ln /etc/debian_version /tmp/dv')
    assert.equal((await putFile(id, '/tmp/dv', 'pwned', token)).status, 200)
    assert.equal(await sums(world.neighbour), original)
    const fresh = (await createSandbox({ metadata: { suite: 'escape' } })).id
    try {
      assert.equal(await sums(fresh), original)
      assert.equal((await root(fresh, 'cat /etc/debian_version')).includes('pwned'), false)
    } finally {
      await killSandbox(fresh)
    }
    assert.equal(crypto.createHash('sha256').update(fs.readFileSync(lower)).digest('hex'), hostBefore)
    await world.unaffected()
  })

  test('the lower layer has no path inside the sandbox: mountinfo names only relative layers', async () => {
    const info = await root(id, 'cat /proc/self/mountinfo')
    assert.match(info, /lowerdir=lower\/0/)
    assert.ok(!info.includes(home) && !info.includes('/work/'), info)
    await world.unaffected()
  })
})

describe("the agent's config and socket", () => {
  test('user cannot read the token; the token read by root opens only this sandbox', async () => {
    const user = await run(id, 'cat /run/sandlot/agent.json 2>&1; ls /run/sandlot 2>&1')
    assert.match(user.stdout, /Permission denied/)
    const own = await tokenInside(id)
    assert.equal(own, (token as { token: string }).token)
    assert.equal((await getFile(world.neighbour, '/home/user/n/secret', { token: own })).status, 401)
    await world.unaffected()
  })

  test("a forged agent.json changes neither the agent's token nor what the daemon accepts", async () => {
    const sb = (await createSandbox({ metadata: { suite: 'escape' } })).id
    try {
      const forged = crypto.randomBytes(32).toString('hex')
      await root(sb, `echo '{"accessToken":"${forged}","defaultUser":"root","envVars":{}}' > /run/sandlot/agent.json`)
      assert.equal((await run(sb, 'whoami')).stdout, 'user\n', 'the agent stopped answering the daemon')
      assert.equal((await getFile(sb, '/etc/hostname', { token: forged })).status, 401)
      assert.equal((await getFile(world.neighbour, '/etc/hostname', { token: forged })).status, 401)
    } finally {
      await killSandbox(sb)
    }
    await world.unaffected()
  })

  test("the agent's socket has no path inside: not in the files, not in /proc/net/unix", async () => {
    const out = await root(id, "find / -xdev -type s 2>/dev/null; grep -c agent.sock /proc/net/unix; ls /run/sandlot")
    assert.doesNotMatch(out, /agent\.sock\n/)
    assert.match(out, /^0$/m)
    assert.ok(!out.includes(home))
    await world.unaffected()
  })
})
