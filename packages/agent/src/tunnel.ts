// Port previews: the daemon reaches a server listening inside the sandbox through the agent, on the
// agent's own socket (which only the daemon holds). `GET /sandlot/tunnel?port=P` with
// `Upgrade: sandlot-tunnel` and the sandbox's token: the agent connects to P inside the sandbox
// (127.0.0.1, then ::1, then the sandbox's other addresses, so servers bound to loopback only are
// reachable too), answers 101 and then only pipes bytes both ways; 502 JSON when nothing listens.
import type { IncomingMessage } from 'node:http';
import net from 'node:net';
import { networkInterfaces } from 'node:os';
import type { Duplex } from 'node:stream';
import { pipeline } from 'node:stream';
import { safeEqual } from './auth.js';
import { config } from './config.js';

export const TUNNEL_PATH = '/sandlot/tunnel';
export const TUNNEL_PROTOCOL = 'sandlot-tunnel';

/** A connect inside the sandbox is local: loopback refuses at once; a silent address gets this long. */
const CONNECT_TIMEOUT_MS = 3000;

function reply(socket: Duplex, status: number, reason: string, message: string): void {
  const body = JSON.stringify({ code: status, message });
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/** Where a server on `port` may listen: loopback first (the usual dev server), then the sandbox's own addresses. */
function candidates(): string[] {
  const out = ['127.0.0.1', '::1'];
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      // Link-local IPv6 needs a scope id; a server bound only there is not worth it.
      if (a.internal || (a.family === 'IPv6' && a.address.startsWith('fe80:'))) continue;
      out.push(a.address);
    }
  }
  return out;
}

function connectTo(host: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port });
    const fail = (err: Error) => {
      s.destroy();
      reject(err);
    };
    s.setTimeout(CONNECT_TIMEOUT_MS, () => fail(new Error(`connect to ${host}:${port} timed out`)));
    s.once('error', fail);
    s.once('connect', () => {
      s.setTimeout(0);
      s.off('error', fail);
      resolve(s);
    });
  });
}

/** The 'upgrade' handler of the agent's server. Every path out of it answers or closes the socket. */
export async function handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
  socket.on('error', () => socket.destroy());
  const url = new URL(req.url ?? '/', 'http://agent');
  if (url.pathname !== TUNNEL_PATH || String(req.headers.upgrade).toLowerCase() !== TUNNEL_PROTOCOL) {
    return reply(socket, 400, 'Bad Request', `upgrades are served only on ${TUNNEL_PATH} with Upgrade: ${TUNNEL_PROTOCOL}`);
  }
  const got = req.headers['x-access-token'];
  if (!config.accessToken || typeof got !== 'string' || !safeEqual(got, config.accessToken)) {
    return reply(socket, 401, 'Unauthorized', 'missing or invalid access token (X-Access-Token header)');
  }
  const port = Number(url.searchParams.get('port'));
  if (!Number.isInteger(port) || port < 1 || port > 65535) return reply(socket, 400, 'Bad Request', 'port must be an integer from 1 to 65535');

  let upstream: net.Socket | undefined;
  for (const host of candidates()) {
    if (socket.destroyed) return;
    upstream = await connectTo(host, port).catch(() => undefined);
    if (upstream) break;
  }
  if (!upstream) return reply(socket, 502, 'Bad Gateway', `nothing listens on port ${port} in the sandbox`);
  if (socket.destroyed) return void upstream.destroy();
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${TUNNEL_PROTOCOL}\r\n\r\n`);
  if (head.length) upstream.write(head);
  // Bytes only, with backpressure; either side's error or close ends both.
  const done = () => {
    socket.destroy();
    upstream.destroy();
  };
  pipeline(socket, upstream, (err) => err && done());
  pipeline(upstream, socket, (err) => err && done());
  upstream.on('close', () => socket.end());
  socket.on('close', () => upstream.destroy());
}
