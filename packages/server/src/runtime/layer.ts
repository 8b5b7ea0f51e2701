// A sandbox's own filesystem: a sparse image file holding ext4, on a loop device, mounted nosuid and
// nodev on the host. The overlay's upper and work directories and the sandbox's log live in it, so
// its size and inode count bound what the sandbox writes to the host's disk, and removing it is an
// unmount and the unlinking of one file, however many files the sandbox made. Every step runs in a child process or as one async call: none blocks the event loop.
import { execFile } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'
import { promisify } from 'node:util'

const exec = promisify(execFile)

/**
 * One inode per 8 KiB of disk (ext4's default is 16 KiB): source trees, node_modules and Python
 * packages average well under 16 KiB a file, and inode tables that are never used cost the sparse
 * image nothing. A 2 GiB disk has 262,144 inodes; their tables take 3 % of it.
 */
export const BYTES_PER_INODE = 8192

// No journal (the layer dies with its sandbox, and a host crash ends the sandbox anyway), no
// reserved blocks (the sandbox gets all of it; its root is not the host's), no room kept for online
// growth, inode tables left unwritten: the image starts ~150 KiB on disk, mkfs writes little.
const MKFS_ARGS = ['-q', '-F', '-b', '4096', '-I', '256', '-i', String(BYTES_PER_INODE), '-m', '0', '-O', '^has_journal,^resize_inode', '-E', 'lazy_itable_init=1,nodiscard']
// noinit_itable: the kernel does not zero the inode tables behind it (a sparse file reads as zeros).
const MOUNT_OPTIONS = 'loop,nosuid,nodev,noinit_itable'

export async function checkLayerTools(): Promise<void> {
  try {
    await exec('mkfs.ext4', ['-V'])
  } catch {
    throw new Error('mkfs.ext4 is not installed (each sandbox gets an ext4 filesystem of its own): apt-get install e2fsprogs')
  }
}

/** Makes a sparse image (only what is written takes host disk) and formats it. */
async function format(image: string, sizeMB: number): Promise<void> {
  const file = await fs.open(image, 'wx', 0o600)
  try {
    await file.truncate(sizeMB * 2 ** 20)
  } finally {
    await file.close()
  }
  await exec('mkfs.ext4', [...MKFS_ARGS, image])
}

/**
 * Images of the default size formatted ahead of need (each ~150 KiB on disk), so that a create
 * takes one by a rename and only mounts it; other sizes are formatted when asked for.
 */
export class BlankImages {
  private readonly ready: string[] = []
  private filling = false

  constructor(
    private readonly dir: string,
    private readonly sizeMB: number,
    private readonly keep = 2,
  ) {}

  /** Drops what an earlier run left (its size may have changed) and starts filling. */
  async init(): Promise<void> {
    await fs.rm(this.dir, { recursive: true, force: true })
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 })
    void this.refill()
  }

  /** Puts a formatted image of `sizeMB` at `image`; refill() makes up for it later. */
  async take(image: string, sizeMB: number): Promise<void> {
    const blank = sizeMB === this.sizeMB ? this.ready.pop() : undefined
    // (A rename fails only if the sandboxes are on another filesystem than the blanks.)
    if (blank === undefined || !(await fs.rename(blank, image).then(() => true, () => false))) await format(image, sizeMB)
  }

  /** Formats images until `keep` are ready (in the background: call it once a create is done). */
  async refill(): Promise<void> {
    if (this.filling) return
    this.filling = true
    try {
      while (this.ready.length < this.keep) {
        const image = path.join(this.dir, `${randomUUID()}.img`)
        await format(`${image}.tmp`, this.sizeMB)
        await fs.rename(`${image}.tmp`, image)
        this.ready.push(image)
      }
    } catch {
      // Creates format their own until a later refill works.
    } finally {
      this.filling = false
    }
  }
}

/** Mounts a formatted image (again, for a sandbox that starts again); mount sets up its loop device with autoclear (detached at unmount). */
export async function mountLayer(image: string, mountpoint: string): Promise<void> {
  await fs.mkdir(mountpoint, { recursive: true, mode: 0o700 })
  await exec('mount', ['-t', 'ext4', '-o', MOUNT_OPTIONS, image, mountpoint])
}

/** Mount points at or below `dir`, as this process's mount table has them (read without blocking). */
export async function mountsUnder(dir: string): Promise<string[]> {
  const table = await fs.readFile('/proc/self/mountinfo', 'utf8')
  const found: string[] = []
  for (const line of table.split('\n')) {
    const field = line.split(' ')[4]
    if (!field) continue
    const target = field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)))
    if (target === dir || target.startsWith(`${dir}/`)) found.push(target)
  }
  return found
}

/** Unmounts; a mount still busy (a host process inside it) is detached now and freed when let go. */
export async function unmount(target: string): Promise<void> {
  await exec('umount', [target]).catch(async () => {
    await new Promise((r) => setTimeout(r, 50))
    await exec('umount', ['--lazy', target]).catch(() => {})
  })
}

/** Loop devices whose backing file is `image` (from sysfs, without blocking). */
export async function loopDevicesOf(image: string): Promise<string[]> {
  const names = (await fs.readdir('/sys/block').catch(() => [] as string[])).filter((n) => n.startsWith('loop'))
  const backing = await Promise.all(
    names.map((n) => fs.readFile(`/sys/block/${n}/loop/backing_file`, 'utf8').then((f) => f.trim(), () => '')),
  )
  return names.filter((_, i) => backing[i] === image).map((n) => `/dev/${n}`)
}

/**
 * After the layer is unmounted: detaches a loop device still on the image (one whose mount never
 * happened; on a device still in use this only marks it to go when released) and unlinks the image.
 */
export async function removeLayerImage(image: string): Promise<void> {
  for (const dev of await loopDevicesOf(image)) await exec('losetup', ['-d', dev]).catch(() => {})
  await fs.unlink(image).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err
  })
}
