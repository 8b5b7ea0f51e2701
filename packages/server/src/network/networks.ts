// Every sandbox's network, owned here: an address from the subnet, a veth into the daemon's bridge,
// its firewall rules, the resolver and the egress proxy on the bridge's address. State is in the store
// (one row per sandbox network), so a restarted daemon rebuilds the same rules for the sandboxes it
// re-adopts and removes the networks of those that are gone.
import crypto from 'node:crypto'
import net from 'node:net'
import type { Logger } from 'pino'
import { unavailable } from '../errors.js'
import type { NetworkRow, Store } from '../store/db.js'
import { Resolver } from './dns.js'
import { EgressProxy } from './egress-proxy.js'
import { Firewall, NEVER_REACHABLE, type Port } from './firewall.js'
import { hostNetworks, overlappingRoute } from './host-nets.js'
import { attachedNamespaces, attachVeth, detachVeth, ensureBridge, flushConntrack, netnsPath } from './links.js'
import { OPEN_POLICY, reachesOutside, type EgressPolicy } from './policy.js'
import { intToIp, ipToInt, macOf, nextFree, type Subnet } from './subnet.js'

export interface NetworkSettings {
  bridge: string
  subnet: Subnet
  /** The resolvers the sandboxes' resolver and the egress proxy ask (the host's by default). */
  dnsServers: string[]
}

/** How often the host's attached networks are read again (an interface may come or go). */
const HOST_NETS_REFRESH_MS = 30_000

interface Attached {
  port: Port
  policy: EgressPolicy
}

export class SandboxNetworks {
  private readonly firewall: Firewall
  private readonly resolver: Resolver
  private readonly proxy: EgressProxy
  private readonly vethPrefix: string
  private byId = new Map<string, Attached>()
  private byAddress = new Map<string, string>()
  private hostNets: string[] = []
  private forbiddenList = new net.BlockList()
  private refresh: NodeJS.Timeout | undefined

  constructor(
    private readonly settings: NetworkSettings,
    private readonly store: Store,
    private readonly log: Logger,
  ) {
    // The host ends of this daemon's veths share a prefix of its own, which its bridge filter matches.
    this.vethPrefix = `v${crypto.createHash('sha256').update(settings.bridge).digest('hex').slice(0, 4)}`
    this.resolver = new Resolver({
      address: settings.subnet.gateway,
      port: 53,
      upstreams: settings.dnsServers,
      allowed: (source) => {
        const id = this.byAddress.get(source)
        return !!id && reachesOutside(this.byId.get(id)!.policy)
      },
    })
    this.proxy = new EgressProxy({
      address: settings.subnet.gateway,
      upstreams: settings.dnsServers,
      policyOf: (source) => {
        const id = this.byAddress.get(source)
        return id ? this.byId.get(id)?.policy : undefined
      },
      forbidden: (address) => this.isForbidden(address),
    })
    this.firewall = new Firewall({
      bridge: settings.bridge,
      vethPrefix: this.vethPrefix,
      subnet: settings.subnet.cidr,
      gateway: settings.subnet.gateway,
      dnsPort: 53,
      // The same object the proxy fills in when it listens (before any rule is written).
      proxyPorts: this.proxy.ports,
    })
  }

  get gateway(): string {
    return this.settings.subnet.gateway
  }

  /** The bridge, resolver, egress proxy and the rules of every network the store knows. */
  async init(): Promise<void> {
    const { bridge, subnet } = this.settings
    const clash = await overlappingRoute(subnet.cidr, bridge)
    if (clash) {
      const leftover = /^\S+ on (sandlot\S*)$/.exec(clash)?.[1]
      throw new Error(`SANDLOT_SUBNET ${subnet.cidr} overlaps the host's route ${clash}: give this server another SANDLOT_SUBNET${leftover ? ` (or, if ${leftover} is the bridge of a Sandlot server that is gone for good, remove it: ip link del ${leftover})` : ''}`)
    }
    await ensureBridge(bridge, `${subnet.gateway}/${subnet.prefix}`)
    await this.resolver.start()
    await this.proxy.start()
    for (const row of this.store.listNetworks()) {
      this.remember(row.sandboxId, { port: { veth: row.veth, mac: macOf(row.address), address: row.address }, policy: JSON.parse(row.policy) as EgressPolicy })
    }
    this.setHostNets(await hostNetworks())
    await this.firewall.reset([...this.byId.values()], this.hostNets)
    this.refresh = setInterval(() => void this.refreshHostNets(), HOST_NETS_REFRESH_MS)
    this.refresh.unref()
  }

  async close(): Promise<void> {
    clearInterval(this.refresh)
    await Promise.all([this.resolver.stop(), this.proxy.stop()])
  }

  private setHostNets(nets: string[]): void {
    this.hostNets = nets
    const list = new net.BlockList()
    for (const cidr of [...NEVER_REACHABLE, ...nets]) {
      const [addr, prefix] = cidr.split('/')
      list.addSubnet(addr!, Number(prefix), 'ipv4')
    }
    this.forbiddenList = list
  }

  private async refreshHostNets(): Promise<void> {
    try {
      const nets = await hostNetworks()
      if (nets.join() === this.hostNets.join()) return
      this.setHostNets(nets)
      await this.firewall.setHostNets(nets)
      this.log.info({ hostNets: nets }, "the host's networks changed; sandboxes' rules follow")
    } catch (err) {
      this.log.warn({ err }, "cannot read the host's networks")
    }
  }

