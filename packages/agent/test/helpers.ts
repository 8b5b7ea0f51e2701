// Starts the built agent (dist/agent.mjs) on the host with a private socket and drives it.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { Code, ConnectError, createClient, type Client } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { Filesystem, Process } from '@sandlot/envd-proto';

export const AGENT = fileURLToPath(new URL('../dist/agent.mjs', import.meta.url));

export interface Agent {
  dir: string;
  socket: string;
  /** The access token the agent was given (sent by `fs`, `process`, `client()` and `http()` unless `token: false`). */
  token: string;
  proc: ChildProcess;
  stderr: () => string;
  process: Client<typeof Process>;
  fs: Client<typeof Filesystem>;
  client(opts?: ClientOpts): { process: Client<typeof Process>; fs: Client<typeof Filesystem> };
  http(opts: HttpOpts): Promise<HttpResult>;
  stop(): Promise<void>;
}

export interface ClientOpts {
  headers?: Record<string, string>;
  binary?: boolean;
  /** false: send no X-Access-Token (an explicit x-access-token header also replaces the agent's). */
  token?: false;
}

export interface HttpOpts {
  /** false: send no X-Access-Token (an explicit x-access-token header also replaces the agent's). */
  token?: false;
  method?: string;
  path: string;
  headers?: Record<string, string>;
  body?: Buffer | string | AsyncIterable<Buffer>;
}
export interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/**
 * Starts the agent with `config` (defaultUser root and a random accessToken unless given), or with
 * `configText` as its config file's content (null: no config file at all; a function makes it).
 */
export async function startAgent(config: Record<string, unknown> = {}, configText?: string | null | ((path: string) => void)): Promise<Agent> {
  if (!existsSync(AGENT)) throw new Error(`${AGENT} is missing: run npm run build -w @sandlot/agent first`);
  const dir = mkdtempSync(join(tmpdir(), 'sandlot-agent-test-'));
  const socket = join(dir, 'run', 'agent.sock');
  const cfgPath = join(dir, 'agent.json');
  const token = typeof config.accessToken === 'string' ? config.accessToken : 'test-' + randomBytes(16).toString('hex');
  if (configText === undefined) writeFileSync(cfgPath, JSON.stringify({ defaultUser: 'root', accessToken: token, ...config }));
  else if (typeof configText === 'function') configText(cfgPath);
  else if (configText !== null) writeFileSync(cfgPath, configText);
  const proc = spawn(process.execPath, [AGENT], {
    env: { ...process.env, SANDLOT_AGENT_SOCKET: socket, SANDLOT_AGENT_CONFIG: cfgPath },
    stdio: ['ignore', 'inherit', 'pipe'],
  });
  let err = '';
  proc.stderr!.on('data', (d) => (err += d));
  // The socket file exists from bind(), a moment before listen(): only an answer shows it is up.
  const deadline = Date.now() + 5000;
  while (!(await answersHealth(socket))) {
    if (Date.now() > deadline || proc.exitCode !== null) throw new Error(`agent did not start: ${err}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  const withToken = (headers: Record<string, string> = {}, send: boolean) =>
    send && !Object.keys(headers).some((k) => k.toLowerCase() === 'x-access-token') ? { 'x-access-token': token, ...headers } : headers;
  const client = (opts: ClientOpts = {}) => {
    const headers = withToken(opts.headers, opts.token !== false);
    const transport = createConnectTransport({
      baseUrl: 'http://localhost',
      httpVersion: '1.1',
      useBinaryFormat: opts.binary ?? false,
      nodeOptions: { socketPath: socket },
      interceptors: [
        (next) => (req) => {
          for (const [k, v] of Object.entries(headers)) req.header.set(k, v);
          return next(req);
        },
      ],
    });
    return { process: createClient(Process, transport), fs: createClient(Filesystem, transport) };
  };
  const def = client();
  return {
    dir,
    socket,
    token,
    proc,
    stderr: () => err,
    process: def.process,
    fs: def.fs,
    client,
    http: (o) => httpRequest(socket, { ...o, headers: withToken(o.headers, o.token !== false) }),
    async stop() {
      if (proc.exitCode === null) {
        proc.kill('SIGTERM');
        await new Promise((r) => proc.once('exit', r));
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function httpRequest(socketPath: string, o: HttpOpts): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method: o.method ?? 'GET', path: o.path, headers: o.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    const b = o.body;
    if (b === undefined) req.end();
    else if (typeof b === 'string' || Buffer.isBuffer(b)) req.end(b);
    else {
      (async () => {
        for await (const chunk of b) {
          if (!req.write(chunk)) await new Promise((r) => req.once('drain', r));
        }
        req.end();
      })().catch(reject);
    }
  });
}

/** Collects a Start/Connect stream into stdout/stderr/pty text + end event. */
export async function collect(stream: AsyncIterable<{ event?: { event: { case: string | undefined; value?: unknown } } }>) {
  let pid = 0;
  let stdout = '';
  let stderr = '';
  let pty = '';
  let end: { exitCode: number; exited: boolean; status: string; error?: string } | undefined;
  const kinds: string[] = [];
  for await (const msg of stream) {
    const ev = msg.event?.event;
    if (!ev?.case) continue;
    kinds.push(ev.case);
    if (ev.case === 'start') pid = (ev.value as { pid: number }).pid;
    if (ev.case === 'data') {
      const out = (ev.value as { output: { case: string; value: Uint8Array } }).output;
      const text = Buffer.from(out.value).toString();
      if (out.case === 'stdout') stdout += text;
      if (out.case === 'stderr') stderr += text;
      if (out.case === 'pty') pty += text;
    }
    if (ev.case === 'end') {
      const e = ev.value as NonNullable<typeof end>;
      end = { exitCode: e.exitCode, exited: e.exited, status: e.status, error: e.error };
    }
  }
  return { pid, stdout, stderr, pty, end, kinds };
}

export function basicAuth(user: string): string {
  return 'Basic ' + Buffer.from(`${user}:`).toString('base64');
}

/** The Connect error code a call fails with (the test fails if it succeeds). */
export async function code(p: Promise<unknown>): Promise<Code> {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err).code;
  }
  assert.fail('expected an error');
}

function answersHealth(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ socketPath, path: '/health', timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 204);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
    req.end();
  });
}
