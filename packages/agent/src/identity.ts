import { Code, ConnectError, type HandlerContext } from '@connectrpc/connect';
import { config } from './config.js';
import { lookupUser, userFromAuthorization, type UserInfo } from './users.js';

export class UnknownUserError extends Error {}

/** Selects the Linux user: explicit name (query/Basic auth) or the configured default. */
export function selectUser(name: string | undefined): UserInfo {
  const n = name || config.defaultUser;
  const u = lookupUser(n);
  if (!u) throw new UnknownUserError(`invalid username: '${n}'`);
  return u;
}

/** The user selected by a Connect request (Authorization: Basic). Throws `unauthenticated`. */
export function requestUser(ctx: HandlerContext): UserInfo {
  try {
    return selectUser(userFromAuthorization(ctx.requestHeader.get('authorization')));
  } catch (err) {
    throw new ConnectError((err as Error).message, Code.Unauthenticated);
  }
}

/** Base directory for relative paths. */
export function baseDir(user: UserInfo): string {
  return config.defaultWorkdir || user.home;
}
