// File metadata (envd ≥ 0.6.2): `X-Metadata-<key>: <value>` upload headers, kept as extended
// attributes `user.e2b.<key>` and returned in EntryInfo.metadata. envd's rules (its OpenAPI
// description of POST /files): keys are lowercased; keys and values are printable US-ASCII; a key
// is at most 246 bytes; all of a file's metadata, keys with the prefix plus values, at most 4096
// bytes; a repeated header counts once (its first value); every upload replaces the file's
// metadata, and one without X-Metadata-* headers clears it.
//
// Node has no xattr API: the native fs-xattr module (mounted read-only like node-pty) is loaded on
// first use. Only its synchronous functions are used: fs-xattr 0.4.0's promise API leaks its
// libuv work request (and a getAttribute's value buffer) on every call, ~0.5 KB each, which adds up
// in a long-lived agent that lists large directories. The calls are single xattr syscalls, as quick
// as an lstat on the sandbox's overlay/tmpfs.
import type { IncomingMessage } from 'node:http';
import { HttpError } from './errors.js';

export const XATTR_PREFIX = 'user.e2b.';
const HEADER_PREFIX = 'x-metadata-';
/** envd's limit on one file's metadata: keys (with the `user.e2b.` prefix) and values together. */
export const MAX_METADATA_BYTES = 4096;
/** envd's limit on one key: Linux's 255-byte xattr name minus the prefix. */
export const MAX_KEY_BYTES = 255 - XATTR_PREFIX.length;

export type Metadata = Record<string, string>;

type Xattr = typeof import('fs-xattr');
let xattrModule: Promise<Xattr> | undefined;
const xattr = () => (xattrModule ??= import('fs-xattr'));

const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

/** The metadata an upload asks for, validated (HttpError 400); undefined if it sends none. */
export function metadataFromRequest(req: Pick<IncomingMessage, 'headersDistinct'>): Metadata | undefined {
  const out: Metadata = {};
  let bytes = 0;
  let any = false;
  // Header names arrive lowercased; headersDistinct keeps a repeated header's values apart.
  for (const [name, values] of Object.entries(req.headersDistinct)) {
    if (!name.startsWith(HEADER_PREFIX) || !values) continue;
    any = true;
    const key = name.slice(HEADER_PREFIX.length);
    const value = values[0] ?? '';
    if (!key) throw new HttpError(400, 'a metadata header needs a key: X-Metadata-<key>');
    if (!PRINTABLE_ASCII.test(key)) throw new HttpError(400, `metadata key "${key}" must be printable US-ASCII`);
    if (!PRINTABLE_ASCII.test(value)) throw new HttpError(400, `the value of metadata "${key}" must be printable US-ASCII`);
    if (key.length > MAX_KEY_BYTES) throw new HttpError(400, `metadata key "${key.slice(0, 32)}…" is ${key.length} bytes; a key may have at most ${MAX_KEY_BYTES}`);
    bytes += XATTR_PREFIX.length + key.length + value.length;
    out[key] = value;
  }
  if (bytes > MAX_METADATA_BYTES) {
    throw new HttpError(400, `metadata is ${bytes} bytes (keys with their "${XATTR_PREFIX}" prefix, plus values); a file may carry at most ${MAX_METADATA_BYTES}`);
  }
  return any ? out : undefined;
}

function xattrError(err: unknown, path: string): HttpError {
  const e = err as NodeJS.ErrnoException;
  switch (e?.code) {
    case 'ENOTSUP':
    case 'EOPNOTSUPP':
      return new HttpError(400, `cannot store metadata on '${path}': its filesystem does not support extended attributes`);
    case 'ENOSPC':
    case 'EDQUOT':
    case 'E2BIG':
      return new HttpError(507, `not enough space for the metadata of '${path}'`);
  }
  return new HttpError(500, `cannot store metadata on '${path}': ${e?.message ?? String(err)}`);
}

/**
 * Gives a freshly written file the upload's metadata: `metadata` replaces its user.e2b.*
 * attributes, none (undefined) clears them. `existed`: whether the file was there before the upload
 * (a new file has nothing to clear, so an upload without metadata costs nothing).
 */
export async function applyMetadata(path: string, metadata: Metadata | undefined, existed: boolean): Promise<void> {
  if (!metadata && !existed) return;
  let x: Xattr;
  try {
    x = await xattr();
  } catch (err) {
    if (!metadata) return; // nothing can have been stored through this agent then
    throw new HttpError(501, `file metadata is not available in this sandbox (the fs-xattr module did not load: ${(err as Error).message})`);
  }
  try {
    if (existed) {
      for (const name of x.listAttributesSync(path)) if (name.startsWith(XATTR_PREFIX)) x.removeAttributeSync(path, name);
    }
    for (const [key, value] of Object.entries(metadata ?? {})) x.setAttributeSync(path, XATTR_PREFIX + key, value);
  } catch (err) {
    // Clearing is best effort on filesystems without xattrs; storing is not.
    const code = (err as NodeJS.ErrnoException)?.code;
    if (!metadata && (code === 'ENOTSUP' || code === 'EOPNOTSUPP')) return;
    throw xattrError(err, path);
  }
}

/**
 * The user.e2b.* attributes of `path` (following a symlink, like the type and mode EntryInfo
 * reports), prefix stripped, including ones set out of band (e.g. setfattr; values decoded as
 * UTF-8); empty when it has none or they cannot be read.
 */
export async function readMetadata(path: string): Promise<Metadata> {
  const out: Metadata = {};
  let x: Xattr;
  try {
    x = await xattr();
  } catch {
    return out;
  }
  try {
    for (const name of x.listAttributesSync(path)) {
      if (name.startsWith(XATTR_PREFIX)) out[name.slice(XATTR_PREFIX.length)] = x.getAttributeSync(path, name).toString('utf8');
    }
  } catch {
    // A filesystem without xattrs, a dangling symlink, or the entry just vanished: no metadata.
  }
  return out;
}
