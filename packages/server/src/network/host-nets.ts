// The host's own IPv4 addresses and the networks attached to its interfaces (its LAN neighbours,
// whatever their range), read from iproute2's JSON: a sandbox reaches none of them, whatever its rules.
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import ipaddr from 'ipaddr.js'

const run = promisify(execFile)

interface AddrInfo {
  family?: string
  local?: string
  prefixlen?: number
}

interface Route {
  dst?: string
  scope?: string
  type?: string
  table?: string
}

/** Normalises "a.b.c.d/n" to its network address; undefined when it is not an IPv4 CIDR. */
export function networkOf(cidr: string): string | undefined {
  try {
    const [addr, prefix] = ipaddr.IPv4.parseCIDR(cidr.includes('/') ? cidr : `${cidr}/32`)
    const bytes = addr.toByteArray()
    const mask = ipaddr.IPv4.subnetMaskFromPrefixLength(prefix).toByteArray()
    return `${bytes.map((b, i) => b & mask[i]!).join('.')}/${prefix}`
  } catch {
    return undefined
  }
}

/** Every host address (as /32) and attached network: address prefixes and on-link routes, never a default route. */
export async function hostNetworks(): Promise<string[]> {
  const [addrs, routes] = await Promise.all([
    run('ip', ['-j', '-4', 'addr', 'show']).then((r) => JSON.parse(r.stdout) as { addr_info?: AddrInfo[] }[]),
    run('ip', ['-j', '-4', 'route', 'show', 'table', 'all']).then((r) => JSON.parse(r.stdout) as Route[]),
  ])
  const nets = new Set<string>()
  for (const link of addrs) {
    for (const a of link.addr_info ?? []) {
      if (a.family !== 'inet' || !a.local) continue
      nets.add(`${a.local}/32`)
      const net = networkOf(`${a.local}/${a.prefixlen ?? 32}`)
      if (net) nets.add(net)
    }
  }
  for (const r of routes) {
    if (!r.dst || r.dst === 'default' || r.scope !== 'link') continue
    if (r.type && r.type !== 'unicast') continue
    const net = networkOf(r.dst)
    if (net && !net.endsWith('/0')) nets.add(net)
  }
  return [...nets].sort()
}

/**
 * A host route, on another interface than `bridge`, that overlaps `subnet` (another daemon's bridge,
 * a VPN, a LAN): the sandboxes' subnet must be the host's only way to those addresses.
 */
export async function overlappingRoute(subnet: string, bridge: string): Promise<string | undefined> {
  const routes = JSON.parse((await run('ip', ['-j', '-4', 'route', 'show', 'table', 'all'])).stdout) as (Route & { dev?: string })[]
  const [net, prefix] = ipaddr.IPv4.parseCIDR(subnet)
  for (const r of routes) {
    if (!r.dst || r.dst === 'default' || r.dev === bridge || (r.type && r.type !== 'unicast')) continue
    let other: [ipaddr.IPv4, number]
    try {
      other = ipaddr.IPv4.parseCIDR(r.dst.includes('/') ? r.dst : `${r.dst}/32`)
    } catch {
      continue
    }
    if (other[1] === 0) continue
    if (net.match(other) || other[0].match([net, prefix])) return `${r.dst} on ${r.dev ?? '?'}`
  }
  return undefined
}
