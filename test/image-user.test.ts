// Which account an OCI image's User names (templates/from-image.ts accountOf): by name or uid, with
// or without a group, from the image's /etc/passwd, read on the host with no symbolic link followed
// (an image's /etc or /etc/passwd pointing at the host's files names nothing); and the image's
// Entrypoint+Cmd as one shell command.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, describe, test } from 'node:test'
import { accountOf, shellQuote } from '../packages/server/src/templates/from-image.js'

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'sandlot-image-user-'))
after(() => fs.rmSync(work, { recursive: true, force: true }))

/** A rootfs whose /etc/passwd is `passwd`. */
function rootfs(name: string, passwd: string): string {
  const root = path.join(work, name)
  fs.mkdirSync(path.join(root, 'etc'), { recursive: true })
  fs.writeFileSync(path.join(root, 'etc/passwd'), passwd)
  return root
}

describe("an image's User", () => {
  const root = rootfs('plain', 'root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\napp:x:1001:1001::/home/app:/bin/sh\n')

  test('a name or a uid the image has, with or without a group', () => {
    assert.equal(accountOf(root, 'app'), 'app')
    assert.equal(accountOf(root, '33'), 'www-data')
    assert.equal(accountOf(root, 'app:staff'), 'app')
    assert.equal(accountOf(root, '1001:1001'), 'app')
    assert.equal(accountOf(root, '0'), 'root')
  })

  test('an account the image lacks, an empty User, no /etc/passwd: none', () => {
    assert.equal(accountOf(root, 'ghost'), undefined)
    assert.equal(accountOf(root, '4242'), undefined)
    assert.equal(accountOf(root, ':33'), undefined)
    assert.equal(accountOf(path.join(work, 'missing'), 'app'), undefined)
  })

  test('an /etc or /etc/passwd that is a symbolic link is not followed', () => {
    const elsewhere = rootfs('elsewhere', 'hostonly:x:5000:5000::/home/hostonly:/bin/sh\n')
    const linkedEtc = path.join(work, 'linked-etc')
    fs.mkdirSync(linkedEtc)
    fs.symlinkSync(path.join(elsewhere, 'etc'), path.join(linkedEtc, 'etc'))
    assert.equal(accountOf(linkedEtc, 'hostonly'), undefined)
    const linkedFile = path.join(work, 'linked-file')
    fs.mkdirSync(path.join(linkedFile, 'etc'), { recursive: true })
    fs.symlinkSync(path.join(elsewhere, 'etc/passwd'), path.join(linkedFile, 'etc/passwd'))
    assert.equal(accountOf(linkedFile, 'hostonly'), undefined)
    assert.equal(accountOf(elsewhere, 'hostonly'), 'hostonly', 'the same file read directly names it')
  })

  test('Entrypoint+Cmd words are quoted for the shell only where they need it', () => {
    const words = ['python3', '-m', 'http.server', '8000', "it's", 'a b', '$HOME']
    assert.equal(words.map(shellQuote).join(' '), `python3 -m http.server 8000 'it'\\''s' 'a b' '$HOME'`)
  })
})
