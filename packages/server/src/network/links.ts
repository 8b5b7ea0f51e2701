// Interfaces, addresses and routes, through iproute2 in batch mode (one process for many commands):
// the daemon's bridge, and per sandbox a veth pair whose inner end, eth0, lives in the sandbox's
// network namespace (made by sandlot-idmap, owned by the sandbox's user namespace) with one address
// and a default route through the bridge.
import { execFile, spawn } from 'node:child_process'
import fs from 'node:fs'
import { promisify } from 'node:util'

const run = promisify(execFile)

/**
 * Network namespaces are attached under /run/netns (iproute2's place), named after the daemon's
 * bridge and the sandbox, so a daemon can tell its own from other daemons' at start.
 */
export const netnsName = (bridge: string, id: string) => `sandlot-${bridge}-${id}`
export const netnsPath = (bridge: string, id: string) => `/run/netns/${netnsName(bridge, id)}`

/** The sandbox ids of this bridge's namespaces under /run/netns. */
export function attachedNamespaces(bridge: string): string[] {
  const prefix = `sandlot-${bridge}-`
  try {
    return fs.readdirSync('/run/netns').filter((n) => n.startsWith(prefix)).map((n) => n.slice(prefix.length))
  } catch {
    return []
  }
}

/** Runs `ip [-force] [-n NS] -batch -` with the given lines; rejects with ip's message. */
function ipBatch(lines: string[], opts: { netns?: string; force?: boolean } = {}): Promise<void> {
  const args = [...(opts.force ? ['-force'] : []), ...(opts.netns ? ['-n', opts.netns] : []), '-batch', '-']
  return new Promise((resolve, reject) => {
    const child = spawn('ip', args, { stdio: ['pipe', 'ignore', 'pipe'] })
    let err = ''
    child.stderr.on('data', (d: Buffer) => (err += d.toString()))
    child.on('error', (e) => reject(new Error(`cannot run ip (apt-get install iproute2): ${e.message}`)))
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`ip failed: ${err.trim().slice(0, 2000)}`))))
    child.stdin.on('error', () => {})
    child.stdin.end(lines.join('\n') + '\n')
  })
}

function writeSysctl(name: string, value: string): void {
  fs.writeFileSync(`/proc/sys/net/${name.replaceAll('.', '/')}`, value)
}

/** The bridge with the gateway's address, up; IPv4 forwarding on. Idempotent (a restart finds it made). */
export async function ensureBridge(bridge: string, gatewayCidr: string): Promise<void> {
  const exists = fs.existsSync(`/sys/class/net/${bridge}`)
  await ipBatch([
    ...(exists ? [] : [`link add ${bridge} type bridge`]),
    `addr replace ${gatewayCidr} dev ${bridge}`,
    `link set ${bridge} up`,
  ])
  // The host has no IPv6 on the sandboxes' bridge (nor do they).
  writeSysctl(`ipv6.conf.${bridge}.disable_ipv6`, '1')
  writeSysctl('ipv4.ip_forward', '1')
}

export interface VethSpec {
  id: string
  /** The host end's name (≤ 15 characters). */
  veth: string
  mac: string
  address: string
  gateway: string
  bridge: string
}

/**
 * Attaches the sandbox's network namespace (held by process `netnsPid` until runc has joined it)
 * under /run/netns, then makes its veth: eth0 inside with the sandbox's MAC, address and routes, the
 * host end an isolated port of the bridge (frames go to the host, never to another port).
 */
export async function attachVeth(v: VethSpec, netnsPid: number): Promise<void> {
  const ns = netnsName(v.bridge, v.id)
  await ipBatch([
    `netns attach ${ns} ${netnsPid}`,
    `link add ${v.veth} type veth peer name eth0 address ${v.mac} netns ${ns}`,
    `link set ${v.veth} master ${v.bridge}`,
    `link set dev ${v.veth} type bridge_slave isolated on`,
    `link set ${v.veth} up`,
  ])
  // A /32 with the gateway on-link: every packet, even to another sandbox's address, goes through
  // the host's rules (and is refused there at once rather than waiting on ARP).
  await ipBatch([
    `addr add ${v.address}/32 dev eth0`,
    'link set eth0 up',
    `route add ${v.gateway} dev eth0 scope link`,
    `route add default via ${v.gateway} dev eth0 src ${v.address}`,
  ], { netns: ns })
}

/**
 * Removes the veth (both ends, at once rather than when the kernel gets round to the namespace) and
 * the namespace's mount. Idempotent: ip stops a batch at some errors even with -force, so when the
 * batch fails each step is tried alone.
 */
export async function detachVeth(bridge: string, id: string, veth: string | undefined): Promise<void> {
  const steps = [...(veth ? [`link del ${veth}`] : []), `netns del ${netnsName(bridge, id)}`]
  const ok = await ipBatch(steps).then(() => true, () => false)
  if (!ok) for (const step of steps) await ipBatch([step]).catch(() => {})
}

/** Forgets the connection-tracking entries of an address, so nothing of its owner outlives it. */
export async function flushConntrack(address: string): Promise<void> {
  // What it opened (its address as the source) and what was opened to it (as the destination: the
  // daemon's previews); NAT rewrites only the other side. Exit code 1 when there was nothing to delete.
  await Promise.all(['-s', '-d'].map((flag) => run('conntrack', ['-D', flag, address]).catch(() => {})))
}
