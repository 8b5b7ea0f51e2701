// Unit tests of the streaming multipart parser: chunk edges anywhere, near-boundary data.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { multipartBoundary, parseHeaderParams, parseMultipart, MultipartError } from '../src/multipart.js';

async function* chunked(buf: Buffer, sizes: () => number) {
  for (let i = 0; i < buf.length; ) {
    const n = Math.max(1, sizes());
    yield buf.subarray(i, i + n);
    i += n;
  }
}

async function parseAll(body: Buffer, boundary: string, sizes: () => number) {
  const out: { name?: string; filename?: string; data: Buffer }[] = [];
  for await (const p of parseMultipart(chunked(body, sizes), boundary)) {
    const chunks: Buffer[] = [];
    if (p.name !== 'skip') for await (const c of p.body) chunks.push(c);
    out.push({ name: p.name, filename: p.filename, data: Buffer.concat(chunks) });
  }
  return out;
}

function build(boundary: string, parts: { name: string; filename?: string; data: Buffer }[], preamble = '') {
  const bufs: Buffer[] = [Buffer.from(preamble)];
  for (const p of parts) {
    const fn = p.filename !== undefined ? `; filename="${p.filename.replace(/"/g, '\\"')}"` : '';
    bufs.push(Buffer.from(`--${boundary}\r\ncontent-disposition: form-data; name="${p.name}"${fn}\r\n\r\n`), p.data, Buffer.from('\r\n'));
  }
  bufs.push(Buffer.from(`--${boundary}--\r\nepilogue`));
  return Buffer.concat(bufs);
}

describe('multipart parser', () => {
  it('parses parts split at every possible chunk size pattern', async () => {
    const boundary = '----WebKitFormBoundary7MA4YWxkTrZu0gW';
    const tricky = Buffer.concat([
      Buffer.from(`\r\n--${boundary.slice(0, -1)}X\r\n--`),
      randomBytes(5000),
      Buffer.from(`\r\n-${boundary}`),
    ]);
    const parts = [
      { name: 'file', filename: '/home/user/a "quoted".txt', data: tricky },
      { name: 'file', filename: 'empty', data: Buffer.alloc(0) },
      { name: 'skip', data: randomBytes(3000) },
      { name: 'file', filename: 'b', data: randomBytes(70_000) },
    ];
    const body = build(boundary, parts, 'preamble text\r\n');
    for (const sizes of [() => 1, () => 7, () => 64, () => 1 + Math.floor(Math.random() * 200), () => 65536]) {
      const got = await parseAll(body, boundary, sizes);
      assert.equal(got.length, 4);
      assert.equal(got[0].filename, '/home/user/a "quoted".txt');
      assert.ok(got[0].data.equals(tricky));
      assert.equal(got[1].data.length, 0);
      assert.equal(got[2].name, 'skip');
      assert.ok(got[3].data.equals(parts[3].data));
    }
  });

  it('rejects truncated bodies and missing boundaries', async () => {
    const b = 'bnd';
    await assert.rejects(parseAll(Buffer.from('--bnd\r\ncontent-disposition: form-data; name="file"\r\n\r\nabc'), b, () => 2), MultipartError);
    await assert.rejects(parseAll(Buffer.from('no boundary at all'), b, () => 3), MultipartError);
  });

  it('parses header parameters', () => {
    assert.equal(multipartBoundary('multipart/form-data; boundary="a b"'), 'a b');
    assert.equal(multipartBoundary('application/octet-stream'), undefined);
    assert.throws(() => multipartBoundary('multipart/form-data'), MultipartError);
    const d = parseHeaderParams(`form-data; name="file"; filename="x.txt"; filename*=UTF-8''%C3%A9.txt`);
    assert.equal(d.type, 'form-data');
    assert.equal(d.params.name, 'file');
    assert.equal(d.params.filename, 'é.txt');
  });
});
