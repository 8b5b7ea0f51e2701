// Entry point. Startup is kept minimal: listen first (node:http only), then load the
// Connect/protobuf machinery in the background; early requests wait for it.
import { chmodSync, closeSync, mkdirSync, rmSync, writeSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { dirname } from 'node:path';
import type { Duplex } from 'node:stream';
import { ensureAccount } from './account.js';
import { configProblem, listenFd, loadConfigFile, socketPath } from './config.js';
import { logError, logInfo } from './log.js';
import { makeUndumpable } from './undumpable.js';

// Before anything secret is in memory: nothing the agent runs may read or trace it.
const dumpable = makeUndumpable();
if (dumpable) logError(`the agent stays dumpable, so root in the sandbox can read its memory: ${dumpable}`);

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

process.on('uncaughtException', (err) => logError('uncaught exception', err));
process.on('unhandledRejection', (err) => logError('unhandled rejection', err));
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));

let handler: Promise<Handler> | undefined;
function loadHandler(): Promise<Handler> {
  handler ??= import('./server.js').then((m) => {
    if (process.env.SANDLOT_AGENT_DEBUG) logInfo(`request handler ready: ${performance.now().toFixed(1)} ms after process start`);
    return m.createHandler();
  });
  handler.catch((err) => {
    logError('cannot load the request handler', err);
    handler = undefined;
  });
  return handler;
}

loadConfigFile();
// In a sandbox (the runtime asks for it): E2B's `user` where the image lacks it, before any request.
if (process.env.SANDLOT_AGENT_ENSURE_USER) {
  try {
    for (const what of ensureAccount(process.env.SANDLOT_AGENT_ENSURE_USER)) logInfo(what);
  } catch (err) {
    logError(`cannot make the ${process.env.SANDLOT_AGENT_ENSURE_USER} account`, err);
  }
}
const refusal = configProblem()
  ? JSON.stringify({ code: 503, message: `the sandbox's agent refuses every request: ${configProblem()}` })
  : undefined;
if (listenFd === undefined) {
  try {
    mkdirSync(dirname(socketPath), { recursive: true, mode: 0o700 });
  } catch (err) {
    logError(`cannot create ${dirname(socketPath)}`, err);
  }
  rmSync(socketPath, { force: true });
}

const server = createServer((req, res) => {
  if (req.url === '/health' && (req.method === 'GET' || req.method === 'HEAD')) {
    res.writeHead(204).end();
    return;
  }
  if (refusal) {
    res.writeHead(503, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(refusal) });
    res.end(refusal);
    return;
  }
  loadHandler().then(
    (h) => h(req, res),
    () => {
      res.writeHead(503, { 'Content-Type': 'application/json', Connection: 'close' });
      res.end('{"code":503,"message":"agent is not ready"}');
    },
  );
});
// Port previews (tunnel.ts): loaded on first use, like the request handler.
server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
  if (refusal) {
    socket.end(`HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(refusal)}\r\nConnection: close\r\n\r\n${refusal}`);
    return;
  }
  import('./tunnel.js')
    .then((m) => m.handleUpgrade(req, socket, head))
    .catch((err) => {
      logError('tunnel failed', err);
      socket.destroy();
    });
});
server.keepAliveTimeout = 65_000; // the host proxy pools connections
server.requestTimeout = 0; // uploads and process streams may take long
server.headersTimeout = 60_000;
server.on('clientError', (_err, socket) => {
  if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
  else socket.destroy();
});
const where = listenFd === undefined ? socketPath : `fd ${listenFd}`;
server.on('error', (err) => {
  logError(`cannot listen on ${where}`, err);
  process.exit(1);
});
server.listen(listenFd === undefined ? socketPath : { fd: listenFd }, () => {
  if (listenFd === undefined) {
    try {
      chmodSync(socketPath, 0o600);
    } catch (err) {
      logError('chmod socket', err);
    }
  }
  if (process.env.SANDLOT_AGENT_DEBUG) {
    const t0 = (globalThis as { __sandlotT0?: number }).__sandlotT0 ?? 0;
    const now = performance.now();
    logInfo(`listening on ${where}: ${now.toFixed(1)} ms after process start (node bootstrap ${t0.toFixed(1)} ms + agent ${(now - t0).toFixed(1)} ms)`);
  }
  if (!refusal) setImmediate(loadHandler);
  // Tells the init (sandlot-exec --init) this agent started: only such an agent is started
  // again when it dies. Closed at once, before any command could inherit it.
  const readyFd = Number(process.env.SANDLOT_AGENT_READY_FD);
  delete process.env.SANDLOT_AGENT_READY_FD;
  if (Number.isInteger(readyFd) && readyFd > 2) {
    try {
      writeSync(readyFd, 'r');
      closeSync(readyFd);
    } catch (err) {
      logError('cannot tell the init the agent started', err);
    }
  }
});
