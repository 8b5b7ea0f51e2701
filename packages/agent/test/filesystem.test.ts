import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync, existsSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Code, ConnectError } from '@connectrpc/connect';
import { EventType, FileType } from '@sandlot/envd-proto';
import { basicAuth, startAgent, type Agent, code } from './helpers.js';

let agent: Agent;
let root: string;
before(async () => {
  agent = await startAgent();
  root = join(agent.dir, 'fs');
  mkdirSync(root);
});
after(async () => {
  await agent?.stop();
});

const show = (evs: { name: string; type: EventType }[]) => evs.map((e) => `${e.name}:${EventType[e.type]}`).join(',');

/** Watches `path` recursively: the events so far, a wait for one of them, and stop (which returns them). */
async function watching(path: string, includeEntry = false) {
  const ac = new AbortController();
  const events: { name: string; type: EventType; entry?: unknown }[] = [];
  let resolveStart!: () => void;
  const started = new Promise<void>((r) => (resolveStart = r));
  const done = (async () => {
    try {
      for await (const msg of agent.fs.watchDir({ path, recursive: true, includeEntry }, { signal: ac.signal })) {
        if (msg.event.case === 'start') resolveStart();
        if (msg.event.case === 'filesystem') events.push(msg.event.value);
      }
    } catch (err) {
      if (ConnectError.from(err).code !== Code.Canceled) throw err;
    }
  })();
  await started;
  return {
    events,
    async until(name: string, type: EventType) {
      const deadline = Date.now() + 3000;
      while (Date.now() < deadline && !events.some((e) => e.name === name && e.type === type)) await new Promise((r) => setTimeout(r, 20));
    },
    async stop() {
      ac.abort();
      await done;
      return events;
    },
  };
}


