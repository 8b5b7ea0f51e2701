// A build's base from an OCI image (E2B's fromImage): pulled and unpacked by image/ into
// $SANDLOT_HOME/images/<digest>/rootfs (kept by digest, so an unchanged image is pulled once more
// but unpacked once), owned by the templates' ids like the base template. Its Env and WorkingDir
// become the build's; steps run as `user` (E2B's user phase), which a first step makes where the
// image lacks it. The image's Cmd/Entrypoint are not run: a template's start command is its own.
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
  /** What the log should say about the image's own start (Cmd/Entrypoint), if it has one. */
  note?: string
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
    const start = [...(pulled.entrypoint ?? []), ...(pulled.cmd ?? [])]
    return {
      rootfs: path.join(dir, 'rootfs'),
      digest: pulled.digest,
      config: { env: pulled.env, workdir: pulled.workdir || null, user: 'user', startCmd: null, readyCmd: null },
      ...(start.length && { note: `the image's own command (${JSON.stringify(start)}) is not run; give the template a start command to run it` }),
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
