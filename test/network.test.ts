// Sandboxes' networks against a test "internet" of this machine's own (test/internet.ts): internet by
// default and off on request, egress rules by IP, CIDR and domain with E2B's semantics (allow beats
// deny, domain rules enforced by Host and SNI and dialled by name), updates on a running sandbox, the
// rules after a files-only resume and in forks, and what a sandbox never reaches whatever its rules.
// One real outside check: apt-get update against the Debian mirror. Driven through the official e2b
// SDK, on a daemon of its own that listens on every host address (so the API's unreachability is
// shown on all of them).
import { ALL_TRAFFIC, CommandExitError, Sandbox } from 'e2b'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { spawnDaemon, waitFor, type Daemon } from './helpers.js'
import { DNS, HOST_A, HOST_B, startInternet, type Internet } from './internet.js'

const port = Number(process.env.SANDLOT_TEST_PORT ?? 3190) + 6
const ownHome = path.resolve(`.sandlot-test/network-${port}`)
const bridge = `sandlot${port}`
const table = `sandlot_${bridge}`

/** The host's own resolvers, after the test internet's: names outside `.test` (the mirror) still resolve. */
const hostResolvers = fs
  .readFileSync('/etc/resolv.conf', 'utf8')
  .split('\n')
  .map((l) => /^\s*nameserver\s+(\d+\.\d+\.\d+\.\d+)/.exec(l)?.[1])
  .filter((a): a is string => !!a)

let internet: Internet
let daemon: Daemon
const sandboxes: Sandbox[] = []

async function create(opts: Parameters<typeof Sandbox.create>[0] = {}): Promise<Sandbox> {
  const s = await Sandbox.create(opts)
  sandboxes.push(s)
  return s
}

/** Runs a shell command and returns stdout (plus stderr), whatever its exit code. */
async function sh(s: Sandbox, cmd: string, timeoutMs = 30_000): Promise<string> {
  try {
    const r = await s.commands.run(cmd, { timeoutMs })
    return r.stdout + r.stderr
  } catch (err) {
    if (err instanceof CommandExitError) return err.stdout + err.stderr
    throw err
  }
}

/** curl from inside; its body, or "FAILED" when it could not connect or got no answer. */
const get = (s: Sandbox, url: string, extra = '') =>
  sh(s, `curl -sS -k --connect-timeout 3 --max-time 5 ${extra} ${url} 2>/dev/null || echo FAILED`).then((o) => o.trim())

const addressOf = async (s: Sandbox) => (await sh(s, "ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1")).trim()

