// http:// and https:// on one port: the first byte of each connection decides. A TLS handshake
// begins with a handshake record (0x16); HTTP/1 begins with a method's letter. TLS connections go to
// an https.Server that shares the request handler and never listens itself.
import type http from 'node:http'
import type https from 'node:https'
import type net from 'node:net'

const TLS_HANDSHAKE = 0x16

export interface SniffOptions {
  /** A connection must send its first byte within this time (ms), or it is closed. */
  firstByteTimeoutMs: number
}

/**
 * Makes `server` (which listens) hand each connection whose first byte opens a TLS handshake to
 * `tlsServer`, and every other one to its own HTTP handling, as before.
 */
export function serveTlsOnSamePort(server: http.Server, tlsServer: https.Server, opts: SniffOptions): void {
  // The HTTP server's own connection handling, taken out of the event and called once sniffed.
  const httpHandlers = server.listeners('connection') as ((socket: net.Socket) => void)[]
  server.removeAllListeners('connection')
  server.on('connection', (socket: net.Socket) => {
    const onTimeout = () => socket.destroy()
    const onError = () => socket.destroy()
    socket.on('error', onError)
    socket.setTimeout(opts.firstByteTimeoutMs)
    socket.once('timeout', onTimeout)
    const dispatch = () => {
      // read(1) takes one byte out of what has arrived; unshift puts it back for whoever parses it.
      // (Node's TLS socket and HTTP parser both take over bytes already buffered on the socket.)
      const first = socket.read(1) as Buffer | null
      if (first === null) {
        if (socket.readableEnded || socket.destroyed) return void socket.destroy()
        return void socket.once('readable', dispatch)
      }
      socket.unshift(first)
      socket.off('timeout', onTimeout)
      socket.off('error', onError)
      if (first[0] === TLS_HANDSHAKE) {
        // The TLS socket reads through the handle from now on, so this socket's own idle timer
        // would never be reset: off. The TLS server's handshake timeout and its HTTP timeouts apply.
        socket.setTimeout(0)
        tlsServer.emit('connection', socket)
      } else {
        for (const handler of httpHandlers) handler.call(server, socket)
      }
    }
    socket.once('readable', dispatch)
  })
}
