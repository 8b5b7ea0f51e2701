import { isAbsolute, resolve } from 'node:path';
import type { UserInfo } from './users.js';

export class BadPathError extends Error {}

/** Resolves a client path: `~` → home, relative → base (default workdir or home). Never touches the disk. */
export function resolvePath(p: string, user: UserInfo, base?: string): string {
  if (typeof p !== 'string') throw new BadPathError('path must be a string');
  if (p.includes('\0')) throw new BadPathError('path must not contain NUL bytes');
  if (p === '~') return resolve(user.home);
  if (p.startsWith('~/')) return resolve(user.home, p.slice(2));
  if (isAbsolute(p)) return resolve(p);
  return resolve(base || user.home, p);
}
