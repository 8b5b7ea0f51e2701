// The escape suite, network side (issue 17, item 1): from a sandbox with the default rules, the
// host's services (a TCP and a UDP listener of this test on every host address, the daemon's port,
// the host's own services), a neighbour sandbox by its address, the metadata address, IPv6, and
// changing its own address, MAC or routes to pass as another. Each case checks that the host's
// canary and the neighbour are as they were, and that the host's listeners heard nothing.
import assert from 'node:assert/strict'
import dgram from 'node:dgram'
import net from 'node:net'
import os from 'node:os'
import { after, before, describe, test } from 'node:test'
import { createSandbox, killSandbox, run, startBackground, waitFor } from '../helpers.js'
import { addressOf, root, World } from './escape-env.js'

const port = Number(process.env.SANDLOT_TEST_PORT ?? 3190)
// Offsets of their own (test/helpers.ts lists every file's), not another file's daemon's.
const tcpPort = port + 25
const udpPort = port + 26
const world = new World()
let id = ''
let neighbourAddress = ''
/** The bridge's address on the host: the sandbox's gateway. */
let bridge = ''
let tcp: net.Server
let udp: dgram.Socket
const heard: string[] = []

const hostAddresses = () => Object.values(os.networkInterfaces()).flat().filter((a) => a && a.family === 'IPv4' && !a.internal).map((a) => a!.address)

/** TCP connects from inside (3 s each, in parallel); the "address:port" pairs that opened. */
async function opened(sb: string, targets: string[]): Promise<string[]> {
  const script = targets.map((t) => { const [a, p] = t.split(/:(?=\d+$)/); return `(timeout 3 bash -c 'exec 3<>/dev/tcp/${a}/${p}' 2>/dev/null && echo "OPEN ${t}") &` }).join('\n')
  const out = await root(sb, `${script}\nwait`)
  return out.split('\n').filter((l) => l.startsWith('OPEN ')).map((l) => l.slice(5))
}

before(async () => {
  await world.start()
  id = (await createSandbox({ metadata: { suite: 'escape' } })).id
  tcp = net.createServer((c) => {
    heard.push(`tcp from ${c.remoteAddress}`)
    c.end('HOST SERVICE\n')
  })
  await new Promise<void>((resolve) => tcp.listen(tcpPort, '0.0.0.0', resolve))
  udp = dgram.createSocket('udp4')
  udp.on('message', (_m, from) => heard.push(`udp from ${from.address}`))
  await new Promise<void>((resolve) => udp.bind(udpPort, '0.0.0.0', resolve))
  await startBackground(world.neighbour, 'exec python3 -m http.server 8080 --bind 0.0.0.0')
  neighbourAddress = await addressOf(world.neighbour)
  bridge = (await root(id, "ip route | awk '/default/ {print $3}'")).trim()
  await waitFor(async () => (await run(world.neighbour, `curl -sf http://${neighbourAddress}:8080/ >/dev/null && echo up`)).stdout === 'up\n', 10_000, "the neighbour's server")
})
after(async () => {
  tcp?.close()
  udp?.close()
  await killSandbox(id)
  await world.stop()
})

const unaffected = async () => {
  await world.unaffected()
  assert.deepEqual(heard, [], "the host's listeners heard from the sandbox")
  assert.equal((await run(world.neighbour, `curl -sf http://${neighbourAddress}:8080/ >/dev/null && echo up`)).stdout, 'up\n', "the neighbour's server is down")
}

describe('the network', () => {
  test("a host service listening on every address: unreachable on each host address (TCP)", async () => {
    const addrs = hostAddresses()
    assert.ok(addrs.length >= 2, String(addrs))
    assert.deepEqual(await opened(id, addrs.map((a) => `${a}:${tcpPort}`)), [])
    await unaffected()
  })

  test('the same service by UDP: no datagram arrives on any host address', async () => {
    await root(id, `python3 -c "
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for a in '${hostAddresses().join(' ')}'.split():
    for _ in range(3): s.sendto(b'escape', (a, ${udpPort}))
"`)
    await new Promise((r) => setTimeout(r, 500))
    await unaffected()
  })

  test("the daemon's port and the host's own services (ssh, the VM's agent) on the bridge and host addresses: refused", async () => {
    const ports = [port, 22, 2024, 111, 53]
    const targets = hostAddresses().flatMap((a) => ports.filter((p) => !(p === 53 && a === bridge)).map((p) => `${a}:${p}`))
    assert.deepEqual(await opened(id, targets), [])
    // 127.0.0.1 inside is the sandbox's own loopback, where the daemon is not.
    assert.deepEqual(await opened(id, [`127.0.0.1:${port}`, `127.0.0.1:${tcpPort}`]), [])
    await unaffected()
  })

  test('the neighbour sandbox by its address: no TCP, no ping, no UDP', async () => {
    assert.deepEqual(await opened(id, [`${neighbourAddress}:8080`, `${neighbourAddress}:22`]), [])
    const out = await root(id, `ping -c 1 -W 2 ${neighbourAddress} >/dev/null 2>&1 && echo PING; python3 -c "
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
s.sendto(b'x', ('${neighbourAddress}', 8080))
try: s.recv(10); print('UDP')
except Exception: pass"; echo done`)
    assert.equal(out.trim(), 'done')
    await unaffected()
  })

  test('the metadata address 169.254.169.254 (and the rest of link-local): unreachable', async () => {
    const t0 = Date.now()
    assert.deepEqual(await opened(id, ['169.254.169.254:80', '169.254.169.254:443', '169.254.170.2:80', '169.254.0.1:80']), [])
    assert.equal((await root(id, 'curl -s --max-time 3 http://169.254.169.254/latest/meta-data/ || echo FAILED')).trim(), 'FAILED')
    assert.ok(Date.now() - t0 < 15_000)
    await unaffected()
  })

  test("spoofing: taking the neighbour's address, another MAC, a route of its own or an ARP claim is refused", async () => {
    const own = await addressOf(id)
    const out = await root(
      id,
      [
        `ip addr add ${neighbourAddress}/32 dev eth0`,
        'ip link set eth0 address 02:00:00:00:00:01',
        `ip route add ${neighbourAddress}/32 dev eth0 src ${neighbourAddress}`,
        'ip neigh replace 10.0.0.1 lladdr 02:00:00:00:00:02 dev eth0',
        'ip link add escape0 type dummy',
        `python3 -c "import socket; s=socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806)); print('PACKET')"`,
      ].map((c) => `(${c}) >/dev/null 2>&1 || echo REFUSED`).join('; '),
    )
    assert.equal(out, 'REFUSED\n'.repeat(6))
    assert.equal(await addressOf(id), own)
    assert.doesNotMatch(await root(id, 'ip -4 addr'), new RegExp(neighbourAddress.replace(/\./g, '\\.') + '/'))
    await unaffected()
  })

  test('IPv6 is off: no address, and the host\'s v6 addresses are out of reach', async () => {
    const v6 = Object.values(os.networkInterfaces()).flat().filter((a) => a && a.family === 'IPv6' && !a.internal && !a.address.startsWith('fe80')).map((a) => a!.address)
    const out = await root(id, `ip -6 addr show scope global; ${v6.map((a) => `timeout 3 bash -c 'exec 3<>/dev/tcp/${a}/${tcpPort}' 2>/dev/null && echo OPEN ${a}`).join('; ')}; echo done`)
    assert.equal(out.trim(), 'done')
    await unaffected()
  })
})
