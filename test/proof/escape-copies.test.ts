// The escape suite, builds and copies (issue 17, item 1): a template build's RUN step tries the same
// escapes as root (host paths, mounts, namespaces, the kernel, its own token, the base template);
// a fork never holds the original's token; a paused sandbox's files and address are out of reach
// of another sandbox, and another's request does not wake it. Each case checks that the host's
// canary and a neighbour sandbox are as they were.
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import { api, createSandbox, killSandbox, run } from '../helpers.js'
import { addressOf, getFile, root, rpc, tokenInside, tokenOf, World } from './escape-env.js'

const world = new World()
let id = ''
const cleanup: string[] = []

before(async () => {
  await world.start()
  id = (await createSandbox({ metadata: { suite: 'escape' } })).id
})
after(async () => {
  for (const sb of [id, ...cleanup]) await killSandbox(sb)
  await world.stop()
})


describe("a template build's RUN step", () => {
  const name = `escape-${crypto.randomBytes(3).toString('hex')}`
  let built = ''
  let buildToken = ''
  const baseSums = () => root(world.neighbour, 'sha256sum /etc/os-release /usr/bin/sudo /bin/bash')
  let baseBefore = ''

  before(async () => {
    baseBefore = await baseSums()
    // Each attempt prints its name only if it worked.
    const attempts = [
      `cat ${world.canaryPath} && echo READ-CANARY`,
      `echo x > ${world.canaryPath}.build && test -e /proc/1/root/../..${world.canaryPath} && echo WROTE-CANARY`,
      'mount -t tmpfs none /mnt && echo MOUNTED',
      'unshare -U -r true && echo UNSHARED',
      'nsenter -t 1 -m true && echo NSENTER',
      'echo "|/tmp/x" > /proc/sys/kernel/core_pattern && echo CORE-PATTERN',
      'echo 1 > /sys/fs/cgroup/memory/notify_on_release && echo CGROUP',
      'python3 -c "import ctypes; l=ctypes.CDLL(None); exit(0 if l.syscall(321, 0, 0, 0) >= 0 else 1)" && echo BPF',
      'ls /proc/1/fd >/dev/null && echo INIT-FDS',
    ].map((a) => `(${a}) 2>/dev/null`)
    const script = `{ ${attempts.join('; ')}; echo end; } > /home/user/escape-results; cp /run/sandlot/agent.json /home/user/stolen.json; echo pwned >> /etc/os-release`
    const r = await api('POST', '/api/v1/templates', { name, steps: [{ type: 'RUN', args: [script, 'root'] }] })
    assert.equal(r.status, 202, JSON.stringify(r.json))
    for (;;) {
      const s = await api('GET', `/api/v1/templates/${r.json.templateId}/builds/${r.json.buildId}`)
      if (s.json.status === 'ready') break
      assert.notEqual(s.json.status, 'error', JSON.stringify(s.json))
      await new Promise((res) => setTimeout(res, 250))
    }
    built = (await createSandbox({ template: name, metadata: { suite: 'escape' } })).id
    buildToken = JSON.parse(await root(built, 'cat /home/user/stolen.json')).accessToken
  })
  after(async () => {
    await killSandbox(built)
    await api('DELETE', `/api/v1/templates/${name}`)
  })

  test('every escape it tried was refused: host canary, mounts, namespaces, /proc/sys, cgroups, bpf, the init', async () => {
    assert.equal(await root(built, 'cat /home/user/escape-results'), 'end\n')
    await world.unaffected()
  })

  test("the build sandbox's token it copied into the template opens nothing", async () => {
    assert.match(buildToken, /^[0-9a-f]{64}$/)
    assert.notEqual(buildToken, await tokenInside(built))
    for (const sb of [built, world.neighbour, id]) assert.equal((await getFile(sb, '/etc/hostname', { token: buildToken })).status, 401, sb)
    await world.unaffected()
  })

  test('what it changed of the base is in its template only: the base, its sandboxes and the host as they were', async () => {
    assert.match(await root(built, 'tail -1 /etc/os-release'), /pwned/)
    assert.equal(await baseSums(), baseBefore)
    const fresh = (await createSandbox({ metadata: { suite: 'escape' } })).id
    try {
      assert.equal(await root(fresh, 'sha256sum /etc/os-release /usr/bin/sudo /bin/bash'), baseBefore)
    } finally {
      await killSandbox(fresh)
    }
    await world.unaffected()
  })
})

describe('a fork', () => {
  let copy = ''
  before(async () => {
    await run(id, 'echo original > /home/user/mine')
    const r = await api('POST', `/api/v1/sandboxes/${id}/fork`, { count: 1 })
    assert.equal(r.status, 201, JSON.stringify(r.json))
    copy = r.json[0].sandbox.id
    cleanup.push(copy)
  })

  test("holds its files but never the original's token: its agent has a token of its own", async () => {
    assert.equal((await run(copy, 'cat /home/user/mine')).stdout, 'original\n')
    const [original, forked] = [await tokenInside(id), await tokenInside(copy)]
    assert.notEqual(forked, original)
    assert.equal(forked, await tokenOf(copy))
    await world.unaffected()
  })

  test("the original's token opens nothing of the fork, and the fork's nothing of the original", async () => {
    const [original, forked] = [await tokenOf(id), await tokenOf(copy)]
    assert.equal((await getFile(copy, '/home/user/mine', { token: original })).status, 401)
    assert.equal((await rpc(copy, 'ListDir', { path: '/home/user' }, { token: original })).status, 401)
    assert.equal((await getFile(id, '/home/user/mine', { token: forked })).status, 401)
    await world.unaffected()
  })
})

describe('a paused sandbox', () => {
  let paused = ''
  let address = ''
  before(async () => {
    paused = (await createSandbox({ metadata: { suite: 'escape' } })).id
    cleanup.push(paused)
    await run(paused, 'echo paused-secret > /home/user/p')
    address = await addressOf(paused)
    assert.equal((await api('POST', `/api/v1/sandboxes/${paused}/pause`, {})).status, 200)
  })

  test("another sandbox's token neither reads its files nor wakes it", async () => {
    const other = { token: await tokenOf(id) }
    assert.equal((await getFile(paused, '/home/user/p', other)).status, 401)
    assert.equal((await rpc(paused, 'ListDir', { path: '/home/user' }, other)).status, 401)
    assert.equal((await api('GET', `/api/v1/sandboxes/${paused}`)).json.state, 'paused')
    await world.unaffected()
  })

  test('its address and its files are out of reach from another sandbox', async () => {
    const out = await root(id, `timeout 3 bash -c 'exec 3<>/dev/tcp/${address}/22' 2>/dev/null && echo OPEN; ping -c1 -W2 ${address} >/dev/null 2>&1 && echo PING; grep -rs paused-secret /home /tmp /proc/*/root/home 2>/dev/null; echo done`)
    assert.equal(out, 'done\n')
    assert.equal((await api('GET', `/api/v1/sandboxes/${paused}`)).json.state, 'paused')
    await world.unaffected()
  })
})
