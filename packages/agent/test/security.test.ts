// What the agent refuses: running without its configuration, changing its token, file operations
// that would wedge it, and watches without bound.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, chownSync, constants, existsSync, lstatSync, mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Code } from '@connectrpc/connect';
import { code, startAgent, type Agent } from './helpers.js';

const json = (body: Buffer) => JSON.parse(body.toString());

describe('an agent whose configuration cannot be used fails closed', () => {
  const cases: [string, Parameters<typeof startAgent>[1], RegExp][] = [
    ['missing', null, /configuration .*agent\.json is missing/],
    ['unreadable', (path) => mkdirSync(path), /cannot read its configuration .*agent\.json: EISDIR/],
    ['not JSON', '{"accessToken": "t",', /configuration .*agent\.json is invalid: .*JSON/],
    ['an env var name with =', JSON.stringify({ accessToken: 't', envVars: { 'A=B': 'x' } }), /is invalid: invalid env var name or value: A=B/],
    ['a wrong type', JSON.stringify({ accessToken: 't', defaultUser: 7 }), /is invalid: defaultUser must be a string/],
    ['no accessToken', JSON.stringify({ defaultUser: 'root' }), /is invalid: it has no accessToken/],
    ['an empty accessToken', JSON.stringify({ defaultUser: 'root', accessToken: '' }), /is invalid: it has no accessToken/],
  ];
  for (const [what, text, message] of cases) {
    it(`${what}: only GET /health answers; everything else is 503 naming the problem`, async () => {
      const agent = await startAgent({}, text);
      try {
        assert.equal((await agent.http({ path: '/health', token: false })).status, 204);
        const shadow = '/files?path=%2Fetc%2Fshadow&username=root';
        for (const r of [
          await agent.http({ path: shadow, token: false }),
          await agent.http({ path: shadow, headers: { 'x-access-token': '' } }),
          await agent.http({ path: '/envs', token: false }),
          await agent.http({ method: 'POST', path: '/init', token: false, headers: { 'content-type': 'application/json' }, body: '{"accessToken":"mine"}' }),
          await agent.http({ method: 'POST', path: '/files?path=%2Ftmp%2Fx', token: false, body: 'x' }),
          await agent.http({ method: 'POST', path: '/process.Process/List', token: false, headers: { 'content-type': 'application/json' }, body: '{}' }),
        ]) {
          assert.equal(r.status, 503, r.body.toString());
          assert.match(json(r.body).message, /refuses every request/);
          assert.match(json(r.body).message, message);
        }
        assert.match(agent.stderr(), /refusing every request but GET \/health/);
      } finally {
        await agent.stop();
      }
    });
  }

});

