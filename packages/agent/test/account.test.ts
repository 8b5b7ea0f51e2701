// E2B's `user` where an image lacks it (account.ts), on rootfs-like directories made here.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ensureAccount } from '../src/account.js';

const made: string[] = [];
after(() => made.forEach((d) => rmSync(d, { recursive: true, force: true })));

function rootfs(files: Record<string, string> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'sandlot-account-'));
  made.push(dir);
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), content);
  }
  return dir;
}
const read = (dir: string, name: string) => readFileSync(join(dir, name), 'utf8');
const owner = (p: string) => `${statSync(p).uid}:${statSync(p).gid}`;

describe('ensureAccount', () => {
  it('makes root, user, their homes and /tmp in a rootfs with no /etc at all', () => {
    const dir = rootfs({ 'bin/sh': '' });
    const done = ensureAccount('user', dir);
    assert.equal(read(dir, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n');
    assert.equal(read(dir, 'etc/group'), 'root:x:0:\nuser:x:1000:\n');
    assert.equal(statSync(join(dir, 'home/user')).mode & 0o7777, 0o755);
    assert.equal(owner(join(dir, 'home/user')), '1000:1000');
    assert.equal(statSync(join(dir, 'root')).mode & 0o7777, 0o700);
    assert.equal(statSync(join(dir, 'tmp')).mode & 0o7777, 0o1777);
    assert.deepEqual(done, ['added root to /etc/passwd', 'added user (uid 1000, gid 1000, /home/user, /bin/sh)']);
    assert.deepEqual(ensureAccount('user', dir), [], 'a second start changes nothing');
  });

  it('takes the next free uid where 1000 is taken (an Ubuntu image), and bash where there is one', () => {
    const dir = rootfs({
      'bin/bash': '',
      'etc/passwd': 'root:x:0:0:root:/root:/bin/bash\nubuntu:x:1000:1000::/home/ubuntu:/bin/bash', // no final newline
      'etc/group': 'root:x:0:\nsudo:x:27:ubuntu\nubuntu:x:1000:\n',
      'etc/shadow': 'root:*:19000:0:99999:7:::\n',
    });
    ensureAccount('user', dir);
    assert.equal(read(dir, 'etc/passwd').split('\n').slice(1).join('\n'), 'ubuntu:x:1000:1000::/home/ubuntu:/bin/bash\nuser:x:1001:1001::/home/user:/bin/bash\n');
    assert.match(read(dir, 'etc/group'), /\nuser:x:1001:\n$/);
    assert.match(read(dir, 'etc/shadow'), /\nuser:!:\d+:0:99999:7:::\n$/);
  });

  it("uses the image's `user` group, copies /etc/skel, and lets the user sudo where sudo is installed", () => {
    const dir = rootfs({
      'etc/passwd': 'root:x:0:0:root:/root:/bin/ash\n',
      'etc/group': 'root:x:0:\nuser:x:2000:\n',
      'etc/skel/.profile': 'export X=1\n',
      'usr/bin/sudo': '',
    });
    writeFileSync(join(dir, 'elsewhere'), '');
    symlinkSync(join(dir, 'elsewhere'), join(dir, 'etc/skel/link'));
    ensureAccount('user', dir);
    assert.match(read(dir, 'etc/passwd'), /\nuser:x:1000:2000::\/home\/user:\/bin\/sh\n$/);
    assert.equal(read(dir, 'etc/group'), 'root:x:0:\nuser:x:2000:\n');
    assert.equal(read(dir, 'home/user/.profile'), 'export X=1\n');
    assert.equal(owner(join(dir, 'home/user/.profile')), '1000:2000');
    assert.equal(owner(join(dir, 'elsewhere')), '0:0', 'a link in the skeleton is chowned itself, never its target');
    assert.equal(read(dir, 'etc/sudoers.d/user'), 'user ALL=(ALL:ALL) NOPASSWD: ALL\n');
    assert.equal(statSync(join(dir, 'etc/sudoers.d/user')).mode & 0o777, 0o440);
  });

  it('leaves an image that has the account as it is', () => {
    const passwd = 'root:x:0:0:root:/root:/bin/bash\nuser:x:1000:1000::/home/user:/bin/bash\n';
    const dir = rootfs({ 'etc/passwd': passwd, 'etc/group': 'root:x:0:\nuser:x:1000:\n', 'usr/bin/sudo': '', 'root/.keep': '', 'tmp/.keep': '' });
    assert.deepEqual(ensureAccount('user', dir), []);
    assert.equal(read(dir, 'etc/passwd'), passwd);
    assert.ok(!existsSync(join(dir, 'home/user')), 'no home is made for an account the image has');
    assert.ok(!existsSync(join(dir, 'etc/sudoers.d')));
  });
});
