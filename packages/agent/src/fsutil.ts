import { chown, mkdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';

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
