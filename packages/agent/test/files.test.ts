import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { Code, ConnectError } from '@connectrpc/connect';
import * as xattr from 'fs-xattr';
import { startAgent, type Agent } from './helpers.js';

let agent: Agent;
let root: string;
before(async () => {
  agent = await startAgent();
  root = join(agent.dir, 'files');
  mkdirSync(root);
});
after(async () => {
  await agent?.stop();
});

const q = (params: Record<string, string>) => new URLSearchParams(params).toString();

function multipart(boundary: string, parts: { name: string; filename?: string; data: Buffer | string }[]): Buffer {
  const chunks: Buffer[] = [];
  for (const p of parts) {
    const fn = p.filename !== undefined ? `; filename="${p.filename}"` : '';
    chunks.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${p.name}"${fn}\r\nContent-Type: application/octet-stream\r\n\r\n`));
    chunks.push(Buffer.from(p.data));
    chunks.push(Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return Buffer.concat(chunks);
}

/** Streams a deterministic pseudo-random body of `size` bytes in odd-sized chunks, hashing it. */
function bigBody(size: number, prefix: Buffer, suffix: Buffer) {
  const hash = createHash('sha256');
  const block = randomBytes(1 << 20);
  async function* gen() {
    yield prefix;
    let left = size;
    let i = 0;
    while (left > 0) {
      const n = Math.min(left, 65_521 + (i++ % 7) * 1000);
      const off = (size - left) % (block.length - n);
      const c = block.subarray(off, off + n);
      hash.update(c);
      left -= n;
      yield Buffer.from(c);
    }
    yield suffix;
  }
  return { gen, digest: () => hash.digest('hex') };
}

/** Sends a hand-written HTTP/1.1 request (head + body) over the agent's socket; returns the whole response. */
function rawUpload(head: string, body: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect(agent.socket);
    const chunks: Buffer[] = [];
    sock.on('data', (c) => chunks.push(c));
    sock.on('end', () => resolve(Buffer.concat(chunks).toString()));
    sock.on('error', reject);
    sock.write(Buffer.concat([Buffer.from(head), body]));
  });
}

function vmHWMkB(pid: number): number {
  const m = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]);
}

