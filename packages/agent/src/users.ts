import { readFileSync, statSync } from 'node:fs';

export interface UserInfo {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

interface Db {
  key: string;
  users: Map<string, UserInfo>;
  uidNames: Map<number, string>;
  gidNames: Map<number, string>;
  /** User name → the gids of the groups that list it as a member. */
  memberOf: Map<string, number[]>;
}

/** Root is root, whatever the image's /etc/passwd says or lacks (a rootfs may have none at all). */
const ROOT: UserInfo = { name: 'root', uid: 0, gid: 0, home: '/root', shell: '/bin/sh' };

const PASSWD = '/etc/passwd';
const GROUP = '/etc/group';
let db: Db | undefined;

function fileKey(path: string): string {
  try {
    const st = statSync(path);
    return `${st.mtimeMs}:${st.size}:${st.ino}`;
  } catch {
    return 'missing';
  }
}

function readLines(path: string): string[] {
  try {
    return readFileSync(path, 'utf8').split('\n');
  } catch {
    return [];
  }
}

/** Parsed /etc/passwd and /etc/group, re-read whenever either file changes. */
function load(): Db {
  const key = fileKey(PASSWD) + '|' + fileKey(GROUP);
  if (db && db.key === key) return db;
  const users = new Map<string, UserInfo>();
  const uidNames = new Map<number, string>();
  const gidNames = new Map<number, string>();
  const memberOf = new Map<string, number[]>();
  for (const line of readLines(PASSWD)) {
    const f = line.split(':');
    if (f.length < 7 || !f[0]) continue;
    const uid = Number(f[2]);
    const gid = Number(f[3]);
    if (!Number.isInteger(uid) || !Number.isInteger(gid)) continue;
    const u: UserInfo = { name: f[0], uid, gid, home: f[5] || '/', shell: f[6] || '/bin/sh' };
    if (!users.has(u.name)) users.set(u.name, u);
    if (!uidNames.has(uid)) uidNames.set(uid, u.name);
  }
  for (const line of readLines(GROUP)) {
    const f = line.split(':');
    if (f.length < 3 || !f[0]) continue;
    const gid = Number(f[2]);
    if (!Number.isInteger(gid)) continue;
    if (!gidNames.has(gid)) gidNames.set(gid, f[0]);
    for (const member of (f[3] ?? '').split(',')) {
      if (!member) continue;
      const gids = memberOf.get(member) ?? [];
      if (!gids.includes(gid)) gids.push(gid);
      memberOf.set(member, gids);
    }
  }
  if (!users.has('root')) users.set('root', ROOT);
  if (!uidNames.has(0)) uidNames.set(0, 'root');
  if (!gidNames.has(0)) gidNames.set(0, 'root');
  db = { key, users, uidNames, gidNames, memberOf };
  return db;
}

export function lookupUser(name: string): UserInfo | undefined {
  return load().users.get(name);
}

/**
 * The groups a process of the user gets, as initgroups(3) would give them from /etc/group: its
 * primary group, then every group that lists it as a member. Read here, by the agent, so that no
 * library of the image's is involved.
 */
export function supplementaryGroups(user: UserInfo): number[] {
  const gids = [user.gid];
  for (const gid of load().memberOf.get(user.name) ?? []) if (!gids.includes(gid)) gids.push(gid);
  return gids;
}

/** Returns name lookups against one snapshot of the databases (cheap for ListDir). */
export function ownerNames(): { user(uid: number): string; group(gid: number): string } {
  const d = load();
  return {
    user: (uid) => d.uidNames.get(uid) ?? String(uid),
    group: (gid) => d.gidNames.get(gid) ?? String(gid),
  };
}

/** Extracts the user name from `Authorization: Basic base64("<user>:")`; undefined if absent. Throws on malformed. */
export function userFromAuthorization(header: string | null | undefined): string | undefined {
  if (!header) return undefined;
  const m = /^Basic\s+([A-Za-z0-9+/=_-]*)\s*$/i.exec(header);
  if (!m) throw new Error('Authorization header must be "Basic base64(<user>:)"');
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const idx = decoded.indexOf(':');
  const name = idx >= 0 ? decoded.slice(0, idx) : decoded;
  return name || undefined;
}
