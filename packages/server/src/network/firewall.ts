// The daemon's nftables tables (Debian's nft, one atomic transaction per change): what a sandbox may
// send, to whom, and what is translated on the way. Two tables, named after the daemon's bridge so
// several daemons on one host keep apart:
//
// - `bridge sandlot_<bridge>`: every frame a sandbox's veth brings into the bridge must carry the
//   sandbox's own MAC and IPv4 address (IP and ARP alike), or it is dropped: no spoofed source, no
//   ARP claim on another's address, no IPv6, nothing else. (The ports are also isolated, so frames
//   never go from one sandbox to another.)
// - `inet sandlot_<bridge>`: the sandboxes' traffic to the host (only the resolver and the egress
//   proxy on the bridge's address), to the world (never to the ranges in NEVER, the host's attached
//   networks or another sandbox; then the sandbox's own allow/deny rules, in a chain of its own),
//   the redirect of HTTP and TLS to the egress proxy for sandboxes with domain rules, and NAT.
import { spawn } from 'node:child_process'
import type { EgressPolicy } from './policy.js'
import { isDomainPattern } from './policy.js'

/**
 * Never reachable from a sandbox, whatever its rules (E2B's list, plus "this network", multicast and
 * the reserved block): private, shared, loopback and link-local (cloud metadata) ranges.
 */
export const NEVER_REACHABLE = [
  '0.0.0.0/8', '10.0.0.0/8', '100.64.0.0/10', '127.0.0.0/8', '169.254.0.0/16', '172.16.0.0/12', '192.168.0.0/16',
  '224.0.0.0/4', '240.0.0.0/4',
]

export interface Port {
  /** The host end of the sandbox's veth. */
  veth: string
  mac: string
  address: string
}

export interface FirewallOptions {
  bridge: string
  /** Host ends of this daemon's veths all begin with it (nft matches them with a wildcard). */
  vethPrefix: string
  subnet: string
  gateway: string
  dnsPort: number
  /** Where the egress proxy listens on the gateway address, for HTTP (80) and TLS (443). */
  proxyPorts: { http: number; tls: number }
}

const chainKey = (address: string) => address.replaceAll('.', '_')
const set = (items: string[]) => `{ ${items.join(', ')} }`

/** Runs one nft transaction (its text on stdin); rejects with nft's own message. */
export function nft(script: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('nft', ['-f', '-'], { stdio: ['pipe', 'ignore', 'pipe'] })
    let err = ''
    child.stderr.on('data', (d: Buffer) => (err += d.toString()))
    child.on('error', (e) => reject(new Error(`cannot run nft (apt-get install nftables): ${e.message}`)))
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`nft failed: ${err.trim().slice(0, 2000)}`))))
    child.stdin.on('error', () => {})
    child.stdin.end(script)
  })
}

export class Firewall {
  readonly table: string
  /** Sandboxes whose HTTP/TLS goes through the egress proxy (they have domain rules). */
  private redirected = new Set<string>()
  /** Changes run one after another, in the order they were asked for. */
  private queue: Promise<unknown> = Promise.resolve()

  constructor(private readonly o: FirewallOptions) {
    this.table = `sandlot_${o.bridge.replace(/[^A-Za-z0-9_]/g, '_')}`
  }

  private run(script: string): Promise<void> {
    const next = this.queue.then(() => nft(script))
    this.queue = next.catch(() => {})
    return next
  }

  /**
   * Replaces both tables at once with their base and the given sandboxes' rules: what a restarted
   * daemon does, so a rule is neither lost nor doubled.
   */
  async reset(ports: { port: Port; policy: EgressPolicy }[], hostNets: string[]): Promise<void> {
    this.redirected.clear()
    const o = this.o
    const t = this.table
    const lines = [
      `table bridge ${t} {}`,
      `delete table bridge ${t}`,
      `table bridge ${t} {`,
      '  set ports { type ifname . ether_addr . ipv4_addr; }',
      '  chain prerouting {',
      '    type filter hook prerouting priority -200; policy accept;',
      `    iifname "${o.vethPrefix}*" jump from_sandbox`,
      '  }',
      '  chain from_sandbox {',
      '    ether type arp iifname . ether saddr . arp saddr ip @ports iifname . arp saddr ether . arp saddr ip @ports accept',
      '    ether type ip iifname . ether saddr . ip saddr @ports accept',
      '    drop',
      '  }',
      '}',
      `table inet ${t} {}`,
      `delete table inet ${t}`,
      `table inet ${t} {`,
      `  set never_reachable { type ipv4_addr; flags interval; auto-merge; elements = ${set(NEVER_REACHABLE)}; }`,
      '  set host_nets { type ipv4_addr; flags interval; auto-merge; }',
      '  map egress_by_source { type ipv4_addr : verdict; }',
      '  map redirect_by_source { type ipv4_addr : verdict; }',
      '  chain refuse_conn {',
      '    meta l4proto tcp reject with tcp reset',
      '    reject with icmpx type admin-prohibited',
      '  }',
      '  chain forward {',
      '    type filter hook forward priority filter; policy accept;',
      `    iifname "${o.bridge}" jump from_sandbox`,
      `    oifname "${o.bridge}" ct state established,related accept`,
      // Nothing from outside starts a connection to a sandbox (previews go through the daemon).
      `    oifname "${o.bridge}" drop`,
      '  }',
      '  chain from_sandbox {',
      '    meta nfproto ipv6 drop',
      '    ct state established,related accept',
      '    ip daddr @never_reachable goto refuse_conn',
      '    ip daddr @host_nets goto refuse_conn',
      '    ip saddr vmap @egress_by_source',
      '    goto refuse_conn',
      '  }',
      '  chain input {',
      '    type filter hook input priority filter; policy accept;',
      `    iifname "${o.bridge}" jump to_host`,
      '  }',
      // The host answers a sandbox only as its resolver and its egress proxy.
      '  chain to_host {',
      '    meta nfproto ipv6 drop',
      '    ct state established,related accept',
      `    ip daddr ${o.gateway} udp dport ${o.dnsPort} accept`,
      `    ip daddr ${o.gateway} tcp dport ${set([String(o.dnsPort), String(o.proxyPorts.http), String(o.proxyPorts.tls)])} accept`,
      '    goto refuse_conn',
      '  }',
      '  chain prerouting {',
      '    type nat hook prerouting priority dstnat; policy accept;',
      `    iifname "${o.bridge}" ip saddr vmap @redirect_by_source`,
      '  }',
      '  chain postrouting {',
      '    type nat hook postrouting priority srcnat; policy accept;',
      `    ip saddr ${o.subnet} oifname != "${o.bridge}" masquerade`,
      '  }',
      '}',
      ...(hostNets.length ? [`add element inet ${t} host_nets ${set(hostNets)}`] : []),
      ...ports.flatMap(({ port, policy }) => this.sandboxLines(port, policy)),
    ]
    await this.run(lines.join('\n') + '\n')
  }