describe('envd HTTP', () => {
  it('stores X-Metadata-* headers as user.e2b.* xattrs, returns them, and replaces them on the next write', async () => {
    const path = join(root, 'meta.txt');
    const up = (headers: Record<string, string>, body = 'x') =>
      agent.http({ method: 'POST', path: `/files?${q({ path })}`, headers: { 'content-type': 'application/octet-stream', ...headers }, body });
    const r = await up({ 'X-Metadata-Owner': 'alice', 'x-metadata-stage': 'draft' });
    assert.equal(r.status, 200, r.body.toString());
    assert.deepEqual(JSON.parse(r.body.toString()), [{ path, name: 'meta.txt', type: 'file', metadata: { owner: 'alice', stage: 'draft' } }]);
    assert.deepEqual((await agent.fs.stat({ path })).entry?.metadata, { owner: 'alice', stage: 'draft' });
    // Real extended attributes, where other tools see them.
    assert.deepEqual(xattr.listAttributesSync(path).sort(), ['user.e2b.owner', 'user.e2b.stage']);
    assert.equal(xattr.getAttributeSync(path, 'user.e2b.owner').toString(), 'alice');

    // The next write's metadata replaces it: keys it does not send are gone.
    assert.equal((await up({ 'x-metadata-stage': 'final' }, 'y')).status, 200);
    assert.deepEqual((await agent.fs.stat({ path })).entry?.metadata, { stage: 'final' });
    assert.equal(readFileSync(path, 'utf8'), 'y');
    const listed = (await agent.fs.listDir({ path: root })).entries.find((e) => e.name === 'meta.txt');
    assert.deepEqual(listed?.metadata, { stage: 'final' });

    // Refused before anything is written: too big (the user.e2b. prefix counts), non-ASCII, too long a key.
    const tooBig = await up({ 'x-metadata-big': 'v'.repeat(4096 - 'user.e2b.big'.length + 1) }, 'z');
    assert.equal(tooBig.status, 400);
    assert.match(JSON.parse(tooBig.body.toString()).message, /at most 4096/);
    // Within envd's limit, but the filesystem's own xattr space can be smaller (ext4: one block per inode).
    assert.equal((await up({ 'x-metadata-big': 'v'.repeat(3000) }, 'y')).status, 200);
    assert.equal((await up({ 'x-metadata-ctl': 'a\tb' }, 'z')).status, 400);
    const longKey = await up({ [`x-metadata-${'k'.repeat(247)}`]: 'v' }, 'z');
    assert.equal(longKey.status, 400);
    assert.match(JSON.parse(longKey.body.toString()).message, /at most 246/);
    assert.equal((await up({ [`x-metadata-${'k'.repeat(246)}`]: 'v' }, 'y')).status, 200, 'a 246-byte key');
    assert.equal(readFileSync(path, 'utf8'), 'y', 'a refused upload writes nothing');
    assert.deepEqual(Object.keys((await agent.fs.stat({ path })).entry!.metadata), ['k'.repeat(246)]);

    // An upload without metadata clears it; the response then has none.
    const plain = await up({}, 'w');
    assert.deepEqual(JSON.parse(plain.body.toString()), [{ path, name: 'meta.txt', type: 'file' }]);
    assert.deepEqual((await agent.fs.stat({ path })).entry?.metadata, {});
    assert.deepEqual(xattr.listAttributesSync(path).filter((n) => n.startsWith('user.e2b.')), []);
  });

  it('metadata: a repeated header keeps its first value; multipart uploads give every file the same; other xattrs stay', async () => {
    const dir = join(root, 'meta-multi');
    mkdirSync(dir);
    const a = join(dir, 'a.txt');
    writeFileSync(a, 'old');
    xattr.setAttributeSync(a, 'user.other', 'kept');
    xattr.setAttributeSync(a, 'user.e2b.stale', 'gone');
    const boundary = 'meta-boundary';
    const body = multipart(boundary, [
      { name: 'file', filename: a, data: 'A' },
      { name: 'file', filename: join(dir, 'b.txt'), data: 'B' },
    ]);
    // node:http joins a repeated header into one value; raw header lines keep it repeated.
    const raw = await rawUpload(`POST /files HTTP/1.1\r\nHost: x\r\nX-Access-Token: ${agent.token}\r\nContent-Type: multipart/form-data; boundary=${boundary}\r\nX-Metadata-Tag: first\r\nX-Metadata-Tag: second\r\nX-Metadata-Empty:\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`, body);
    assert.match(raw, /^HTTP\/1.1 200/, raw);
    const files = JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4));
    assert.deepEqual(files.map((f: { metadata?: unknown }) => f.metadata), [{ tag: 'first', empty: '' }, { tag: 'first', empty: '' }]);
    for (const f of [a, join(dir, 'b.txt')]) assert.deepEqual((await agent.fs.stat({ path: f })).entry?.metadata, { tag: 'first', empty: '' }, f);
    assert.equal(xattr.getAttributeSync(a, 'user.other').toString(), 'kept', 'only user.e2b.* attributes are replaced');
  });

  it('metadata set out of band shows on files, directories and symlinks to them; watch entries carry it', async () => {
    const dir = join(root, 'meta-oob');
    mkdirSync(dir);
    xattr.setAttributeSync(dir, 'user.e2b.kind', 'folder');
    xattr.setAttributeSync(dir, 'user.unrelated', 'x');
    const f = join(dir, 'f.txt');
    writeFileSync(f, 'f');
    xattr.setAttributeSync(f, 'user.e2b.note', 'café');
    symlinkSync(f, join(dir, 'link'));
    assert.deepEqual((await agent.fs.stat({ path: dir })).entry?.metadata, { kind: 'folder' });
    assert.deepEqual((await agent.fs.stat({ path: join(dir, 'link') })).entry?.metadata, { note: 'café' });
    const entries = (await agent.fs.listDir({ path: dir })).entries;
    assert.deepEqual(Object.fromEntries(entries.map((e) => [e.name, e.metadata])), { 'f.txt': { note: 'café' }, link: { note: 'café' } });
    symlinkSync(join(dir, 'missing'), join(dir, 'dangling'));
    assert.deepEqual((await agent.fs.stat({ path: join(dir, 'dangling') })).entry?.metadata, {});

    const ac = new AbortController();
    const seen: { name: string; metadata?: Record<string, string> }[] = [];
    let started!: () => void;
    const startedP = new Promise<void>((r) => (started = r));
    const done = (async () => {
      try {
        for await (const msg of agent.fs.watchDir({ path: dir, includeEntry: true }, { signal: ac.signal })) {
          if (msg.event.case === 'start') started();
          if (msg.event.case === 'filesystem') seen.push({ name: msg.event.value.name, metadata: msg.event.value.entry?.metadata });
        }
      } catch (err) {
        if (ConnectError.from(err).code !== Code.Canceled) throw err;
      }
    })();
    await startedP;
    const w = join(dir, 'watched.txt');
    const r = await agent.http({ method: 'POST', path: `/files?${q({ path: w })}`, headers: { 'content-type': 'application/octet-stream', 'x-metadata-k': 'v' }, body: 'w' });
    assert.equal(r.status, 200);
    const deadline = Date.now() + 3000;
    while (Date.now() < deadline && !seen.some((e) => e.name === 'watched.txt' && e.metadata?.k === 'v')) await new Promise((res) => setTimeout(res, 20));
    ac.abort();
    await done;
    assert.ok(seen.some((e) => e.name === 'watched.txt' && e.metadata?.k === 'v'), JSON.stringify(seen));
  });

  it('GET /health → 204, /envs → map, unknown → 404 JSON', async () => {
    assert.equal((await agent.http({ path: '/health' })).status, 204);
    const envs = await agent.http({ path: '/envs' });
    assert.equal(envs.status, 200);
    assert.equal(JSON.parse(envs.body.toString()).HOME, '/root');
    const nf = await agent.http({ path: '/nope' });
    assert.equal(nf.status, 404);
    assert.equal(JSON.parse(nf.body.toString()).code, 404);
  });

  it('multipart upload (path query and filename paths) then download', async () => {
    const b = 'xXx-boundary-123';
    const target = join(root, 'new', 'dir', 'one.txt');
    const r = await agent.http({
      method: 'POST',
      path: '/files?' + q({ path: target }),
      headers: { 'content-type': `multipart/form-data; boundary=${b}` },
      body: multipart(b, [{ name: 'file', filename: 'one.txt', data: 'first\r\n--xXx-boundary-12 not quite' }]),
    });
    assert.equal(r.status, 200, r.body.toString());
    assert.deepEqual(JSON.parse(r.body.toString()), [{ path: target, name: 'one.txt', type: 'file' }]);
    assert.equal(readFileSync(target, 'utf8'), 'first\r\n--xXx-boundary-12 not quite');

    const two = [join(root, 'm', 'a.bin'), join(root, 'm', 'b.bin')];
    const r2 = await agent.http({
      method: 'POST',
      path: '/files',
      headers: { 'content-type': `multipart/form-data; boundary="${b}"` },
      body: multipart(b, [
        { name: 'file', filename: two[0], data: 'A' },
        { name: 'other', data: 'ignored' },
        { name: 'file', filename: two[1], data: '' },
      ]),
    });
    assert.equal(r2.status, 200, r2.body.toString());
    assert.deepEqual(JSON.parse(r2.body.toString()).map((x: { path: string }) => x.path), two);
    assert.equal(readFileSync(two[0], 'utf8'), 'A');
    assert.equal(readFileSync(two[1], 'utf8'), '');

    const d = await agent.http({ path: '/files?' + q({ path: target }) });
    assert.equal(d.status, 200);
    assert.equal(d.headers['content-type'], 'application/octet-stream');
    assert.match(String(d.headers['content-disposition']), /filename="one.txt"/);
    assert.equal(d.body.toString(), 'first\r\n--xXx-boundary-12 not quite');

    const rng = await agent.http({ path: '/files?' + q({ path: target }), headers: { range: 'bytes=2-4' } });
    assert.equal(rng.status, 206);
    assert.equal(rng.body.toString(), 'rst');
  });

  it('octet-stream upload, gzip, relative path, file owner', async () => {
    const r = await agent.http({
      method: 'POST',
      path: '/files?' + q({ path: join(root, 'raw.bin'), username: 'nobody' }),
      headers: { 'content-type': 'application/octet-stream' },
      body: Buffer.from([0, 1, 2, 255]),
    });
    assert.equal(r.status, 200, r.body.toString());
    assert.deepEqual([...readFileSync(join(root, 'raw.bin'))], [0, 1, 2, 255]);
    const nobodyUid = Number(/^nobody:[^:]*:(\d+):/m.exec(readFileSync('/etc/passwd', 'utf8'))![1]);
    assert.equal(statSync(join(root, 'raw.bin')).uid, nobodyUid);

    const gz = await agent.http({
      method: 'POST',
      path: '/files?' + q({ path: join(root, 'gz.txt') }),
      headers: { 'content-type': 'application/octet-stream', 'content-encoding': 'gzip' },
      body: gzipSync('zipped!'),
    });
    assert.equal(gz.status, 200, gz.body.toString());
    assert.equal(readFileSync(join(root, 'gz.txt'), 'utf8'), 'zipped!');

    const rel = 'sandlot-agent-test-rel.txt';
    const rr = await agent.http({ method: 'POST', path: '/files?' + q({ path: rel }), headers: { 'content-type': 'application/octet-stream' }, body: 'rel' });
    assert.equal(JSON.parse(rr.body.toString())[0].path, '/root/' + rel);
    await agent.fs.remove({ path: rel });
  });

  it('errors: 404 missing, 400 directory, 400 no path, 401 unknown user, 400 bad multipart', async () => {
    const missing = join(root, 'missing.txt');
    const nf = await agent.http({ path: '/files?' + q({ path: missing }) });
    assert.equal(nf.status, 404);
    assert.deepEqual(JSON.parse(nf.body.toString()), { code: 404, message: `path '${missing}' does not exist` });
    assert.equal((await agent.http({ path: '/files?' + q({ path: root }) })).status, 400);
    assert.equal((await agent.http({ method: 'POST', path: '/files', body: 'x' })).status, 400);
    assert.equal((await agent.http({ path: '/files?' + q({ path: missing, username: 'ghost' }) })).status, 401);
    const bad = await agent.http({
      method: 'POST',
      path: '/files?' + q({ path: join(root, 'bad.txt') }),
      headers: { 'content-type': 'multipart/form-data; boundary=zzz' },
      body: '--zzz\r\nContent-Disposition: form-data; name="file"\r\n\r\ntruncated',
    });
    assert.equal(bad.status, 400);
    const dir = await agent.http({ method: 'POST', path: '/files?' + q({ path: root }), headers: { 'content-type': 'application/octet-stream' }, body: 'x' });
    assert.equal(dir.status, 400);
    assert.equal((await agent.http({ path: '/health' })).status, 204, 'agent still alive');
  });

  it('round-trips a 50 MiB file (multipart up, stream down) without buffering it', async () => {
    const size = 50 * 1024 * 1024;
    const b = 'big-boundary-' + randomBytes(8).toString('hex');
    const target = join(root, 'big.bin');
    const body = bigBody(
      size,
      Buffer.from(`--${b}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n`),
      Buffer.from(`\r\n--${b}--\r\n`),
    );
    const up = await agent.http({
      method: 'POST',
      path: '/files?' + q({ path: target }),
      headers: { 'content-type': `multipart/form-data; boundary=${b}` },
      body: body.gen(),
    });
    assert.equal(up.status, 200, up.body.toString());
    assert.equal(statSync(target).size, size);
    const digest = body.digest();

    const down = await agent.http({ path: '/files?' + q({ path: target }) });
    assert.equal(down.status, 200);
    assert.equal(down.body.length, size);
    assert.equal(createHash('sha256').update(down.body).digest('hex'), digest);

    const oct = bigBody(size, Buffer.alloc(0), Buffer.alloc(0));
    const up2 = await agent.http({
      method: 'POST',
      path: '/files?' + q({ path: join(root, 'big2.bin') }),
      headers: { 'content-type': 'application/octet-stream' },
      body: oct.gen(),
    });
    assert.equal(up2.status, 200);
    assert.equal(createHash('sha256').update(readFileSync(join(root, 'big2.bin'))).digest('hex'), oct.digest());
    const peak = vmHWMkB(agent.proc.pid!);
    console.log(`# agent peak RSS after 3x50 MiB transfers: ${peak} kB`);
    assert.ok(peak < 140 * 1024, `agent peak RSS ${peak} kB suggests buffering`);
  });
});