describe('POST /init cannot change the access token', () => {
  let agent: Agent;
  before(async () => {
    agent = await startAgent({ envVars: { KEPT: 'yes' } });
  });
  after(async () => {
    await agent?.stop();
  });
  const init = (body: unknown, token?: false) =>
    agent.http({ method: 'POST', path: '/init', token, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const envs = async () => json((await agent.http({ path: '/envs' })).body) as Record<string, string>;

  it('refuses to blank or replace it (403, nothing applied), and accepts the current one as a no-op', async () => {
    for (const accessToken of ['', 'another-token', agent.token + 'x', agent.token.slice(1)]) {
      const r = await init({ accessToken, envVars: { SNEAKED: 'in' }, defaultUser: 'nobody' });
      assert.equal(r.status, 403, `accessToken ${JSON.stringify(accessToken)}: ${r.body}`);
      assert.match(json(r.body).message, /accessToken cannot be changed/);
    }
    // Nothing of a refused request was applied, and the old token still opens the agent.
    const env = await envs();
    assert.equal(env.SNEAKED, undefined);
    assert.equal(env.KEPT, 'yes');
    assert.equal(env.HOME, '/root', 'the default user is still root');
    assert.equal((await agent.http({ path: '/envs', headers: { 'x-access-token': 'another-token' } })).status, 401);
    assert.equal((await agent.http({ path: '/envs', headers: { 'x-access-token': '' } })).status, 401);

    // E2B's orchestrator repeats the token it gave: accepted, the other fields applied.
    const same = await init({ accessToken: agent.token, envVars: { ADDED: '1' }, timestamp: '2026-01-01T00:00:00Z' });
    assert.equal(same.status, 204, same.body.toString());
    assert.equal((await envs()).ADDED, '1');
    const without = await init({ envVars: { ALSO: '2' }, accessToken: null });
    assert.equal(without.status, 204, without.body.toString());
    assert.equal((await envs()).ALSO, '2');
  });

  it('needs the token itself, and validates its other fields as before', async () => {
    assert.equal((await init({ accessToken: agent.token }, false)).status, 401);
    const bad = await init({ accessToken: agent.token, envVars: { 'A=B': 'x' } });
    assert.equal(bad.status, 400);
    assert.match(json(bad.body).message, /invalid env var name/);
    assert.equal((await init({ accessToken: 5 })).status, 400);
    assert.equal((await envs())['A=B'], undefined);
  });
});

/** Fails instead of waiting for ever: what a wedged agent would make the test do. */
function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

describe('FIFOs, sockets and devices cannot wedge file operations', () => {
  let agent: Agent;
  let dir: string;
  let fifo: string;
  let sock: string;
  let listener: Server;
  before(async () => {
    agent = await startAgent();
    dir = join(agent.dir, 'special');
    mkdirSync(dir);
    fifo = join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    sock = join(dir, 'sock');
    listener = createServer();
    await new Promise<void>((r) => listener.listen(sock, r));
  });
  after(async () => {
    listener?.close();
    await agent?.stop();
  });

  const q = (params: Record<string, string>) => new URLSearchParams(params).toString();
  const download = (path: string) => within(3000, `GET /files ${path}`, agent.http({ path: '/files?' + q({ path }) }));
  const upload = (path: string, body = 'x') =>
    within(3000, `POST /files ${path}`, agent.http({ method: 'POST', path: '/files?' + q({ path }), headers: { 'content-type': 'application/octet-stream' }, body }));
  const uploadMultipart = (path: string) => {
    const b = 'bnd';
    const body = `--${b}\r\nContent-Disposition: form-data; name="file"; filename="${path}"\r\n\r\nx\r\n--${b}--\r\n`;
    return within(3000, `POST /files multipart ${path}`, agent.http({ method: 'POST', path: '/files', headers: { 'content-type': `multipart/form-data; boundary=${b}` }, body }));
  };
  /** A normal round trip through /files and the Connect filesystem: works, quickly. */
  async function stillWorks(i: number) {
    const f = join(dir, `ok-${i}.txt`);
    assert.equal((await upload(f, `ok ${i}`)).status, 200);
    assert.equal((await download(f)).body.toString(), `ok ${i}`);
    assert.equal((await within(3000, 'Stat', agent.fs.stat({ path: f }))).entry?.size, BigInt(`ok ${i}`.length));
  }

  it('GET /files of a FIFO, a socket or a device: 400 at once, and file operations go on (more times than libuv has threads)', async () => {
    const kinds: [string, RegExp][] = [
      [fifo, /is a FIFO, not a regular file/],
      [sock, /is a socket, not a regular file/],
      ['/dev/zero', /is a character device, not a regular file/],
      ['/dev/urandom', /is a character device, not a regular file/],
    ];
    for (let i = 0; i < 6; i++) {
      for (const [path, message] of kinds) {
        const r = await download(path);
        assert.equal(r.status, 400, `${path}: ${r.body}`);
        assert.match(json(r.body).message, message);
      }
    }
    // A symlink to a FIFO is the FIFO.
    symlinkSync(fifo, join(dir, 'link-to-fifo'));
    assert.equal((await download(join(dir, 'link-to-fifo'))).status, 400);
    for (let i = 0; i < 6; i++) await stillWorks(i);
  });

  it('POST /files onto a FIFO (read or not), a socket or a device: 400, nothing written, and file operations go on', async () => {
    const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK); // a FIFO someone reads
    try {
      for (let i = 0; i < 6; i++) {
        for (const [path, message] of [
          [fifo, /is a FIFO, not a regular file/],
          [sock, /is a socket, not a regular file/],
          ['/dev/null', /is a character device, not a regular file/],
        ] as const) {
          for (const r of [await upload(path), await uploadMultipart(path)]) {
            assert.equal(r.status, 400, `${path}: ${r.body}`);
            assert.match(json(r.body).message, message);
          }
        }
      }
    } finally {
      closeSync(reader);
    }
    for (let i = 0; i < 6; i++) {
      const r = await upload(fifo);
      assert.equal(r.status, 400, 'a FIFO nobody reads: refused too');
    }
    assert.ok(statSync(fifo).isFIFO() && statSync('/dev/null').isCharacterDevice());
    for (let i = 0; i < 6; i++) await stillWorks(i);
  });

  it('Move across filesystems copies like mv (owner, mode, times, symlinks), never opening a FIFO, and refuses a tree holding one', async () => {
    if (!existsSync('/dev/shm') || statSync('/dev/shm').dev === statSync(agent.dir).dev) return;
    const src = mkdtempSync('/dev/shm/sandlot-agent-move-');
    try {
      mkdirSync(join(src, 'tree/sub'), { recursive: true });
      writeFileSync(join(src, 'tree/sub/file'), 'contents');
      chmodSync(join(src, 'tree/sub/file'), 0o640);
      chownSync(join(src, 'tree/sub/file'), 1234, 1235);
      utimesSync(join(src, 'tree/sub/file'), 1_000_000, 1_000_000);
      symlinkSync('sub/file', join(src, 'tree/link'));
      const dest = join(dir, 'moved');
      const { entry } = await within(3000, 'Move', agent.fs.move({ source: join(src, 'tree'), destination: dest }));
      assert.equal(entry?.path, dest);
      assert.equal(readFileSync(join(dest, 'sub/file'), 'utf8'), 'contents');
      const st = statSync(join(dest, 'sub/file'));
      assert.deepEqual([st.mode & 0o7777, st.uid, st.gid, st.mtimeMs], [0o640, 1234, 1235, 1_000_000_000]);
      assert.equal(readlinkSync(join(dest, 'link')), 'sub/file');
      assert.ok(!existsSync(join(src, 'tree')), 'the source is gone');

      mkdirSync(join(src, 'with-fifo'));
      writeFileSync(join(src, 'with-fifo/a'), 'a');
      execFileSync('mkfifo', [join(src, 'with-fifo/z-fifo')]);
      const err = await within(3000, 'Move', code(agent.fs.move({ source: join(src, 'with-fifo'), destination: join(dir, 'moved-fifo') })));
      assert.equal(err, Code.InvalidArgument);
      assert.ok(lstatSync(join(src, 'with-fifo/z-fifo')).isFIFO(), 'the source stays');
      for (let i = 0; i < 6; i++) await stillWorks(i);
    } finally {
      rmSync(src, { recursive: true, force: true });
    }
  });
});

describe('watches are bounded', () => {
  let agent: Agent;
  let dir: string;
  before(async () => {
    agent = await startAgent();
    dir = join(agent.dir, 'watched');
    mkdirSync(dir);
  });
  after(async () => {
    await agent?.stop();
  });

  const MAX_WATCHES = 512; // watch-limits.ts

  /** Opens a WatchDir stream and waits for its start message; abort() ends it. */
  async function openWatch(path = dir) {
    const ac = new AbortController();
    const it = agent.fs.watchDir({ path }, { signal: ac.signal })[Symbol.asyncIterator]();
    const first = await it.next();
    assert.equal(first.value?.event.case, 'start');
    return {
      abort() {
        ac.abort();
        it.next().catch(() => {});
      },
    };
  }

  it(`at most ${MAX_WATCHES} at once, WatchDir and CreateWatcher together; the next is resource_exhausted; closing one frees its slot`, async () => {
    const streams = await Promise.all(Array.from({ length: MAX_WATCHES - 12 }, () => openWatch()));
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) ids.push((await agent.fs.createWatcher({ path: dir })).watcherId);
    try {
      const refused = await code(openWatch());
      assert.equal(refused, Code.ResourceExhausted);
      assert.equal(await code(agent.fs.createWatcher({ path: dir })), Code.ResourceExhausted);
      try {
        await openWatch();
      } catch (err) {
        assert.match((err as Error).message, new RegExp(`at most ${MAX_WATCHES} at once`));
      }

      // A closed stream frees its slot (once the agent has seen it close).
      streams.pop()!.abort();
      const deadline = Date.now() + 5000;
      let again;
      while (!again) {
        again = await openWatch().catch((err) => {
          if (Date.now() > deadline) throw err;
          return new Promise<undefined>((r) => setTimeout(r, 50));
        });
      }
      streams.push(again);
      assert.equal(await code(agent.fs.createWatcher({ path: dir })), Code.ResourceExhausted);
      // So does a removed watcher, and a failed watch takes none.
      await agent.fs.removeWatcher({ watcherId: ids.pop()! });
      assert.equal(await code(openWatch(join(dir, 'missing'))), Code.NotFound);
      ids.push((await agent.fs.createWatcher({ path: dir })).watcherId);
      assert.equal(await code(openWatch()), Code.ResourceExhausted);
    } finally {
      for (const s of streams) s.abort();
      for (const watcherId of ids) await agent.fs.removeWatcher({ watcherId }).catch(() => {});
    }
    // All freed: a full set opens again.
    const deadline = Date.now() + 5000;
    for (;;) {
      try {
        (await openWatch()).abort();
        break;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  });

  /** Makes `files` files with long names in `dir` (from another process: this one must go on reading); resolves when a reading watch of `dir` has seen them all. */
  async function flood(path: string, files: number) {
    const ac = new AbortController();
    let seen = 0;
    const reading = (async () => {
      for await (const m of agent.fs.watchDir({ path }, { signal: ac.signal })) {
        if (m.event.case === 'filesystem' && ++seen === files) return;
      }
    })();
    const script = `const fs = require('fs'); for (let i = 0; i < ${files}; i++) fs.writeFileSync(${JSON.stringify(path)} + '/' + 'x'.repeat(200) + '-' + i, '')`;
    await new Promise((resolve, reject) => spawn(process.execPath, ['-e', script], { stdio: 'inherit' }).on('exit', resolve).on('error', reject));
    await within(60_000, 'the reading watch', reading);
    ac.abort();
    await new Promise((r) => setTimeout(r, 500)); // the slow watch's last batch
  }
  // Events with their entries (the slow watches) cost ~1.9 KB here, so ~4400 fill a watch's 8 MiB;
  // the reading watch's, without, ~0.6 KB: 10 000 of them fit even if it lags behind them all.
  const FILES = 10_000;
  const rssKb = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${agent.proc.pid}/status`, 'utf8'))![1]);

  it('a WatchDir stream whose client does not read ends with resource_exhausted instead of queueing without bound', async () => {
    const before = rssKb();
    const busy = join(agent.dir, 'busy');
    mkdirSync(busy);
    const slow = agent.fs.watchDir({ path: busy, includeEntry: true })[Symbol.asyncIterator]();
    assert.equal((await slow.next()).value?.event.case, 'start');
    await flood(busy, FILES);
    const rss = rssKb();
    let got = 0;
    const ended = await within(60_000, 'the slow watch', (async () => {
      try {
        for (;;) {
          const r = await slow.next();
          if (r.done) return 'ended without an error';
          if (r.value.event.case === 'filesystem' && ++got === FILES) return `all ${FILES} events queued`;
        }
      } catch (err) {
        return err as Error;
      }
    })());
    console.log(`# slow watch: ${got} events delivered of ${FILES}; agent RSS ${before} kB before, ${rss} kB with them queued`);
    assert.ok(ended instanceof Error, String(ended));
    assert.equal(await code(Promise.reject(ended)), Code.ResourceExhausted);
    assert.match(ended.message, /queued more events than its client read/);
    // The agent goes on watching.
    (await openWatch(busy)).abort();
  });

  it('a CreateWatcher watcher nobody polls stops at its bound: its events, then resource_exhausted, then it is gone', async () => {
    const busy = join(agent.dir, 'busy-polled');
    mkdirSync(busy);
    const { watcherId } = await agent.fs.createWatcher({ path: busy, includeEntry: true });
    await flood(busy, FILES);
    const { events } = await agent.fs.getWatcherEvents({ watcherId });
    console.log(`# unpolled watcher: ${events.length} events kept of ${FILES}`);
    assert.ok(events.length > 1000 && events.length < FILES, `${events.length} events`);
    assert.equal(await code(agent.fs.getWatcherEvents({ watcherId })), Code.ResourceExhausted);
    assert.equal(await code(agent.fs.getWatcherEvents({ watcherId })), Code.NotFound);
  });
});
