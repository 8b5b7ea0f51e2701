// E2B's finalize for images that lack it: every sandbox has the `user` account (uid 1000 where free)
// with its home, and root's home and /tmp exist. Done by the agent at start, before it serves
// anything, inside the sandbox: the files it reads and writes are the sandbox's own (its layer over
// the template), reached through the sandbox's own mount namespace, so a symlink in an image can
// never point it at the host's files. An image that has the account is left as it is.
import { appendFileSync, chmodSync, chownSync, cpSync, existsSync, lchownSync, lstatSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

interface Entry {
  name: string;
  id: number;
}

function read(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

/** name and id (3rd field) of each line of a passwd or group file. */
function entries(text: string | undefined): Entry[] {
  const out: Entry[] = [];
  for (const line of (text ?? '').split('\n')) {
    const f = line.split(':');
    const id = Number(f[2]);
    if (f.length >= 3 && f[0] && f[2] !== '' && Number.isInteger(id)) out.push({ name: f[0], id });
  }
  return out;
}

/** Appends lines to a file (made 0644 if missing), on a line of their own. */
function append(file: string, lines: string[], mode = 0o644): void {
  const text = read(file);
  if (text === undefined) {
    writeFileSync(file, lines.join('\n') + '\n', { mode });
    return;
  }
  appendFileSync(file, (text && !text.endsWith('\n') ? '\n' : '') + lines.join('\n') + '\n');
}

/** The first id from `from` up that none of the entries has. */
function freeId(taken: Entry[], from: number): number {
  const ids = new Set(taken.map((e) => e.id));
  let id = from;
  while (ids.has(id)) id++;
  return id;
}

function chownTree(dir: string, uid: number, gid: number): void {
  chownSync(dir, uid, gid);
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = lstatSync(p);
    if (st.isDirectory()) chownTree(p, uid, gid);
    else lchownSync(p, uid, gid); // never a link's target
  }
}

/**
 * Makes sure `name` exists, as E2B's build does (`useradd --create-home`, then sudo without a
 * password): uid 1000 where it is free (else the next free one, as useradd picks), a group of its
 * own, a home from /etc/skel, its shell bash where the image has it (else /bin/sh), and, where the
 * image has sudo, an /etc/sudoers.d entry. Also root's entry and home and /tmp where missing (a
 * rootfs of a static busybox has no /etc at all). Returns what it did, for the log.
 */
export function ensureAccount(name: string, root = '/'): string[] {
  const at = (p: string) => join(root, p);
  const done: string[] = [];
  if (!existsSync(at('etc'))) mkdirSync(at('etc'), { mode: 0o755 });
  const shell = existsSync(at('bin/bash')) ? '/bin/bash' : '/bin/sh';

  let users = entries(read(at('etc/passwd')));
  let groups = entries(read(at('etc/group')));
  if (!users.some((u) => u.name === 'root')) {
    append(at('etc/passwd'), [`root:x:0:0:root:/root:${shell}`]);
    done.push('added root to /etc/passwd');
    users = entries(read(at('etc/passwd')));
  }
  if (!groups.some((g) => g.name === 'root')) {
    append(at('etc/group'), ['root:x:0:']);
    groups = entries(read(at('etc/group')));
  }
  if (!existsSync(at('root'))) mkdirSync(at('root'), { mode: 0o700 });
  if (!existsSync(at('tmp'))) {
    mkdirSync(at('tmp'));
    chmodSync(at('tmp'), 0o1777);
  }

  if (users.some((u) => u.name === name)) return done;
  const uid = freeId(users, 1000);
  const own = groups.find((g) => g.name === name);
  const gid = own ? own.id : freeId(groups, groups.some((g) => g.id === uid) ? 1000 : uid);
  const home = `/home/${name}`;
  append(at('etc/passwd'), [`${name}:x:${uid}:${gid}::${home}:${shell}`]);
  if (!own) append(at('etc/group'), [`${name}:x:${gid}:`]);
  const days = Math.floor(Date.now() / 86_400_000);
  if (existsSync(at('etc/shadow'))) append(at('etc/shadow'), [`${name}:!:${days}:0:99999:7:::`], 0o640);
  if (existsSync(at('etc/gshadow')) && !own) append(at('etc/gshadow'), [`${name}:!::`], 0o640);
  if (!existsSync(at('home'))) mkdirSync(at('home'), { mode: 0o755 });
  if (!existsSync(at(home))) {
    if (existsSync(at('etc/skel'))) cpSync(at('etc/skel'), at(home), { recursive: true, verbatimSymlinks: true });
    else mkdirSync(at(home));
    chmodSync(at(home), 0o755);
    chownTree(at(home), uid, gid);
  }
  // sudo without a password, as on E2B, where the image has sudo (a minimal one may not).
  if (existsSync(at('usr/bin/sudo')) && !existsSync(at(`etc/sudoers.d/${name}`))) {
    mkdirSync(at('etc/sudoers.d'), { recursive: true, mode: 0o755 });
    writeFileSync(at(`etc/sudoers.d/${name}`), `${name} ALL=(ALL:ALL) NOPASSWD: ALL\n`, { mode: 0o440 });
  }
  done.push(`added ${name} (uid ${uid}, gid ${gid}, ${home}, ${shell})`);
  return done;
}