describe('access token', () => {
  let secured: Agent;
  const token = 'tok-' + randomBytes(8).toString('hex');
  before(async () => {
    secured = await startAgent({ accessToken: token });
  });
  after(async () => {
    await secured?.stop();
  });

  const sign = (path: string, op: string, user: string, exp?: number) =>
    'v1_' + createHash('sha256').update(`${path}:${op}:${user}:${token}${exp ? ':' + exp : ''}`).digest('base64').replace(/=+$/, '');

  it('requires X-Access-Token for RPC and HTTP, except /health', async () => {
    assert.equal((await secured.http({ token: false, path: '/health' })).status, 204);
    assert.equal((await secured.http({ token: false, path: '/envs' })).status, 401);
    assert.equal((await secured.http({ token: false, path: '/envs', headers: { 'x-access-token': token } })).status, 200);
    await assert.rejects(secured.client({ token: false }).fs.stat({ path: '/' }), (e: Error) => /unauthenticated/i.test(e.message) || (e as { code?: number }).code === 16);
    const ok = secured.client({ headers: { 'x-access-token': token } });
    assert.equal((await ok.fs.stat({ path: '/' })).entry?.path, '/');
    const bad = secured.client({ headers: { 'x-access-token': 'wrong' } });
    await assert.rejects(bad.process.list({}));
  });

  it('accepts valid signatures on /files, rejects bad or expired ones', async () => {
    const p = join(secured.dir, 'signed.txt');
    writeFileSync(p, 'signed');
    assert.equal((await secured.http({ token: false, path: '/files?' + q({ path: p }) })).status, 401);
    assert.equal((await secured.http({ token: false, path: '/files?' + q({ path: p }), headers: { 'x-access-token': token } })).status, 200);
    const good = await secured.http({ token: false, path: '/files?' + q({ path: p, signature: sign(p, 'read', '') }) });
    assert.equal(good.status, 200);
    assert.equal(good.body.toString(), 'signed');
    const exp = Math.floor(Date.now() / 1000) + 60;
    const withUser = await secured.http({ token: false, path: '/files?' + q({ path: p, username: 'root', signature: sign(p, 'read', 'root', exp), signature_expiration: String(exp) }) });
    assert.equal(withUser.status, 200);
    assert.equal((await secured.http({ token: false, path: '/files?' + q({ path: p, signature: sign(p, 'write', '') }) })).status, 401);
    const past = Math.floor(Date.now() / 1000) - 10;
    const expired = await secured.http({ token: false, path: '/files?' + q({ path: p, signature: sign(p, 'read', '', past), signature_expiration: String(past) }) });
    assert.equal(expired.status, 401);
    assert.equal(expired.body.toString(), '{"code":401,"message":"signature is already expired"}');
    const up = await secured.http({
      token: false,
      method: 'POST',
      path: '/files?' + q({ path: p, signature: sign(p, 'write', '') }),
      headers: { 'content-type': 'application/octet-stream' },
      body: 'rewritten',
    });
    assert.equal(up.status, 200);
    assert.equal(readFileSync(p, 'utf8'), 'rewritten');
  });
});
