import { lstat, realpath, readlink, stat } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import { basename } from 'node:path';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { FileType, type EntryInfoSchema } from '@sandlot/envd-proto';
import { readMetadata } from './metadata.js';
import { ownerNames } from './users.js';

export type EntryInit = MessageInitShape<typeof EntryInfoSchema>;

const S_IFMT = 0o170000n;
const S_IFDIR = 0o040000n;
const S_IFLNK = 0o120000n;
const S_IFBLK = 0o060000n;
const S_IFCHR = 0o020000n;
const S_IFIFO = 0o010000n;
const S_IFSOCK = 0o140000n;
const S_IFREG = 0o100000n;

/** Go's os.FileMode.String() for a unix st_mode (what envd reports), e.g. "-rw-r--r--", "drwxr-xr-x", "Lrwxrwxrwx". */
export function permissionsString(mode: bigint): string {
  const fmt = mode & S_IFMT;
  let s = '';
  if (fmt === S_IFDIR) s += 'd';
  if (fmt === S_IFLNK) s += 'L';
  if (fmt === S_IFBLK || fmt === S_IFCHR) s += 'D';
  if (fmt === S_IFIFO) s += 'p';
  if (fmt === S_IFSOCK) s += 'S';
  if (mode & 0o4000n) s += 'u';
  if (mode & 0o2000n) s += 'g';
  if (fmt === S_IFCHR) s += 'c';
  if (mode & 0o1000n) s += 't';
  if (fmt !== S_IFDIR && fmt !== S_IFLNK && fmt !== S_IFBLK && fmt !== S_IFCHR && fmt !== S_IFIFO && fmt !== S_IFSOCK && fmt !== S_IFREG) s += '?';
  if (!s) s = '-';
  const rwx = 'rwxrwxrwx';
  for (let i = 0; i < 9; i++) s += mode & (1n << BigInt(8 - i)) ? rwx[i] : '-';
  return s;
}

function fileType(mode: bigint): FileType {
  const fmt = mode & S_IFMT;
  if (fmt === S_IFDIR) return FileType.DIRECTORY;
  if (fmt === S_IFLNK) return FileType.SYMLINK;
  return FileType.FILE;
}

/** Builds an EntryInfo like envd: lstat; a symlink reports its resolved target and the target's type/mode. */
export async function entryInfo(path: string, st?: BigIntStats, names = ownerNames()): Promise<EntryInit> {
  st ??= await lstat(path, { bigint: true });
  let type = fileType(st.mode);
  let perm = Number(st.mode & 0o777n);
  let symlinkTarget: string | undefined;
  if (type === FileType.SYMLINK) {
    try {
      symlinkTarget = await realpath(path);
      const t = await stat(path, { bigint: true });
      type = fileType(t.mode);
      perm = Number(t.mode & 0o777n);
    } catch {
      symlinkTarget ??= await readlink(path).catch(() => '');
      type = FileType.UNSPECIFIED;
      perm = 0;
    }
  }
  return {
    name: basename(path),
    type,
    path,
    size: st.size,
    mode: perm,
    permissions: permissionsString(st.mode),
    owner: names.user(Number(st.uid)),
    group: names.group(Number(st.gid)),
    modifiedTime: { seconds: st.mtimeNs / 1_000_000_000n, nanos: Number(st.mtimeNs % 1_000_000_000n) },
    symlinkTarget,
    // user.e2b.* xattrs: set by uploads on files, or out of band on files and directories.
    // Like the type and mode, a symlink's are its target's (Linux has no user.* xattrs on links).
    metadata: type === FileType.UNSPECIFIED ? {} : await readMetadata(path),
  };
}
