// File metadata (envd ≥ 0.6.2): `X-Metadata-<key>: <value>` upload headers, kept as extended
// attributes `user.e2b.<key>` and returned in EntryInfo.metadata. Node has no xattr API: the native
// fs-xattr module (mounted read-only like node-pty) is loaded on first use.
import type { IncomingHttpHeaders } from 'node:http';
import { HttpError } from './errors.js';

const PREFIX = 'user.e2b.';
const HEADER_PREFIX = 'x-metadata-';
/** envd's limit on one file's metadata, keys and values together. */
export const MAX_METADATA_BYTES = 4096;

type Xattr = typeof import('fs-xattr');
let xattrModule: Promise<Xattr> | undefined;
const xattr = () => (xattrModule ??= import('fs-xattr'));

const ASCII = /^[\x20-\x7e]*$/;

/** The metadata an upload asks for (header names arrive lowercased), validated; undefined if none. */
export function metadataFromHeaders(headers: IncomingHttpHeaders): Record<string, string> | undefined {
  const out: Record<string, string> = {};
  let bytes = 0;
  for (const [name, raw] of Object.entries(headers)) {
    if (!name.startsWith(HEADER_PREFIX)) continue;
    const key = name.slice(HEADER_PREFIX.length);
    const value = Array.isArray(raw) ? raw.join(', ') : (raw ?? '');
    if (!key) throw new HttpError(400, 'a metadata header needs a key: X-Metadata-<key>');
    if (!ASCII.test(key) || !ASCII.test(value)) throw new HttpError(400, `metadata "${key}" must be printable ASCII, key and value`);
    bytes += key.length + value.length;
    out[key] = value;
  }
  if (bytes > MAX_METADATA_BYTES) throw new HttpError(400, `metadata is ${bytes} bytes; a file may carry at most ${MAX_METADATA_BYTES}`);
  return Object.keys(out).length ? out : undefined;
}

/** Replaces a file's metadata with `metadata`. */
export async function writeMetadata(path: string, metadata: Record<string, string>): Promise<void> {
  let x: Xattr;
  try {
    x = await xattr();
  } catch (err) {
    throw new HttpError(501, `file metadata is not available in this sandbox (the fs-xattr module did not load: ${(err as Error).message})`);
  }
  for (const name of await x.listAttributes(path)) if (name.startsWith(PREFIX)) await x.removeAttribute(path, name);
  for (const [key, value] of Object.entries(metadata)) await x.setAttribute(path, PREFIX + key, value);
}

/** A file's metadata; empty when it has none or extended attributes cannot be read. */
export async function readMetadata(path: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  try {
    const x = await xattr();
    for (const name of await x.listAttributes(path)) {
      if (name.startsWith(PREFIX)) out[name.slice(PREFIX.length)] = (await x.getAttribute(path, name)).toString('latin1');
    }
  } catch {
    // No module, a filesystem without xattrs, or the file just vanished: no metadata to report.
  }
  return out;
}