  /** The host's attached networks and addresses, refreshed as its interfaces change. */
  async setHostNets(nets: string[]): Promise<void> {
    const t = this.table
    await this.run([`flush set inet ${t} host_nets`, ...(nets.length ? [`add element inet ${t} host_nets ${set(nets)}`] : [])].join('\n') + '\n')
  }

  /**
   * A sandbox's port and rules, added or replaced in one transaction: a new sandbox's before its
   * veth exists (no frame of it goes unchecked), a running one's so its next packet meets them.
   */
  async apply(port: Port, policy: EgressPolicy): Promise<void> {
    await this.run(this.sandboxLines(port, policy).join('\n') + '\n')
  }

  async remove(port: Port): Promise<void> {
    const t = this.table
    const k = chainKey(port.address)
    const lines = [
      `delete element bridge ${t} ports { "${port.veth}" . ${port.mac} . ${port.address} }`,
      `delete element inet ${t} egress_by_source { ${port.address} }`,
      ...(this.redirected.has(port.address) ? [`delete element inet ${t} redirect_by_source { ${port.address} }`] : []),
      `delete chain inet ${t} sb_${k}`,
      `delete chain inet ${t} nat_${k}`,
    ]
    this.redirected.delete(port.address)
    // One transaction; if a part was already gone (a half-made sandbox), each line alone, so that
    // part does not keep the rest.
    const whole = await this.run(lines.join('\n') + '\n').then(() => true, () => false)
    if (!whole) for (const line of lines) await this.run(line + '\n').catch(() => {})
  }

  private sandboxLines(port: Port, policy: EgressPolicy): string[] {
    const t = this.table
    const k = chainKey(port.address)
    const cidrs = policy.allowOut.filter((a) => !isDomainPattern(a))
    const domains = policy.allowOut.some(isDomainPattern)
    const lines = [
      `add element bridge ${t} ports { "${port.veth}" . ${port.mac} . ${port.address} }`,
      `add chain inet ${t} sb_${k}`,
      `flush chain inet ${t} sb_${k}`,
      ...(cidrs.length ? [`add rule inet ${t} sb_${k} ip daddr ${set(cidrs)} accept`] : []),
      ...(policy.denyOut.length ? [`add rule inet ${t} sb_${k} ip daddr ${set(policy.denyOut)} goto refuse_conn`] : []),
      `add rule inet ${t} sb_${k} accept`,
      `add element inet ${t} egress_by_source { ${port.address} : jump sb_${k} }`,
      `add chain inet ${t} nat_${k}`,
      `flush chain inet ${t} nat_${k}`,
    ]
    if (domains) {
      // HTTP and TLS to an address no CIDR rule allows go to the egress proxy, which reads the name
      // (Host, SNI) and dials that name itself if a domain rule allows it; other ports keep the CIDR rules.
      if (cidrs.length) lines.push(`add rule inet ${t} nat_${k} ip daddr ${set(cidrs)} return`)
      lines.push(
        `add rule inet ${t} nat_${k} tcp dport 80 redirect to :${this.o.proxyPorts.http}`,
        `add rule inet ${t} nat_${k} tcp dport 443 redirect to :${this.o.proxyPorts.tls}`,
        `add element inet ${t} redirect_by_source { ${port.address} : jump nat_${k} }`,
      )
      this.redirected.add(port.address)
    } else if (this.redirected.has(port.address)) {
      lines.push(`delete element inet ${t} redirect_by_source { ${port.address} }`)
      this.redirected.delete(port.address)
    }
    return lines
  }

  /** Both tables gone (tests; a host giving Sandlot up). */
  async destroy(): Promise<void> {
    await this.run(`table bridge ${this.table} {}\ndelete table bridge ${this.table}\ntable inet ${this.table} {}\ndelete table inet ${this.table}\n`)
  }
}
