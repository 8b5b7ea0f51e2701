// A build's base from an OCI image (E2B's fromImage): pulled and unpacked by image/ into
// $SANDLOT_HOME/images/<digest>/rootfs (kept by digest, so an unchanged image is pulled once more
// but unpacked once), owned by the templates' ids like the base template. Its Env and WorkingDir
// become the build's; its User runs the steps and is the template's user when the image has that
// account, else `user` (E2B's user phase), which a first step makes where the image lacks it; its
// Entrypoint+Cmd is the start command unless the build gives one.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import type { Logger } from 'pino'
import type { IdRange } from '../runtime/idmap.js'
import type { TemplateConfig } from '../store/templates.js'
import { pullImage } from './image/index.js'

export interface ImageBase {
  ref: string
  username?: string
  password?: string
}

export interface PulledBase {
  rootfs: string
  digest: string
  config: TemplateConfig
  /** Entrypoint+Cmd as one shell command, if the image has either (the start command unless the build gives one). */
  startCmd?: string
  /** What the log should say about how the image's User and start were taken. */
  notes: string[]
}

/** A shell word: single-quoted, so nothing in it is expanded. */
export const shellQuote = (s: string) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`)

/**
 * The account an image's User ("name", "uid", "name:group", "uid:gid") names in its /etc/passwd, or
 * undefined. The file is read on the host from the unpacked rootfs, so nothing on the way may be a
 * symbolic link (an image's /etc could point at the host's).
 */
export function accountOf(rootfs: string, user: string): string | undefined {
  const who = user.split(':')[0]!
  if (!who) return undefined
  const etc = path.join(rootfs, 'etc')
  const file = path.join(etc, 'passwd')
  let text: string
  try {
    if (!fs.lstatSync(etc).isDirectory() || !fs.lstatSync(file).isFile() || fs.lstatSync(file).size > 4 * 2 ** 20) return undefined
    const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW)
    try {
      text = fs.readFileSync(fd, 'utf8')
    } finally {
      fs.closeSync(fd)
    }
  } catch {
    return undefined
  }
  const byUid = /^\d+$/.test(who)
  for (const line of text.split('\n')) {
    const [name, , uid] = line.split(':')
    if (name && /^[a-z_][a-z0-9_.-]{0,31}\$?$/i.test(name) && (byUid ? uid === who : name === who)) return name
  }
  return undefined
}

export async function pullBase(image: ImageBase, o: { imagesDir: string; idRange: IdRange; log: Logger; insecureRegistries: string[]; maxCompressedBytes: number; maxUnpackedBytes: number; signal?: AbortSignal }): Promise<PulledBase> {
  fs.mkdirSync(o.imagesDir, { recursive: true, mode: 0o711 })
  const scratch = path.join(o.imagesDir, `pull-${process.pid}-${crypto.randomBytes(6).toString('hex')}`)
  fs.mkdirSync(scratch, { mode: 0o711 })
  try {
    const pulled = await pullImage(
      { ref: image.ref, username: image.username, password: image.password, insecureRegistries: o.insecureRegistries, maxCompressedBytes: o.maxCompressedBytes, maxUnpackedBytes: o.maxUnpackedBytes, signal: o.signal },
      path.join(scratch, 'rootfs'),
      o.idRange,
      o.log,
    )
    const dir = path.join(o.imagesDir, pulled.digest.replace(/^sha256:/, ''))
    // The same digest unpacked before stays (builds and sandboxes may stand on it); else this one moves in.
    if (!fs.existsSync(path.join(dir, 'rootfs'))) {
      fs.rmSync(dir, { recursive: true, force: true })
      fs.renameSync(scratch, dir)
    } else {
      // In use again: the collection (builds.ts collectLayers) leaves recently used images alone.
      const now = new Date()
      fs.utimesSync(dir, now, now)
    }
    // Root's alone, as the templates: a host user who ran the image's setuid files could change it.
    fs.chmodSync(dir, 0o700)
    const rootfs = path.join(dir, 'rootfs')
    const notes: string[] = []
    // Docker's empty User is root; E2B's user phase makes it `user`, as here unless the image names one.
    let user = 'user'
    if (pulled.user) {
      const account = accountOf(rootfs, pulled.user)
      if (account) {
        user = account
        notes.push(`the image's user ${JSON.stringify(pulled.user)} (${account}) runs the steps and is the template's user`)
      } else notes.push(`the image's user ${JSON.stringify(pulled.user)} is not an account in the image; the steps run as "user"`)
    }
    const start = [...(pulled.entrypoint ?? []), ...(pulled.cmd ?? [])]
    return {
      rootfs,
      digest: pulled.digest,
      config: { env: pulled.env, workdir: pulled.workdir || null, user, startCmd: null, readyCmd: null },
      ...(start.length && { startCmd: start.map(shellQuote).join(' ') }),
      notes,
    }
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true })
  }
}

/**
 * E2B's user phase for an image: `user` (uid 1000 where free) with a home, in the sudo group and
 * sudoers where the image has sudo, made as root when missing; useradd (glibc images) or busybox's
 * adduser (Alpine).
 */
export const ENSURE_USER = [
  'if ! id user >/dev/null 2>&1; then',
  '  if command -v useradd >/dev/null 2>&1; then useradd --create-home --shell /bin/bash --uid 1000 user 2>/dev/null || useradd --create-home --shell /bin/bash user;',
  '  else adduser -D -u 1000 user 2>/dev/null || adduser -D user; fi',
  'fi',
  'if [ -d /etc/sudoers.d ]; then echo "user ALL=(ALL:ALL) NOPASSWD: ALL" > /etc/sudoers.d/user && chmod 0440 /etc/sudoers.d/user; fi',
].join('\n')
