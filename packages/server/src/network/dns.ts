// The sandboxes' resolver: on the bridge's address, port 53 (UDP and TCP), forwarding each query to
// the host's own resolvers (which sandboxes may not reach themselves). dns-packet checks that a query
// is one and builds the refusals; the answers are relayed as the upstream sent them. A sandbox whose
// rules allow nothing outside is refused, and each sandbox has a bound on queries in flight.
import dgram from 'node:dgram'
import fs from 'node:fs'
import net from 'node:net'
import dnsPacket from 'dns-packet'

const UPSTREAM_TIMEOUT_MS = 2000
const MAX_IN_FLIGHT_PER_SANDBOX = 64
const MAX_TCP_CONNECTIONS_PER_SANDBOX = 16

/** The host's resolvers, from resolv.conf (IPv4 and IPv6 addresses as written). */
export function systemResolvers(file = '/etc/resolv.conf'): string[] {
  try {
    return fs
      .readFileSync(file, 'utf8')
      .split('\n')
      .map((l) => /^\s*nameserver\s+(\S+)/.exec(l)?.[1])
      .filter((a): a is string => !!a && net.isIP(a.split('%')[0]!) !== 0)
  } catch {
    return []
  }
}

export interface ResolverOptions {
  address: string
  port: number
  upstreams: string[]
  /** Whether the sandbox at this address may resolve names (it exists and may reach outside). */
  allowed(source: string): boolean
}

/** A query with one question, or undefined (not worth an answer). */
function parseQuery(msg: Buffer): dnsPacket.Packet | undefined {
  try {
    const p = dnsPacket.decode(msg)
    if (p.type !== 'query' || !p.questions || p.questions.length !== 1) return undefined
    return p
  } catch {
    return undefined
  }
}

function refusal(query: dnsPacket.Packet): Buffer {
  // RCODE 5 (REFUSED), with RD echoed and RA set.
  return dnsPacket.encode({ id: query.id, type: 'response', flags: (5 & 0xf) | dnsPacket.RECURSION_AVAILABLE | ((query.flags ?? 0) & dnsPacket.RECURSION_DESIRED), questions: query.questions })
}

function servfail(query: dnsPacket.Packet): Buffer {
  return dnsPacket.encode({ id: query.id, type: 'response', flags: 2 | dnsPacket.RECURSION_AVAILABLE, questions: query.questions })
}

export class Resolver {
  private udp: dgram.Socket | undefined
  private tcp: net.Server | undefined
  private inFlight = new Map<string, number>()
  private tcpConnections = new Map<string, number>()

  constructor(private readonly o: ResolverOptions) {}