describe('filesystem.Filesystem', () => {
  it('stats files, dirs and symlinks with full EntryInfo', async () => {
    const f = join(root, 'a.txt');
    writeFileSync(f, 'hello');
    chmodSync(f, 0o644);
    const { entry } = await agent.fs.stat({ path: f });
    assert.ok(entry);
    assert.equal(entry.name, 'a.txt');
    assert.equal(entry.type, FileType.FILE);
    assert.equal(entry.path, f);
    assert.equal(entry.size, 5n);
    assert.equal(entry.mode, 0o644);
    assert.equal(entry.permissions, '-rw-r--r--');
    assert.equal(entry.owner, 'root');
    assert.equal(entry.group, 'root');
    assert.ok(entry.modifiedTime && Math.abs(Number(entry.modifiedTime.seconds) - Date.now() / 1000) < 60);
    assert.equal(entry.symlinkTarget, undefined);

    const d = (await agent.fs.stat({ path: root })).entry!;
    assert.equal(d.type, FileType.DIRECTORY);
    assert.match(d.permissions, /^d[rwx-]{9}$/);

    symlinkSync(f, join(root, 'link'));
    const l = (await agent.fs.stat({ path: join(root, 'link') })).entry!;
    assert.equal(l.type, FileType.FILE);
    assert.equal(l.symlinkTarget, f);
    assert.match(l.permissions, /^L/);

    assert.equal(await code(agent.fs.stat({ path: join(root, 'missing') })), Code.NotFound);
    assert.equal(await code(agent.fs.stat({ path: '' })), Code.InvalidArgument);
    assert.equal(await code(agent.fs.stat({ path: '/a\0b' })), Code.InvalidArgument);
  });

  it('resolves relative and ~ paths against the home directory', async () => {
    const { entry } = await agent.fs.stat({ path: '~' });
    assert.equal(entry?.path, '/root');
    const rel = await agent.fs.stat({ path: '.' });
    assert.equal(rel.entry?.path, '/root');
  });

  it('makeDir: mkdir -p, already_exists, invalid_argument on a file', async () => {
    const d = join(root, 'x', 'y', 'z');
    const { entry } = await agent.fs.makeDir({ path: d });
    assert.equal(entry?.type, FileType.DIRECTORY);
    assert.ok(existsSync(d));
    assert.equal(await code(agent.fs.makeDir({ path: d })), Code.AlreadyExists);
    writeFileSync(join(root, 'file'), '');
    assert.equal(await code(agent.fs.makeDir({ path: join(root, 'file') })), Code.InvalidArgument);
  });

  it('makeDir chowns new directories to the selected user', async () => {
    const { fs } = agent.client({ headers: { authorization: basicAuth('nobody') } });
    const { entry } = await fs.makeDir({ path: join(root, 'owned', 'deep') });
    assert.equal(entry?.owner, 'nobody');
    assert.equal((await agent.fs.stat({ path: join(root, 'owned') })).entry?.owner, 'nobody');
  });

  it('listDir with depth, symlinked root; errors', async () => {
    const d = join(root, 'list');
    mkdirSync(join(d, 'sub', 'subsub'), { recursive: true });
    writeFileSync(join(d, 'b.txt'), 'b');
    writeFileSync(join(d, 'sub', 'c.txt'), 'c');
    writeFileSync(join(d, 'sub', 'subsub', 'd.txt'), 'd');
    const one = await agent.fs.listDir({ path: d });
    assert.deepEqual(one.entries.map((e) => e.name), ['b.txt', 'sub']);
    const two = await agent.fs.listDir({ path: d, depth: 2 });
    assert.deepEqual(two.entries.map((e) => e.path), [join(d, 'b.txt'), join(d, 'sub'), join(d, 'sub', 'c.txt'), join(d, 'sub', 'subsub')]);
    symlinkSync(d, join(root, 'list-link'));
    const viaLink = await agent.fs.listDir({ path: join(root, 'list-link') });
    assert.deepEqual(viaLink.entries.map((e) => e.path), [join(root, 'list-link', 'b.txt'), join(root, 'list-link', 'sub')]);
    assert.equal(await code(agent.fs.listDir({ path: join(d, 'b.txt') })), Code.InvalidArgument);
    assert.equal(await code(agent.fs.listDir({ path: join(d, 'nope') })), Code.NotFound);
  });

  it('move and remove', async () => {
    const src = join(root, 'm1.txt');
    writeFileSync(src, 'move me');
    const dst = join(root, 'moved', 'deeper', 'm2.txt');
    const { entry } = await agent.fs.move({ source: src, destination: dst });
    assert.equal(entry?.path, dst);
    assert.equal(readFileSync(dst, 'utf8'), 'move me');
    assert.ok(!existsSync(src));
    assert.equal(await code(agent.fs.move({ source: src, destination: dst })), Code.NotFound);

    await agent.fs.remove({ path: join(root, 'moved') });
    assert.ok(!existsSync(join(root, 'moved')));
    await agent.fs.remove({ path: join(root, 'moved') }); // missing is fine
  });

  it('a watch whose deadline (Connect-Timeout-Ms, left to the server) passes ends with deadline_exceeded, as envd', async () => {
    const dir = join(root, 'deadline-watch');
    mkdirSync(dir, { recursive: true });
    const kinds: string[] = [];
    const outcome = await (async () => {
      for await (const msg of agent.fs.watchDir({ path: dir }, { headers: { 'connect-timeout-ms': '500' } })) kinds.push(msg.event.case ?? '');
      return 'ended cleanly';
    })().catch((err) => ConnectError.from(err).code);
    assert.equal(outcome, Code.DeadlineExceeded);
    assert.deepEqual(kinds, ['start']);
  });

  it('watchDir streams start, then create/write/remove events with relative names', async () => {
    const d = join(root, 'watched');
    mkdirSync(join(d, 'inner'), { recursive: true });
    const w = await watching(d, true);
    const { events, until } = w;
    writeFileSync(join(d, 'new.txt'), 'x');
    writeFileSync(join(d, 'inner', 'deep.txt'), 'y');
    await new Promise((r) => setTimeout(r, 100));
    await agent.fs.remove({ path: join(d, 'new.txt') });
    await until('new.txt', EventType.REMOVE);
    await w.stop();
    const has = (name: string, type: EventType) => events.some((e) => e.name === name && e.type === type);
    assert.ok(has('new.txt', EventType.CREATE), show(events));
    assert.ok(has('new.txt', EventType.WRITE), show(events));
    assert.ok(has(join('inner', 'deep.txt'), EventType.CREATE), show(events));
    assert.ok(has('new.txt', EventType.REMOVE), show(events));
    assert.ok(events.find((e) => e.name === 'new.txt' && e.type === EventType.CREATE)?.entry, 'includeEntry');
  });

  it('watchDir reports a move as RENAME (old name) + CREATE (new name), and a directory chown as CHMOD', async () => {
    const d = join(root, 'watched-moves');
    mkdirSync(d);
    writeFileSync(join(d, 'before.txt'), 'existed before the watch');
    const w = await watching(d);
    const { events, until } = w;
    await agent.fs.makeDir({ path: join(d, 'sub') }); // mkdir, then chown to the user
    await until('sub', EventType.CREATE);
    writeFileSync(join(d, 'sub', 'a.txt'), 'a');
    await until(join('sub', 'a.txt'), EventType.CREATE);
    await agent.fs.move({ source: join(d, 'sub', 'a.txt'), destination: join(d, 'sub', 'b.txt') });
    await agent.fs.move({ source: join(d, 'before.txt'), destination: join(d, 'sub', 'after.txt') });
    await agent.fs.remove({ path: join(d, 'sub', 'b.txt') });
    await until(join('sub', 'b.txt'), EventType.REMOVE);
    await w.stop();
    const got = show(events);
    assert.equal(events.filter((e) => e.name === 'sub' && e.type === EventType.CREATE).length, 1, got);
    for (const [name, type] of [
      [join('sub', 'a.txt'), EventType.RENAME],
      [join('sub', 'b.txt'), EventType.CREATE],
      ['before.txt', EventType.RENAME],
      [join('sub', 'after.txt'), EventType.CREATE],
      [join('sub', 'b.txt'), EventType.REMOVE],
    ] as const) {
      assert.ok(events.some((e) => e.name === name && e.type === type), `${name}:${EventType[type]} in ${got}`);
    }
    assert.ok(!events.some((e) => e.name === join('sub', 'a.txt') && e.type === EventType.REMOVE), got);
  });

  it('watchDir reports what a new directory already holds, and a removed tree without ghost names', async () => {
    const d = join(root, 'watched-trees');
    mkdirSync(d);
    const w = await watching(d);
    const { events, until } = w;
    // Created faster than a watch can be set on the new directories.
    mkdirSync(join(d, 'a', 'b'), { recursive: true });
    writeFileSync(join(d, 'a', 'b', 'f'), 'x');
    await until(join('a', 'b', 'f'), EventType.CREATE);
    await agent.fs.remove({ path: join(d, 'a') });
    await until('a', EventType.REMOVE);
    await new Promise((r) => setTimeout(r, 200));
    await w.stop();
    const got = show(events);
    for (const name of ['a', join('a', 'b'), join('a', 'b', 'f')]) {
      assert.equal(events.filter((e) => e.name === name && e.type === EventType.CREATE).length, 1, `${name} created once in ${got}`);
    }
    const removed = events.filter((e) => e.type === EventType.REMOVE).map((e) => e.name).sort();
    assert.deepEqual(removed, ['a', join('a', 'b'), join('a', 'b', 'f')].sort(), got);
  });

  it('watchDir on a missing or non-directory path fails', async () => {
    const first = async (path: string) => {
      for await (const _ of agent.fs.watchDir({ path })) break;
    };
    assert.equal(await code(first(join(root, 'nope'))), Code.NotFound);
    writeFileSync(join(root, 'plain'), '');
    assert.equal(await code(first(join(root, 'plain'))), Code.InvalidArgument);
  });

  it('polling watchers: create, get events, remove', async () => {
    const d = join(root, 'polled');
    mkdirSync(d);
    const { watcherId } = await agent.fs.createWatcher({ path: d });
    writeFileSync(join(d, 'p.txt'), 'p');
    await new Promise((r) => setTimeout(r, 150));
    const { events } = await agent.fs.getWatcherEvents({ watcherId });
    assert.ok(events.some((e) => e.name === 'p.txt' && e.type === EventType.CREATE), show(events));
    await agent.fs.removeWatcher({ watcherId });
    assert.equal(await code(agent.fs.getWatcherEvents({ watcherId })), Code.NotFound);
  });
});