describe('sandbox networks', { concurrency: false }, () => {
  // No warm pool: this file counts and compares every veth and rule of the daemon's exactly, and a
  // pool's sandboxes (made anew, on new addresses, after the restart) would be among them. The
  // pool's own networks are pool.test.ts's.
  const daemonEnv = { SANDLOT_HOME: ownHome, SANDLOT_LISTEN: `0.0.0.0:${port}`, SANDLOT_DNS_SERVERS: [DNS, ...hostResolvers].join(','), SANDLOT_POOL: '0' }
  before(async () => {
    internet = await startInternet()
    fs.rmSync(ownHome, { recursive: true, force: true })
    daemon = spawnDaemon(port, daemonEnv, fs.openSync(`${ownHome}.log`, 'w'))
    await waitFor(async () => (await fetch(`${daemon.url}/health`).catch(() => undefined))?.ok, 120_000, 'the network daemon')
    process.env.E2B_API_URL = daemon.url
    process.env.E2B_SANDBOX_URL = daemon.url
    process.env.E2B_API_KEY = fs.readFileSync(path.join(ownHome, 'api-key'), 'utf8').trim()
  })

  after(async () => {
    await Promise.all(sandboxes.map((s) => s.kill().catch(() => {})))
    await daemon?.stop()
    await internet?.stop()
  })

  test('internet by default: the test internet by address and by name (through Sandlot’s resolver), and the real Debian mirror', async () => {
    const s = await create()
    assert.match(await get(s, `http://${HOST_A}/`), /^server=A /)
    assert.match(await get(s, 'http://allowed.test/'), /^server=A host=allowed.test/)
    assert.match(await get(s, 'https://allowed.test/'), /^server=A .*sni=allowed.test/)
    assert.match(await get(s, `telnet://${HOST_B}:8080`), /server=B port=8080/)
    assert.match(await sh(s, 'cat /etc/resolv.conf'), /^nameserver 10\./m)
    // The one real outside host these machines reach: the mirror the template was built from.
    const apt = await sh(s, 'sudo apt-get update 2>&1; echo "exit=$?"', 120_000)
    assert.match(apt, /exit=0/, apt)
    assert.match(apt, /deb\.debian\.org|Hit|Get/)
  })

  test('allowInternetAccess: false leaves loopback only: no address, no name, no resolver', async () => {
    const s = await create({ allowInternetAccess: false })
    assert.equal(await get(s, `http://${HOST_A}/`), 'FAILED')
    assert.equal(await get(s, 'http://allowed.test/'), 'FAILED')
    assert.match(await sh(s, 'getent hosts allowed.test || echo NONAME'), /NONAME/)
    // Loopback still works.
    await sh(s, 'nohup python3 -m http.server 8000 --bind 127.0.0.1 >/dev/null 2>&1 &')
    await waitFor(async () => (await get(s, 'http://127.0.0.1:8000/')).includes('Directory listing'), 10_000, 'the loopback server')
  })

  test('denyOut by IP and CIDR; allowOut beats denyOut; other ports follow the same CIDR rules', async () => {
    const deny = await create({ network: { denyOut: [HOST_B] } })
    assert.match(await get(deny, `http://${HOST_A}/`), /^server=A/)
    assert.equal(await get(deny, `http://${HOST_B}/`), 'FAILED')
    assert.equal(await get(deny, `telnet://${HOST_B}:8080`), 'FAILED')

    const allow = await create({ network: { allowOut: [HOST_B], denyOut: [ALL_TRAFFIC] } })
    assert.match(await get(allow, `http://${HOST_B}/`), /^server=B/)
    assert.match(await get(allow, `telnet://${HOST_B}:8080`), /server=B/)
    assert.equal(await get(allow, `http://${HOST_A}/`), 'FAILED')

    const cidr = await create({ network: { allowOut: ['198.51.100.0/28'], denyOut: ['198.51.100.0/24'] } })
    assert.match(await get(cidr, `http://${HOST_A}/`), /^server=A/) // .10 is in the allowed /28
    assert.equal(await get(cidr, `http://${HOST_B}/`), 'FAILED') // .20 is not
  })

  test('domain rules: HTTP by Host and TLS by SNI, wildcards without the apex; forged names and self-resolved addresses reach only the allowed name’s own server', async () => {
    const s = await create({ network: { allowOut: ['allowed.test', '*.wild.test'], denyOut: [ALL_TRAFFIC] } })
    assert.match(await get(s, 'http://allowed.test/'), /^server=A host=allowed.test/)
    assert.match(await get(s, 'https://allowed.test/'), /^server=A .*sni=allowed.test/)
    assert.match(await get(s, 'https://x.wild.test/'), /^server=A .*sni=x.wild.test/)
    assert.equal(await get(s, 'http://wild.test/'), 'FAILED')
    assert.equal(await get(s, 'http://denied.test/'), 'FAILED')
    assert.equal(await get(s, 'https://denied.test/'), 'FAILED')
    assert.equal(await get(s, `http://${HOST_A}/`), 'FAILED') // no Host that a rule allows
    // Another port: domain rules cover only 80 and 443 (as on E2B); everything else is denied.
    assert.equal(await get(s, `telnet://${HOST_A}:8080`), 'FAILED')
    // An allowed Host or SNI sent to the forbidden server B: the proxy dials the name, so server A answers.
    assert.match(await get(s, `http://${HOST_B}/`, '-H "Host: allowed.test"'), /^server=A host=allowed.test/)
    assert.match(await get(s, 'https://allowed.test/', `--resolve allowed.test:443:${HOST_B}`), /^server=A .*sni=allowed.test/)
    assert.match(await get(s, 'http://allowed.test/', `--resolve allowed.test:80:${HOST_B}`), /^server=A host=allowed.test/)
    // A name that resolves to an address no sandbox may reach is refused even when allowed.
    const internal = await create({ network: { allowOut: ['internal.test', 'metadata.test'], denyOut: [ALL_TRAFFIC] } })
    assert.equal(await get(internal, 'http://internal.test/'), 'FAILED')
    assert.equal(await get(internal, 'http://metadata.test/', `--resolve metadata.test:80:${HOST_A}`), 'FAILED')
  })

  test('updateNetwork on a running sandbox takes effect at once; {} clears every rule', async () => {
    const s = await create()
    assert.match(await get(s, `http://${HOST_A}/`), /^server=A/)
    await s.updateNetwork({ denyOut: [HOST_A] })
    assert.equal(await get(s, `http://${HOST_A}/`), 'FAILED')
    assert.match(await get(s, `http://${HOST_B}/`), /^server=B/)
    await s.updateNetwork({ allowOut: ['allowed.test'], denyOut: [ALL_TRAFFIC] })
    assert.equal(await get(s, `http://${HOST_B}/`), 'FAILED')
    assert.match(await get(s, 'http://allowed.test/'), /^server=A/)
    await s.updateNetwork({})
    assert.match(await get(s, `http://${HOST_A}/`), /^server=A/)
    assert.match(await get(s, `http://${HOST_B}/`), /^server=B/)
    await s.updateNetwork({ allowInternetAccess: false })
    assert.equal(await get(s, `http://${HOST_A}/`), 'FAILED')
  })

  test('rules hold after a files-only resume and in a fork, shown by traffic: denyOut, allowInternetAccess: false, and rules set by updateNetwork', async () => {
    const denied = await create({ network: { denyOut: [HOST_B] } })
    const offline = await create({ allowInternetAccess: false })
    const updated = await create()
    await updated.updateNetwork({ denyOut: [HOST_A] })
    // What each may reach: one server it reaches and one it does not (the offline one reaches none;
    // the others show that its copies' network works at all).
    const expect = async (s: Sandbox, what: string, reached: string | undefined, blocked: string) => {
      const [ok, refused] = await Promise.all([reached ? get(s, `http://${reached}/`) : Promise.resolve('server='), get(s, `http://${blocked}/`)])
      assert.match(ok, /^server=/, `${what}: ${reached} is reachable`)
      assert.equal(refused, 'FAILED', `${what}: ${blocked} is not`)
    }
    const cases: [Sandbox, string, string | undefined, string][] = [
      [denied, 'denyOut', HOST_A, HOST_B],
      [offline, 'allowInternetAccess: false', undefined, HOST_A],
      [updated, 'updateNetwork', HOST_B, HOST_A],
    ]
    await Promise.all(cases.map(([s, what, reached, blocked]) => expect(s, what, reached, blocked)))
    // A files-only pause frees the sandbox's network; the resume boots it with its rules again.
    for (const [s] of cases) assert.equal(await s.pause({ keepMemory: false }), true)
    await Promise.all(cases.map(([s, what, reached, blocked]) => Sandbox.connect(s.sandboxId).then((again) => expect(again, `${what}, resumed from its files`, reached, blocked))))
    // A fork has its original's rules.
    const forks = await Promise.all(
      cases.map(async ([s, what, reached, blocked]) => {
        const [f] = await s.fork({ count: 1, timeoutMs: 60_000 })
        assert.ok(f instanceof Sandbox, String(f))
        sandboxes.push(f)
        await expect(f, `${what}, forked`, reached, blocked)
        return f
      }),
    )
    await Promise.all([...cases.map(([s]) => s.kill()), ...forks.map((f) => f.kill())])
  })

  test('never reachable, whatever the rules: the API on every host address, the host’s resolver, metadata, another sandbox; no address changes or raw sockets inside', async () => {
    const s = await create({ network: { allowOut: ['0.0.0.0/0'] } })
    const other = await create()
    await sh(other, 'nohup python3 -m http.server 8000 --bind 0.0.0.0 >/dev/null 2>&1 &')
    const otherAddress = await addressOf(other)
    await waitFor(async () => (await get(other, `http://${otherAddress}:8000/`)).includes('Directory listing'), 10_000, 'the other sandbox’s server')
    assert.equal(await get(s, `http://${otherAddress}:8000/`), 'FAILED')

    const hostAddresses = Object.values(os.networkInterfaces()).flat().filter((a) => a && a.family === 'IPv4').map((a) => a!.address)
    assert.ok(hostAddresses.length >= 2)
    for (const a of hostAddresses) assert.equal(await get(s, `http://${a}:${port}/health`), 'FAILED', `the API at ${a}`)
    // 127.0.0.1 inside is the sandbox's own loopback, never the host's.
    assert.equal(await get(s, `http://127.0.0.1:${port}/health`), 'FAILED')
    assert.equal(await get(s, 'http://169.254.169.254/latest/meta-data/'), 'FAILED')
    for (const resolver of hostResolvers) {
      const query = '12340100000100000000000003646562066465626961' + '6e036f72670000010001'
      const out = await sh(s, `python3 -c "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2); s.sendto(bytes.fromhex('${query}'), ('${resolver}', 53)); print('ANSWER', s.recv(512)[:2].hex())" 2>&1 || true`)
      assert.doesNotMatch(out, /ANSWER/, `the host's resolver ${resolver} answered`)
    }
    // No way to change the sandbox's own network from inside, or to forge packets.
    assert.match(await sh(s, 'sudo ip addr add 10.99.0.9/32 dev eth0 2>&1; sudo ip link set eth0 address 02:00:00:00:00:01 2>&1'), /Operation not permitted/)
    assert.match(await sh(s, `sudo python3 -c "import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)" 2>&1`), /PermissionError|not permitted/)
    // Even with its namespace in host root's hands (as if root inside had got NET_ADMIN), a forged
    // source address or MAC gets nothing past the bridge.
    const ns = `sandlot-${bridge}-${s.sandboxId}`
    const address = await addressOf(s)
    const hostCurl = (...args: string[]) => {
      try {
        return execFileSync('ip', ['netns', 'exec', ns, 'curl', '-sS', '--connect-timeout', '2', '--max-time', '4', ...args], { stdio: ['ignore', 'pipe', 'ignore'] }).toString()
      } catch {
        return 'FAILED'
      }
    }
    assert.match(hostCurl(`http://${HOST_A}/`), /^server=A/)
    const forged = address.replace(/\.\d+$/, '.250')
    execFileSync('ip', ['-n', ns, 'addr', 'add', `${forged}/32`, 'dev', 'eth0'])
    assert.equal(hostCurl('--interface', forged, `http://${HOST_A}/`), 'FAILED')
    execFileSync('ip', ['-n', ns, 'addr', 'del', `${forged}/32`, 'dev', 'eth0'])
    const mac = JSON.parse(execFileSync('ip', ['-n', ns, '-j', 'link', 'show', 'eth0']).toString())[0].address as string
    execFileSync('ip', ['-n', ns, 'link', 'set', 'eth0', 'address', '02:00:00:00:00:01'])
    assert.equal(hostCurl(`http://${HOST_A}/`), 'FAILED')
    execFileSync('ip', ['-n', ns, 'link', 'set', 'eth0', 'address', mac])
    // ping of the outside works through ICMP datagram sockets, without raw ones.
    assert.match(await sh(s, `python3 -c "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP); print('ok')"`), /ok/)
  })

  test('kill removes the veth, the namespace, the rules and the connections; a restarted daemon keeps every rule once', async () => {
    const kept = await create({ network: { denyOut: [HOST_B] } })
    const gone = await create()
    const goneAddress = await addressOf(gone)
    await get(gone, `http://${HOST_A}/`)
    const ruleset = () => execFileSync('nft', ['list', 'table', 'inet', table]).toString()
    assert.match(ruleset(), new RegExp(`sb_${goneAddress.replaceAll('.', '_')}`))
    await gone.kill()
    assert.doesNotMatch(ruleset(), new RegExp(`sb_${goneAddress.replaceAll('.', '_')}\\b`))
    assert.equal(fs.existsSync(`/run/netns/sandlot-${bridge}-${gone.sandboxId}`), false)
    assert.equal(execFileSync('conntrack', ['-L', '-s', goneAddress], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim(), '')
    const links = execFileSync('ip', ['-j', 'link', 'show', 'master', bridge]).toString()
    assert.equal((JSON.parse(links) as unknown[]).length, sandboxes.length - (await countEnded()), 'one veth per running sandbox')

    const before = ruleset()
    await daemon.stop()
    daemon = spawnDaemon(port, daemonEnv, fs.openSync(`${ownHome}.log`, 'a'))
    await waitFor(async () => (await fetch(`${daemon.url}/health`).catch(() => undefined))?.ok, 60_000, 'the restarted daemon')
    // The same rules (the proxy's ports aside, which a new daemon picks afresh), none lost or doubled.
    // The host's networks are read afresh too, and other servers' bridges come and go meanwhile (other
    // suites, other daemons on this host): that set is compared by what must be in it.
    const hostNets = /(set host_nets \{[^}]*?elements = )\{([^}]*)\}/
    const normalise = (r: string) => r.replace(/redirect to :\d+/g, 'redirect to :P').replace(/tcp dport \{ 53, \d+, \d+ \}/, 'tcp dport { 53, P, P }').replace(hostNets, '$1{ … }')
    const restarted = ruleset()
    assert.equal(normalise(restarted), normalise(before))
    const nets = hostNets.exec(restarted)?.[2] ?? ''
    for (const net of ['127.0.0.0/8', '198.18.77.0/30']) assert.ok(nets.includes(net), `the host's network ${net} is still refused: ${nets}`)
    assert.match(await get(kept, `http://${HOST_A}/`), /^server=A/)
    assert.equal(await get(kept, `http://${HOST_B}/`), 'FAILED')
  })
})

/** Sandboxes of this file that have ended. */
async function countEnded(): Promise<number> {
  let n = 0
  for (const s of sandboxes) if (!(await s.isRunning().catch(() => false))) n++
  return n
}
