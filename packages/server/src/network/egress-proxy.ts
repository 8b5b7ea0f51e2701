// The egress proxy for domain rules: a sandbox with domain rules has its HTTP (port 80) and TLS (443)
// connections redirected here by nftables (unless a CIDR rule already allows the address). It reads
// the name the sandbox asks for (the Host header, or the TLS ClientHello's SNI), and if a domain rule
// allows that name it resolves the name itself, on the host, and dials it: the address the sandbox
// chose, its own DNS answers and any Host/SNI it sent to another address are never used. An address
// a sandbox may never reach (the host's, its networks', private ranges) is refused even when a name
// resolves to it. Anything else is accepted, then closed (as E2B does). TLS is not intercepted.
import dns from 'node:dns'
import net from 'node:net'
import { pipeline } from 'node:stream'
import { domainAllowed, type EgressPolicy } from './policy.js'

const HEAD_LIMIT = 16 * 1024
const HEAD_TIMEOUT_MS = 10_000
const CONNECT_TIMEOUT_MS = 10_000
const MAX_CONNECTIONS_PER_SANDBOX = 256

/**
 * The name in a TLS ClientHello's server_name extension; undefined when the record is not a
 * ClientHello or has none, 'incomplete' when more bytes are needed. Written by hand: no maintained
 * npm package reads SNI from raw bytes without terminating TLS, and it is a bounded, checked walk.
 */
export function sniOf(buf: Buffer): string | undefined | 'incomplete' {
  if (buf.length < 5) return 'incomplete'
  if (buf[0] !== 0x16) return undefined // not a handshake record
  const recordEnd = 5 + buf.readUInt16BE(3)
  if (buf.length < recordEnd) return recordEnd > HEAD_LIMIT ? undefined : 'incomplete'
  let p = 5
  const need = (n: number) => p + n <= recordEnd
  if (!need(4) || buf[p] !== 0x01) return undefined // not a ClientHello
  p += 4 // type, length
  if (!need(2 + 32)) return undefined
  p += 2 + 32 // version, random
  if (!need(1)) return undefined
  p += 1 + buf[p]! // session id
  if (!need(2)) return undefined
  p += 2 + buf.readUInt16BE(p) // cipher suites
  if (!need(1)) return undefined
  p += 1 + buf[p]! // compression methods
  if (!need(2)) return undefined
  const extEnd = p + 2 + buf.readUInt16BE(p)
  p += 2
  if (extEnd > recordEnd) return undefined
  while (p + 4 <= extEnd) {
    const type = buf.readUInt16BE(p)
    const len = buf.readUInt16BE(p + 2)
    p += 4
    if (p + len > extEnd) return undefined
    if (type === 0) {
      // server_name_list: list length, then entries of (type, length, name); type 0 is a host name.
      let q = p + 2
      const listEnd = Math.min(p + len, p + 2 + buf.readUInt16BE(p))
      while (q + 3 <= listEnd) {
        const nameType = buf[q]!
        const nameLen = buf.readUInt16BE(q + 1)
        q += 3
        if (q + nameLen > listEnd) return undefined
        if (nameType === 0) return buf.toString('latin1', q, q + nameLen)
        q += nameLen
      }
      return undefined
    }
    p += len
  }
  return undefined
}

/**
 * The Host of the first request in an HTTP/1 head (without its port); undefined when there is none,
 * or more than one, 'incomplete' when the head has not ended yet. By hand for the same reason: only
 * this one header of the head is needed, and the bytes go on unchanged.
 */
export function hostOf(buf: Buffer): string | undefined | 'incomplete' {
  const end = buf.indexOf('\r\n\r\n')
  if (end < 0) return buf.length > HEAD_LIMIT ? undefined : 'incomplete'
  const lines = buf.toString('latin1', 0, end).split('\r\n')
  if (!/^[A-Z]+ \S+ HTTP\/1\.[01]$/.test(lines[0] ?? '')) return undefined
  const hosts = lines.slice(1).filter((l) => /^host:/i.test(l)).map((l) => l.slice(5).trim())
  if (hosts.length !== 1) return undefined
  const m = /^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/.exec(hosts[0]!)
  return m ? m[1]!.toLowerCase() : undefined
}

/** A hostname a proxy may dial: a DNS name, not an address literal. */
const isName = (host: string) => net.isIP(host) === 0 && /^[a-z0-9-]+(\.[a-z0-9-]+)*\.?$/.test(host) && host.length <= 253

export interface EgressProxyOptions {
  address: string
  upstreams: string[]
  /** The rules of the sandbox at this source address, or undefined when it is none. */
  policyOf(source: string): EgressPolicy | undefined
  /** Whether an address is one no sandbox may reach (the host's, its networks', private ranges). */
  forbidden(address: string): boolean
}

export class EgressProxy {
  private servers: net.Server[] = []
  private connections = new Map<string, number>()
  private readonly resolver = new dns.promises.Resolver({ timeout: 3000, tries: 2 })
  ports = { http: 0, tls: 0 }

  constructor(private readonly o: EgressProxyOptions) {
    if (o.upstreams.length) this.resolver.setServers(o.upstreams)
  }

  async start(): Promise<void> {
    for (const kind of ['http', 'tls'] as const) {
      const server = net.createServer((socket) => this.accept(socket, kind))
      server.on('error', () => {})
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen(0, this.o.address, () => {
          server.off('error', reject)
          resolve()
        })
      })
      this.ports[kind] = (server.address() as net.AddressInfo).port
      this.servers.push(server)
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))))
    this.servers = []
  }

  private accept(socket: net.Socket, kind: 'http' | 'tls'): void {
    const source = socket.remoteAddress ?? ''
    socket.on('error', () => {})
    const policy = this.o.policyOf(source)
    const open = this.connections.get(source) ?? 0
    if (!policy || open >= MAX_CONNECTIONS_PER_SANDBOX) return void socket.destroy()
    this.connections.set(source, open + 1)
    socket.once('close', () => {
      const n = (this.connections.get(source) ?? 1) - 1
      if (n > 0) this.connections.set(source, n)
      else this.connections.delete(source)
    })
    socket.setTimeout(HEAD_TIMEOUT_MS, () => socket.destroy())
    let head = Buffer.alloc(0)
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk])
      const name = kind === 'tls' ? sniOf(head) : hostOf(head)
      if (name === 'incomplete') return
      socket.off('data', onData)
      socket.pause()
      if (!name || !isName(name) || !domainAllowed(name, policy)) return void socket.destroy()
      void this.dial(name, kind === 'tls' ? 443 : 80).then(
        (upstream) => {
          if (socket.destroyed) return void upstream.destroy()
          socket.setTimeout(0)
          upstream.write(head)
          pipeline(socket, upstream, socket, () => {})
        },
        () => socket.destroy(),
      )
    }
    socket.on('data', onData)
  }

  /** Resolves the name on the host and connects to its first address a sandbox may reach. */
  private async dial(name: string, port: number): Promise<net.Socket> {
    const addresses = await this.resolver.resolve4(name)
    const address = addresses.find((a) => !this.o.forbidden(a))
    if (!address) throw new Error(`${name} resolves only to addresses a sandbox may not reach`)
    return new Promise((resolve, reject) => {
      const upstream = net.connect({ host: address, port, timeout: CONNECT_TIMEOUT_MS })
      upstream.once('connect', () => {
        upstream.setTimeout(0)
        resolve(upstream)
      })
      upstream.once('timeout', () => upstream.destroy(new Error('connect timeout')))
      upstream.once('error', reject)
    })
  }
}
