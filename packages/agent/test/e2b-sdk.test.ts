// Drives the agent with the official `e2b` SDK through a tiny fake control plane + proxy,
// checking wire compatibility (Connect JSON, /files, keepalives, auth headers, errors).
import assert from 'node:assert/strict';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Sandbox, CommandExitError, NotFoundError } from 'e2b';
import { startAgent, type Agent } from './helpers.js';

const TOKEN = 'envd-token-123';
let agent: Agent;
let server: Server;
let sandbox: Sandbox;

before(async () => {
  agent = await startAgent({ accessToken: TOKEN, envVars: { FROM_CREATE: 'yes' } });
  server = createServer((req, res) => {
    if (req.method === 'POST' && /^\/v2\/sandboxes\/[^/]+\/connect$/.test(req.url ?? '')) {
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ sandboxID: 'sbxtest', templateID: 'base', clientID: 'c', envdVersion: '0.6.13', envdAccessToken: TOKEN }));
      return;
    }
    const up = request({ socketPath: agent.socket, method: req.method, path: req.url, headers: req.headers }, (ur) => {
      res.writeHead(ur.statusCode!, ur.headers);
      ur.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  sandbox = await Sandbox.connect('sbxtest', { apiUrl: url, sandboxUrl: url, apiKey: 'e2b_' + '0'.repeat(40) });
});
after(async () => {
  server?.close();
  server?.closeAllConnections();
  await agent?.stop();
});

describe('e2b SDK against the agent', () => {
  it('commands.run: output, env, exit errors', async () => {
    const r = await sandbox.commands.run('echo "hi $FROM_CREATE"; echo err >&2', { user: 'root' });
    assert.equal(r.stdout, 'hi yes\n');
    assert.equal(r.stderr, 'err\n');
    assert.equal(r.exitCode, 0);
    await assert.rejects(sandbox.commands.run('exit 4', { user: 'root' }), (e) => e instanceof CommandExitError && e.exitCode === 4);
  });

  it('background command: list, sendStdin, kill', async () => {
    const h = await sandbox.commands.run('cat', { background: true, stdin: true, user: 'root' });
    assert.ok((await sandbox.commands.list()).some((p) => p.pid === h.pid));
    await sandbox.commands.sendStdin(h.pid, 'ping\n');
    for (let i = 0; i < 150 && h.stdout !== 'ping\n'; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(h.stdout, 'ping\n');
    assert.equal(await sandbox.commands.kill(h.pid), true);
    await assert.rejects(h.wait());
    assert.equal(await sandbox.commands.kill(999999), false);
  });

  it('files: write, read, list, exists, makeDir, remove', async () => {
    const dir = `${agent.dir}/e2b`;
    assert.equal(await sandbox.files.makeDir(dir, { user: 'root' }), true);
    assert.equal(await sandbox.files.makeDir(dir, { user: 'root' }), false);
    const info = await sandbox.files.write(`${dir}/a.txt`, 'Hello World!', { user: 'root' });
    assert.equal(info.path, `${dir}/a.txt`);
    assert.equal(await sandbox.files.read(`${dir}/a.txt`, { user: 'root' }), 'Hello World!');
    await sandbox.files.write([{ path: `${dir}/b.txt`, data: 'B' }, { path: `${dir}/c/d.txt`, data: 'D' }], { user: 'root' });
    const names = (await sandbox.files.list(dir, { user: 'root' })).map((e) => e.name);
    assert.deepEqual(names, ['a.txt', 'b.txt', 'c']);
    assert.equal(await sandbox.files.exists(`${dir}/nope`, { user: 'root' }), false);
    await assert.rejects(sandbox.files.read(`${dir}/nope`, { user: 'root' }), (e) => e instanceof NotFoundError);
    await sandbox.files.remove(dir, { user: 'root' });
    assert.equal(await sandbox.files.exists(dir, { user: 'root' }), false);
  });

  it('pty: create, sendInput, resize', async () => {
    let out = '';
    const h = await sandbox.pty.create({ cols: 80, rows: 24, user: 'root', onData: (d) => {
        out += Buffer.from(d).toString();
      },
    });
    await sandbox.pty.resize(h.pid, { cols: 100, rows: 30 });
    await sandbox.pty.sendInput(h.pid, new TextEncoder().encode('stty size; exit\n'));
    const r = await h.wait();
    assert.equal(r.exitCode, 0);
    assert.match(out, /30 100/);
  });
});
