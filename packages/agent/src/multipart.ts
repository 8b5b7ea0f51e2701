/** A small streaming multipart/form-data parser (RFC 7578): never buffers a whole part. */

export class MultipartError extends Error {}

export interface Part {
  headers: Map<string, string>;
  /** form field name from Content-Disposition */
  name: string | undefined;
  filename: string | undefined;
  /** Must be consumed (or abandoned together with the whole parse) before the next part is requested. */
  body: AsyncGenerator<Buffer>;
}

const MAX_HEADER_BYTES = 16 * 1024;
const MAX_PREAMBLE_BYTES = 64 * 1024;
const MAX_PARTS = 10_000;
const CRLF = Buffer.from('\r\n');
const CRLFCRLF = Buffer.from('\r\n\r\n');

/** Extracts the boundary from a Content-Type header; undefined if not multipart/form-data. */
export function multipartBoundary(contentType: string | undefined): string | undefined {
  if (!contentType) return undefined;
  const { type, params } = parseHeaderParams(contentType);
  if (type !== 'multipart/form-data') return undefined;
  const b = params.boundary;
  if (!b || b.length > 200) throw new MultipartError('multipart boundary is missing or invalid');
  return b;
}

/** Parses `type; a=b; c="d"` (with RFC 5987 `x*=UTF-8''...`). Param names are lowercased. */
export function parseHeaderParams(value: string): { type: string; params: Record<string, string> } {
  const semi = value.indexOf(';');
  const type = (semi < 0 ? value : value.slice(0, semi)).trim().toLowerCase();
  const params: Record<string, string> = {};
  const re = /;\s*([^=;\s]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]*))/g;
  let m: RegExpExecArray | null;
  const rest = semi < 0 ? '' : value.slice(semi);
  while ((m = re.exec(rest))) {
    const key = m[1].toLowerCase();
    let v = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : (m[3] ?? '').trim();
    if (key.endsWith('*')) {
      const ext = /^([^']*)'[^']*'(.*)$/.exec(v);
      if (ext) {
        try {
          v = decodeURIComponent(ext[2]);
        } catch {
          continue;
        }
        params[key.slice(0, -1)] = v;
        continue;
      }
    }
    params[key] ??= v;
  }
  return { type, params };
}

export async function* parseMultipart(source: AsyncIterable<Buffer>, boundary: string): AsyncGenerator<Part> {
  const it = source[Symbol.asyncIterator]();
  let buf: Buffer = Buffer.alloc(0);
  let eof = false;
  const pull = async (): Promise<boolean> => {
    if (eof) return false;
    const r = await it.next();
    if (r.done) {
      eof = true;
      return false;
    }
    const chunk = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    return true;
  };
  const unexpectedEnd = () => new MultipartError('unexpected end of multipart body');
  const dashBoundary = Buffer.from('--' + boundary);
  const delimiter = Buffer.from('\r\n--' + boundary);

  // Preamble: the first boundary may start the body or follow a CRLF.
  for (;;) {
    if (buf.length >= dashBoundary.length && buf.subarray(0, dashBoundary.length).equals(dashBoundary)) {
      buf = buf.subarray(dashBoundary.length);
      break;
    }
    const i = buf.indexOf(delimiter);
    if (i >= 0) {
      buf = buf.subarray(i + delimiter.length);
      break;
    }
    if (buf.length > MAX_PREAMBLE_BYTES) throw new MultipartError('multipart boundary not found');
    if (!(await pull())) throw new MultipartError('multipart boundary not found');
  }

  for (let count = 0; ; count++) {
    // After a boundary: "--" ends the body; otherwise optional whitespace then CRLF.
    while (buf.length < 2) if (!(await pull())) throw unexpectedEnd();
    if (buf[0] === 0x2d && buf[1] === 0x2d) return;
    let eol: number;
    while ((eol = buf.indexOf(CRLF)) < 0) {
      if (buf.length > 1024) throw new MultipartError('malformed multipart boundary line');
      if (!(await pull())) throw unexpectedEnd();
    }
    if (buf.subarray(0, eol).toString('latin1').trim() !== '') throw new MultipartError('malformed multipart boundary line');
    buf = buf.subarray(eol + 2);
    if (count >= MAX_PARTS) throw new MultipartError(`too many multipart parts (limit ${MAX_PARTS})`);

    // Part headers.
    while (buf.length < 2) if (!(await pull())) throw unexpectedEnd();
    let headerText = '';
    if (buf[0] === 0x0d && buf[1] === 0x0a) {
      buf = buf.subarray(2);
    } else {
      let end: number;
      while ((end = buf.indexOf(CRLFCRLF)) < 0) {
        if (buf.length > MAX_HEADER_BYTES) throw new MultipartError('multipart part headers are too large');
        if (!(await pull())) throw unexpectedEnd();
      }
      headerText = buf.subarray(0, end).toString('utf8');
      buf = buf.subarray(end + 4);
    }
    const headers = new Map<string, string>();
    for (const line of headerText.split('\r\n')) {
      const c = line.indexOf(':');
      if (c <= 0) continue;
      headers.set(line.slice(0, c).trim().toLowerCase(), line.slice(c + 1).trim());
    }
    const disp = parseHeaderParams(headers.get('content-disposition') ?? '');

    let bodyDone = false;
    const readBody = async function* (): AsyncGenerator<Buffer> {
      while (!bodyDone) {
        const k = buf.indexOf(delimiter);
        if (k >= 0) {
          const out = buf.subarray(0, k);
          buf = buf.subarray(k + delimiter.length);
          bodyDone = true;
          if (out.length) yield out;
          return;
        }
        const safe = buf.length - delimiter.length + 1; // keep a possible partial delimiter
        if (safe > 0) {
          const out = buf.subarray(0, safe);
          buf = buf.subarray(safe);
          yield out;
        }
        if (!(await pull())) throw unexpectedEnd();
      }
    };
    yield { headers, name: disp.params.name, filename: disp.params.filename, body: readBody() };
    if (!bodyDone) for await (const _ of readBody()) void _; // skip what the consumer did not read
  }
}