  /** Addresses no sandbox may reach, whatever its rules (IPv6 included: sandboxes have none). */
  isForbidden(address: string): boolean {
    if (net.isIPv6(address)) return true
    return this.forbiddenList.check(address, 'ipv4')
  }

  /** Sandboxes whose address and rules are being made ahead of their namespace (prepare). */
  private preparing = new Map<string, Promise<Port>>()

  private remember(id: string, a: Attached): void {
    this.byId.set(id, a)
    this.byAddress.set(a.port.address, id)
  }

  private forget(id: string): void {
    const a = this.byId.get(id)
    if (a) this.byAddress.delete(a.port.address)
    this.byId.delete(id)
  }

  addressOf(id: string): string | undefined {
    return this.byId.get(id)?.port.address
  }

  /** The path runc joins. */
  netnsPath(id: string): string {
    return netnsPath(this.settings.bridge, id)
  }

  /**
   * Takes the sandbox's address (round the subnet, never one a network row still holds) and puts its
   * rules in force, ahead of its namespace: the runtime starts this while it mounts the sandbox's
   * filesystem (nothing of the sandbox runs yet, and its veth comes only after the rules). attach()
   * finishes it; detach() waits for it.
   */
  prepare(id: string, policy: EgressPolicy = OPEN_POLICY): void {
    if (this.preparing.has(id) || this.byId.has(id)) return
    const ready = this.reserve(id, policy)
    ready.catch(() => {}) // awaited by attach or detach
    this.preparing.set(id, ready)
  }

  private async reserve(id: string, policy: EgressPolicy): Promise<Port> {
    const { subnet } = this.settings
    const taken = new Set(this.store.listNetworks().map((n) => n.address))
    const cursor = ipToInt(this.store.getSetting(`network_cursor:${this.settings.bridge}`) ?? intToIp(subnet.last))
    const n = nextFree(subnet, taken, cursor)
    // The server is full, not broken: a 503 the client may retry once sandboxes end.
    if (n === undefined) throw unavailable(`every address of the sandboxes' subnet ${subnet.cidr} is in use: this server holds no more sandboxes until some end (a larger SANDLOT_SUBNET holds more)`)
    const address = intToIp(n)
    const veth = `${this.vethPrefix}${crypto.createHash('sha256').update(id).digest('hex').slice(0, 10)}`
    const port: Port = { veth, mac: macOf(address), address }
    this.store.setSetting(`network_cursor:${this.settings.bridge}`, address)
    this.store.insertNetwork({ sandboxId: id, address, veth, policy: JSON.stringify(policy) })
    this.remember(id, { port, policy })
    await this.firewall.apply(port, policy)
    return port
  }

  /**
   * Gives the sandbox its network: its address and rules (prepare(), or now), then the veth into the
   * namespace that process `netnsPid` holds. On failure whatever was made is removed again.
   */
  async attach(id: string, netnsPid: number, policy: EgressPolicy = OPEN_POLICY): Promise<string> {
    const ready = this.preparing.get(id) ?? this.reserve(id, policy)
    this.preparing.delete(id)
    try {
      const port = await ready
      await attachVeth({ id, veth: port.veth, mac: port.mac, address: port.address, gateway: this.settings.subnet.gateway, bridge: this.settings.bridge }, netnsPid)
      return port.address
    } catch (err) {
      await this.detach(id)
      throw err
    }
  }

  /** Replaces a running sandbox's egress rules; its next connection meets them. */
  async apply(id: string, policy: EgressPolicy): Promise<void> {
    const a = this.byId.get(id)
    if (!a) throw new Error(`sandbox ${id} has no network`)
    await this.firewall.apply(a.port, policy)
    a.policy = policy
    this.store.setNetworkPolicy(id, JSON.stringify(policy))
  }

  /** Removes everything of the sandbox's network; its address is free once this has finished. */
  async detach(id: string): Promise<void> {
    // Rules still being put in place are waited for, then removed with the rest.
    const pending = this.preparing.get(id)
    this.preparing.delete(id)
    await pending?.catch(() => {})
    // Every network row is in byId (loaded at init, remembered by attach before anything else).
    const port = this.byId.get(id)?.port
    if (!port) {
      // No address was ever taken, but a namespace may have been attached.
      await detachVeth(this.settings.bridge, id, undefined)
      return
    }
    // The veth first: once it is gone no packet of the sandbox's can meet rules half removed.
    await detachVeth(this.settings.bridge, id, port.veth)
    await Promise.all([this.firewall.remove(port), flushConntrack(port.address)])
    this.forget(id)
    this.store.deleteNetwork(id)
  }

  /** Networks of sandboxes that are gone (the daemon was down when they ended) are removed. */
  async sweep(isLive: (id: string) => boolean): Promise<void> {
    const ids = new Set([...this.store.listNetworks().map((r: NetworkRow) => r.sandboxId), ...attachedNamespaces(this.settings.bridge)])
    for (const id of ids) {
      if (isLive(id)) continue
      this.log.info({ sandboxId: id }, 'removing the network of a sandbox that is gone')
      await this.detach(id).catch((err) => this.log.warn({ err, sandboxId: id }, 'cannot remove a network'))
    }
  }
}