  async start(): Promise<void> {
    const udp = dgram.createSocket({ type: 'udp4', reuseAddr: false })
    udp.on('message', (msg, rinfo) => void this.onUdp(msg, rinfo))
    udp.on('error', () => {})
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject)
      udp.bind(this.o.port, this.o.address, () => {
        udp.off('error', reject)
        resolve()
      })
    })
    this.udp = udp
    const tcp = net.createServer((socket) => this.onTcp(socket))
    tcp.on('error', () => {})
    await new Promise<void>((resolve, reject) => {
      tcp.once('error', reject)
      tcp.listen(this.o.port, this.o.address, () => {
        tcp.off('error', reject)
        resolve()
      })
    })
    this.tcp = tcp
  }

  async stop(): Promise<void> {
    this.udp?.close()
    await new Promise<void>((resolve) => (this.tcp ? this.tcp.close(() => resolve()) : resolve()))
  }

  private async onUdp(msg: Buffer, rinfo: dgram.RemoteInfo): Promise<void> {
    const query = parseQuery(msg)
    if (!query) return
    const answer = await this.answer(msg, query, rinfo.address, 'udp')
    if (answer) this.udp?.send(answer, rinfo.port, rinfo.address)
  }

  private onTcp(socket: net.Socket): void {
    const source = socket.remoteAddress ?? ''
    const open = this.tcpConnections.get(source) ?? 0
    if (open >= MAX_TCP_CONNECTIONS_PER_SANDBOX) return void socket.destroy()
    this.tcpConnections.set(source, open + 1)
    socket.on('close', () => {
      const n = (this.tcpConnections.get(source) ?? 1) - 1
      if (n > 0) this.tcpConnections.set(source, n)
      else this.tcpConnections.delete(source)
    })
    socket.on('error', () => {})
    socket.setTimeout(10_000, () => socket.destroy())
    let buffered = Buffer.alloc(0)
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk])
      while (buffered.length >= 2) {
        const length = buffered.readUInt16BE(0)
        if (buffered.length < 2 + length) break
        const msg = buffered.subarray(2, 2 + length)
        buffered = buffered.subarray(2 + length)
        const query = parseQuery(msg)
        if (!query) return void socket.destroy()
        void this.answer(msg, query, source, 'tcp').then((answer) => {
          if (!answer || socket.destroyed) return
          const head = Buffer.alloc(2)
          head.writeUInt16BE(answer.length)
          socket.write(Buffer.concat([head, answer]))
        })
      }
      if (buffered.length > 2 + 65535) socket.destroy()
    })
  }

  private async answer(msg: Buffer, query: dnsPacket.Packet, source: string, transport: 'udp' | 'tcp'): Promise<Buffer | undefined> {
    if (!this.o.allowed(source)) return refusal(query)
    const n = this.inFlight.get(source) ?? 0
    if (n >= MAX_IN_FLIGHT_PER_SANDBOX) return servfail(query)
    this.inFlight.set(source, n + 1)
    try {
      // The first answer wins, but a resolver that fails or refuses the name (SERVFAIL, REFUSED)
      // hands it on to the next one.
      let fallback: Buffer | undefined
      for (const upstream of this.o.upstreams) {
        const reply = await (transport === 'udp' ? askUdp(msg, upstream) : askTcp(msg, upstream)).catch(() => undefined)
        if (!reply || reply.length < 4 || reply.readUInt16BE(0) !== query.id) continue
        const rcode = reply[3]! & 0x0f
        if (rcode !== 2 && rcode !== 5) return reply
        fallback ??= reply
      }
      return fallback ?? servfail(query)
    } finally {
      const left = (this.inFlight.get(source) ?? 1) - 1
      if (left > 0) this.inFlight.set(source, left)
      else this.inFlight.delete(source)
    }
  }
}

/**
 * The one end of an upstream query (an answer, an error or the timeout, whichever comes first): it
 * settles the promise and closes the socket once, however many of them follow.
 */
function settleOnce(resolve: (reply: Buffer) => void, reject: (err: Error) => void, close: () => void): (err: Error | undefined, reply?: Buffer) => void {
  let finished = false
  const done = (err: Error | undefined, reply?: Buffer) => {
    if (finished) return
    finished = true
    clearTimeout(timer)
    close()
    if (err) reject(err)
    else resolve(reply!)
  }
  const timer = setTimeout(() => done(new Error('timeout')), UPSTREAM_TIMEOUT_MS)
  return done
}

/** One query over UDP from a fresh socket (a random source port each time), with a timeout. */
function askUdp(msg: Buffer, server: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket(net.isIPv6(server) ? 'udp6' : 'udp4')
    const done = settleOnce(resolve, reject, () => socket.close())
    socket.on('error', (err) => done(err))
    socket.on('message', (reply, rinfo) => {
      if (rinfo.address === server.split('%')[0] && rinfo.port === 53) done(undefined, reply)
    })
    socket.send(msg, 53, server)
  })
}

/** One query over TCP (length-prefixed), with a timeout. */
function askTcp(msg: Buffer, server: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: server, port: 53 })
    let buffered = Buffer.alloc(0)
    const done = settleOnce(resolve, reject, () => socket.destroy())
    socket.on('error', (err) => done(err))
    socket.on('connect', () => {
      const head = Buffer.alloc(2)
      head.writeUInt16BE(msg.length)
      socket.write(Buffer.concat([head, msg]))
    })
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk])
      if (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) done(undefined, buffered.subarray(2, 2 + buffered.readUInt16BE(0)))
    })
    socket.on('close', () => done(new Error('closed')))
  })
}
