import { constants } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { basename, dirname } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { checkFilesAccess } from './auth.js';
import { HttpError } from './errors.js';
import { ensureDir, NotRegularFileError, openRegular } from './fsutil.js';
import { sendError, sendJson } from './http-util.js';
import { baseDir, selectUser } from './identity.js';
import { logError } from './log.js';
import { applyMetadata, metadataFromRequest, type Metadata } from './metadata.js';
import { multipartBoundary, MultipartError, parseMultipart } from './multipart.js';
import { BadPathError, resolvePath } from './paths.js';
import { userFromAuthorization, type UserInfo } from './users.js';

function fileUser(req: IncomingMessage, url: URL): UserInfo {
  try {
    const name = url.searchParams.get('username') || userFromAuthorization(req.headers.authorization);
    return selectUser(name);
  } catch (err) {
    throw new HttpError(401, (err as Error).message);
  }
}

function target(p: string, user: UserInfo): string {
  try {
    return resolvePath(p, user, baseDir(user));
  } catch (err) {
    throw new HttpError(400, (err as Error).message);
  }
}

function errnoToHttp(err: unknown, path: string): HttpError {
  if (err instanceof HttpError) return err;
  if (err instanceof MultipartError || err instanceof BadPathError || err instanceof NotRegularFileError) return new HttpError(400, err.message);
  const e = err as NodeJS.ErrnoException;
  switch (e?.code) {
    case 'ENOENT':
      return new HttpError(404, `path '${path}' does not exist`);
    case 'EISDIR':
      return new HttpError(400, `path '${path}' is a directory`);
    case 'ENOTDIR':
      return new HttpError(400, `a component of path '${path}' is not a directory`);
    case 'ENOSPC':
    case 'EDQUOT':
      return new HttpError(507, 'not enough disk space available');
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new HttpError(403, `permission denied for '${path}'`);
    case 'ENAMETOOLONG':
      return new HttpError(400, `path '${path}' is too long`);
    case 'Z_DATA_ERROR':
    case 'Z_BUF_ERROR':
      return new HttpError(400, 'invalid gzip request body');
  }
  if (typeof e?.code === 'string' && e.code.startsWith('ERR_INVALID_ARG')) return new HttpError(400, e.message);
  return new HttpError(500, e?.message ?? String(err));
}

