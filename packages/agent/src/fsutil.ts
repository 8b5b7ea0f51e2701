import { constants, type Stats } from 'node:fs';
import { chmod, chown, lchown, lstat, lutimes, mkdir, open, readdir, readlink, stat, symlink, unlink, utimes, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';

export class NotADirectoryError extends Error {
  code = 'ENOTDIR';
}

/**
 * mkdir -p that chowns every directory it creates to uid/gid.
 * Returns true if `dir` was created, false if it already existed. Throws ENOTDIR-like if a component is a file.
 */
export async function ensureDir(dir: string, uid: number, gid: number): Promise<boolean> {
  const missing: string[] = [];
  let cur = dir;
  for (;;) {
    try {
      const st = await stat(cur);
      if (!st.isDirectory()) throw new NotADirectoryError(`path '${cur}' exists but is not a directory`);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      missing.push(cur);
      const parent = dirname(cur);
      if (parent === cur) break;
      cur = parent;
    }
  }
  for (let i = missing.length - 1; i >= 0; i--) {
    try {
      await mkdir(missing[i], 0o755);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue; // raced with someone else
      throw err;
    }
    await chown(missing[i], uid, gid).catch(() => {});
  }
  return missing.length > 0;
}

/** A FIFO, socket, device or directory where the agent would read or write a file's contents. */
export class NotRegularFileError extends Error {
  constructor(path: string, st: Stats | undefined, doing = '') {
    const kind = !st
      ? 'a socket or a FIFO'
      : st.isDirectory()
        ? 'a directory'
        : st.isFIFO()
          ? 'a FIFO'
          : st.isSocket()
            ? 'a socket'
            : st.isCharacterDevice()
              ? 'a character device'
              : st.isBlockDevice()
                ? 'a block device'
                : 'not a regular file';
    super(st?.isDirectory() && !doing ? `path '${path}' is a directory` : `${doing}path '${path}' is ${kind}, not a regular file`);
  }
}

/**
 * Opens `path` to read or write its contents, only if it is a regular file: the agent's file
 * operations run on libuv's four threadpool threads, and opening, reading or writing a FIFO, a
 * socket or a device may block one for ever (a FIFO without its other end, /dev/zero without an
 * end), so four such requests would wedge every file operation of the agent.
 *
 * O_NONBLOCK: opening a FIFO returns at once (or fails with ENXIO, as a socket does), and so does
 * one under a lease; O_NOCTTY: a terminal never becomes the agent's. The check is fstat on the
 * descriptor that was opened, so a path swapped in between is caught too. O_NONBLOCK changes
 * nothing for a regular file's reads and writes.
 */
export async function openRegular(path: string, flags: number, mode?: number): Promise<{ fh: FileHandle; st: Stats }> {
  let fh: FileHandle;
  try {
    fh = await open(path, flags | constants.O_NONBLOCK | constants.O_NOCTTY, mode);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENXIO') throw new NotRegularFileError(path, await stat(path).catch(() => undefined));
    throw err;
  }
  let st: Stats;
  try {
    st = await fh.stat();
  } catch (err) {
    await fh.close().catch(() => {});
    throw err;
  }
  if (!st.isFile()) {
    await fh.close().catch(() => {});
    throw new NotRegularFileError(path, st);
  }
  return { fh, st };
}

const COPY_CHUNK = 256 * 1024;

/**
 * Copies `src` to `dest` as mv does across filesystems (what Filesystem.Move falls back to): a
 * directory's tree (merged into an existing directory), symlinks verbatim, regular files with their
 * mode, owner and times. Each file is opened with openRegular, so nothing can make the copy open a
 * FIFO or a device. A FIFO, socket or device in the tree fails the copy (node has no mknod to
 * recreate one); what was copied so far stays, and the source is untouched.
 */
export async function copyTree(src: string, dest: string): Promise<void> {
  const st = await lstat(src);
  const existing = await lstat(dest).catch(() => undefined);
  if (existing && st.isDirectory() !== existing.isDirectory()) {
    throw Object.assign(new Error(`cannot replace '${dest}' with '${src}'`), { code: existing.isDirectory() ? 'EISDIR' : 'ENOTDIR', path: dest });
  }
  if (st.isDirectory()) {
    if (!existing) await mkdir(dest, 0o700);
    for (const name of await readdir(src)) await copyTree(join(src, name), join(dest, name));
    if (existing) return; // merged into: it keeps its own owner, mode and times
    await lchown(dest, st.uid, st.gid).catch(() => {});
    await chmod(dest, st.mode & 0o7777);
    await utimes(dest, st.atime, st.mtime);
    return;
  }
  if (!st.isSymbolicLink() && !st.isFile()) throw new NotRegularFileError(src, st, 'cannot copy across filesystems: ');
  if (existing) await unlink(dest);
  if (st.isSymbolicLink()) {
    await symlink(await readlink(src), dest);
    await lchown(dest, st.uid, st.gid).catch(() => {});
    await lutimes(dest, st.atime, st.mtime);
    return;
  }
  const from = await openRegular(src, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    // O_EXCL: whatever appeared at dest since the unlink (a FIFO, a symlink) fails the copy.
    const to = await openRegular(dest, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    try {
      const buf = Buffer.allocUnsafe(COPY_CHUNK);
      for (;;) {
        const { bytesRead } = await from.fh.read(buf, 0, buf.length, null);
        if (bytesRead === 0) break;
        for (let off = 0; off < bytesRead; ) off += (await to.fh.write(buf, off, bytesRead - off)).bytesWritten;
      }
      await to.fh.chown(from.st.uid, from.st.gid).catch(() => {}); // as root: the owner stays
      await to.fh.chmod(from.st.mode & 0o7777); // after chown, which clears set-id bits
      await to.fh.utimes(from.st.atime, from.st.mtime);
    } finally {
      await to.fh.close();
    }
  } finally {
    await from.fh.close();
  }
}
