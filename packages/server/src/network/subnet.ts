// The sandboxes' IPv4 subnet (SANDLOT_SUBNET): the bridge holds its first address, each sandbox one
// of the others. Addresses are handed out round the subnet from where the last one was taken, so a
// freed address is the last to be reused (and only once its previous owner's network is gone).
import ipaddr from 'ipaddr.js'

export interface Subnet {
  /** As configured, e.g. "10.11.0.0/16". */
  cidr: string
  network: number
  prefix: number
  /** The bridge's address (the sandboxes' gateway and DNS resolver). */
  gateway: string
  /** The first and last addresses a sandbox may have. */
  first: number
  last: number
}

export const ipToInt = (ip: string): number => ipaddr.IPv4.parse(ip).toByteArray().reduce((n, b) => n * 256 + b, 0)
export const intToIp = (n: number): string => [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.')

export function parseSubnet(cidr: string): Subnet {
  let parsed: [ipaddr.IPv4, number]
  try {
    parsed = ipaddr.IPv4.parseCIDR(cidr)
  } catch {
    throw new Error(`SANDLOT_SUBNET must be an IPv4 CIDR such as 10.11.0.0/16, got "${cidr}"`)
  }
  const [addr, prefix] = parsed
  if (prefix < 8 || prefix > 28) throw new Error(`SANDLOT_SUBNET must be between a /8 and a /28, got "${cidr}"`)
  if (addr.range() !== 'private' && addr.range() !== 'carrierGradeNat') {
    throw new Error(`SANDLOT_SUBNET must be a private range (10/8, 172.16/12, 192.168/16 or 100.64/10), got "${cidr}"`)
  }
  const size = 2 ** (32 - prefix)
  const network = ipToInt(addr.toString()) - (ipToInt(addr.toString()) % size)
  return { cidr: `${intToIp(network)}/${prefix}`, network, prefix, gateway: intToIp(network + 1), first: network + 2, last: network + size - 2 }
}

/** The next free address after `cursor` (round the subnet), or undefined when every one is taken. */
export function nextFree(subnet: Subnet, taken: Set<string>, cursor: number): number | undefined {
  const count = subnet.last - subnet.first + 1
  const start = cursor >= subnet.first && cursor <= subnet.last ? cursor : subnet.last
  for (let i = 1; i <= count; i++) {
    const n = subnet.first + ((start - subnet.first + i) % count)
    if (!taken.has(intToIp(n))) return n
  }
  return undefined
}

/** The sandbox's MAC: locally administered, from its address, so the bridge's filter can pin both. */
export const macOf = (address: string): string =>
  ['02', '5a', ...ipaddr.IPv4.parse(address).toByteArray().map((b) => b.toString(16).padStart(2, '0'))].join(':')