function contentDisposition(name: string): string {
  const ascii = name.replace(/[^\x20-\x7e]|["\\]/g, '_');
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name)}`;
}

/** GET|HEAD /files?path=&username= — streams a file from disk (single-range requests supported). */
export async function handleDownload(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  let path = '';
  try {
    const access = checkFilesAccess(req, url, 'read');
    if (!access.ok) throw new HttpError(401, access.message);
    const user = fileUser(req, url);
    const raw = url.searchParams.get('path');
    if (!raw) throw new HttpError(400, 'the path query parameter is required');
    path = target(raw, user);
    const { fh, st } = await openRegular(path, constants.O_RDONLY).catch((err) => {
      throw errnoToHttp(err, path);
    });
    let closeFh = true;
    try {
      const size = st.size;
      let start = 0;
      let end = size - 1;
      let status = 200;
      const headers: Record<string, string | number> = {
        'Content-Type': 'application/octet-stream',
        'Content-Disposition': contentDisposition(basename(path)),
        'Accept-Ranges': 'bytes',
        'Last-Modified': st.mtime.toUTCString(),
      };
      const range = req.headers.range;
      if (range) {
        const m = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
        if (m && (m[1] || m[2])) {
          if (m[1]) {
            start = Number(m[1]);
            end = m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
          } else {
            start = Math.max(0, size - Number(m[2]));
          }
          if (start > end || start >= size) {
            res.writeHead(416, { 'Content-Range': `bytes */${size}`, 'Content-Type': 'application/json' });
            res.end(JSON.stringify({ code: 416, message: `range not satisfiable for a ${size}-byte file` }));
            return;
          }
          status = 206;
          headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
        }
      }
      headers['Content-Length'] = size === 0 ? 0 : end - start + 1;
      res.writeHead(status, headers);
      if (req.method === 'HEAD' || size === 0) {
        res.end();
        return;
      }
      closeFh = false;
      await pipeline(fh.createReadStream({ start, end, highWaterMark: 256 * 1024 }), res);
    } finally {
      if (closeFh) await fh.close().catch(() => {});
    }
  } catch (err) {
    const h = errnoToHttp(err, path);
    if (res.headersSent) {
      res.destroy();
      if (h.status === 500) logError('download failed', err);
      return;
    }
    sendError(res, h.status, h.message);
  }
}

/**
 * Streams `source` into `path` (created/truncated, owned by the user, parents created); true if
 * the file was already there (it keeps its inode, and so its extended attributes).
 */
async function writeFile(path: string, source: AsyncIterable<Buffer> | NodeJS.ReadableStream, user: UserInfo): Promise<boolean> {
  const existing = await stat(path).catch(() => undefined);
  if (existing?.isDirectory()) throw new HttpError(400, `path '${path}' is a directory`);
  await ensureDir(dirname(path), user.uid, user.gid);
  // Never onto a FIFO, socket or device: refused before anything is written (O_TRUNC does nothing to them).
  const { fh } = await openRegular(path, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o644);
  await fh.chown(user.uid, user.gid).catch(() => {});
  // The write stream owns and closes fh.
  await pipeline(source, fh.createWriteStream({ highWaterMark: 256 * 1024 }));
  return existing !== undefined;
}

/** POST /files — multipart/form-data (parts named "file") or a raw octet-stream body with ?path=. */
export async function handleUpload(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  let current = '';
  try {
    const access = checkFilesAccess(req, url, 'write');
    if (!access.ok) throw new HttpError(401, access.message);
    const user = fileUser(req, url);
    const queryPath = url.searchParams.get('path') || undefined;
    // X-Metadata-* headers: checked before anything is written; they replace the metadata of every
    // file written, and an upload without them clears it (envd).
    const metadata = metadataFromRequest(req);

    const encoding = (req.headers['content-encoding'] ?? 'identity').toLowerCase().trim();
    let body: NodeJS.ReadableStream & AsyncIterable<Buffer> = req;
    if (encoding === 'gzip' || encoding === 'x-gzip') {
      const gunzip = createGunzip();
      req.on('error', (e) => gunzip.destroy(e));
      body = req.pipe(gunzip);
    } else if (encoding !== 'identity' && encoding !== '') {
      throw new HttpError(400, `unsupported Content-Encoding '${encoding}' (use gzip or none)`);
    }

    const boundary = multipartBoundary(req.headers['content-type']);
    const written: { path: string; name: string; type: 'file'; metadata?: Metadata }[] = [];
    const store = async (path: string, existed: boolean) => {
      await applyMetadata(path, metadata, existed);
      written.push({ path, name: basename(path), type: 'file', ...(metadata && { metadata }) });
    };
    if (boundary === undefined) {
      if (!queryPath) throw new HttpError(400, 'the path query parameter is required for a non-multipart upload');
      current = target(queryPath, user);
      await store(current, await writeFile(current, body, user));
    } else {
      const seen = new Set<string>();
      for await (const part of parseMultipart(body, boundary)) {
        if (part.name !== 'file') continue; // other fields are ignored (their bodies are skipped)
        const p = queryPath ?? part.filename;
        if (!p) throw new HttpError(400, 'a file part needs a filename (full path) when no path query parameter is given');
        current = target(p, user);
        if (seen.has(current)) throw new HttpError(400, `path '${current}' appears more than once in the upload`);
        seen.add(current);
        await store(current, await writeFile(current, part.body, user));
      }
      if (written.length === 0) throw new HttpError(400, 'no part named "file" in the multipart upload');
    }
    sendJson(res, 200, written);
  } catch (err) {
    const h = errnoToHttp(err, current);
    if (h.status === 500) logError('upload failed', err);
    // Node drains an unread request body after the response, keeping the connection usable.
    sendError(res, h.status, h.message);
  }
}
