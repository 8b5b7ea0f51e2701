// Connections to a port inside a sandbox, for port previews. A dial tries each way in turn (a direct
// TCP connection to the sandbox's address on its bridge, then a tunnel through the sandbox's agent,
// which also reaches servers bound to its loopback), and retries a closed port a few times, as E2B's
// proxy does, since a dev server is often a moment late to listen.
import http from 'node:http'
import net from 'node:net'
import type { Duplex } from 'node:stream'
import { TunnelError, openTunnel } from './tunnel.js'

/** One way to reach a port of a sandbox; rejects with a TunnelError. */
export type DialWay = (sandboxId: string, port: number) => Promise<net.Socket>

/** A closed port is tried this many times in all, with these pauses between (E2B: 5 tries, 100–400 ms). */
export const DIAL_BACKOFF_MS = [100, 200, 300, 400]

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

export class PortDialer {
  constructor(
    private readonly ways: DialWay[],
    private readonly backoffMs = DIAL_BACKOFF_MS,
  ) {}

  /**
   * A connected socket to the port, or a TunnelError: 'closed' when every try found nothing
   * listening, 'agent' or 'timeout' at the first answer that is not about the port (no retry: a
   * broken agent does not mend in a second).
   */
  async dial(sandboxId: string, port: number, stillWanted: () => boolean = () => true): Promise<net.Socket> {
    for (let attempt = 0; ; attempt++) {
      let last: TunnelError | undefined
      for (const way of this.ways) {
        try {
          return await way(sandboxId, port)
        } catch (err) {
          last = err instanceof TunnelError ? err : new TunnelError('agent', (err as Error).message)
          if (last.kind !== 'closed') throw last
        }
      }
      if (attempt >= this.backoffMs.length || !stillWanted()) throw last ?? new TunnelError('closed', 'no way to reach the port')
      await sleep(this.backoffMs[attempt]!)
    }
  }
}

/**
 * The direct way: a TCP connection to the sandbox's address (network/), for servers that listen on
 * all addresses. Refused (or no address) counts as closed, so the next way is tried.
 */
export function directWay(addressOf: (sandboxId: string) => string | undefined, timeoutMs: number): DialWay {
  return (sandboxId, port) => {
    const host = addressOf(sandboxId)
    if (!host) return Promise.reject(new TunnelError('closed', 'the sandbox has no network address'))
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port, timeout: timeoutMs })
      socket.once('connect', () => {
        socket.setTimeout(0)
        socket.removeAllListeners('error')
        resolve(socket)
      })
      socket.once('timeout', () => socket.destroy(new Error('timeout')))
      socket.once('error', (err) => reject(new TunnelError('closed', err.message)))
    })
  }
}

/** The agent way: a tunnel on the agent's socket (tunnel.ts). */
export function agentTunnelWay(socketOf: (sandboxId: string) => string, tokenOf: (sandboxId: string) => string | undefined, timeoutMs: number): DialWay {
  return (sandboxId, port) => {
    const token = tokenOf(sandboxId)
    if (!token) return Promise.reject(new TunnelError('agent', 'The sandbox was not found'))
    return openTunnel({ socketPath: socketOf(sandboxId), port, token, timeoutMs })
  }
}

/**
 * An http.Agent whose connections are dials of one sandbox port, so Node's HTTP client (parsing,
 * keep-alive pooling, backpressure) works unchanged over tunnels. Node's Agent accepts a
 * createConnection that answers through its callback, which is what an asynchronous dial needs.
 */
export class PortAgent extends http.Agent {
  constructor(
    private readonly dialer: PortDialer,
    readonly sandboxId: string,
    readonly port: number,
    opts: http.AgentOptions,
  ) {
    super(opts)
  }

  override createConnection(_opts: http.ClientRequestArgs, callback?: (err: Error | null, stream: Duplex) => void): undefined {
    // Node's Agent always passes the callback; the error path gives no stream.
    const done = callback as (err: Error | null, stream?: Duplex) => void
    this.dialer.dial(this.sandboxId, this.port).then(
      (socket) => done(null, socket),
      (err: Error) => done(err),
    )
    return undefined
  }
}
