// What every sandbox gets read-only at /opt/sandlot (the node binary, the agent bundle and its
// native modules), on a small read-only ext4 filesystem of its own, mounted once per content and
// bound whole into each sandbox. A bind of the host's own paths would show them (the checkout,
// $SANDLOT_HOME, where node is installed) in the sandbox's /proc/self/mountinfo; a bind of this
// filesystem shows only its own root, "/".
import { execFile } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import { mountsUnder } from './layer.js'

const exec = promisify(execFile)

export interface AgentFileSources {
  nodeBinary: string
  agentDir: string
  /** Native modules by name, each at node_modules/<name>. */
  nativeModules: Record<string, string>
}

/** Source → place under /opt/sandlot. */
function layout(src: AgentFileSources): [string, string][] {
  return [
    [src.nodeBinary, 'bin/node'],
    [src.agentDir, 'agent'],
    ...Object.entries(src.nativeModules).map(([name, dir]): [string, string] => [dir, `node_modules/${name}`]),
  ]
}

/** Every file under the sources with its size and mtime: the image is made again when one changes. */
function contentKey(src: AgentFileSources): string {
  const hash = crypto.createHash('sha256')
  const walk = (p: string, as: string) => {
    const st = fs.statSync(p)
    hash.update(`${as}\0${st.mode}\0${st.size}\0${st.mtimeMs}\n`)
    if (st.isDirectory()) for (const name of fs.readdirSync(p).sort()) walk(path.join(p, name), `${as}/${name}`)
  }
  for (const [from, to] of layout(src)) walk(from, to)
  return hash.digest('hex').slice(0, 16)
}

const isMountPoint = async (dir: string) => (await mountsUnder(dir)).includes(dir)

/**
 * Mounts (or finds mounted) the filesystem holding the current agent files under
 * `<home>/agent-files`, and returns its mount point. Older ones are detached lazily: sandboxes
 * started on them keep them until they are gone.
 */
export async function mountAgentFiles(home: string, src: AgentFileSources): Promise<string> {
  const base = path.join(home, 'agent-files')
  fs.mkdirSync(base, { recursive: true, mode: 0o700 })
  const key = contentKey(src)
  const mnt = path.join(base, key)
  const image = `${mnt}.img`
  if (!(await isMountPoint(mnt))) {
    const staging = `${mnt}.staging`
    fs.rmSync(staging, { recursive: true, force: true })
    for (const [from, to] of layout(src)) {
      fs.mkdirSync(path.dirname(path.join(staging, to)), { recursive: true })
      fs.cpSync(from, path.join(staging, to), { recursive: true, dereference: true })
    }
    const { stdout } = await exec('du', ['-sk', staging])
    const kib = Math.ceil(Number(stdout.split('\t')[0]) * 1.2) + 16 * 1024
    fs.rmSync(image, { force: true })
    // mke2fs fills the filesystem from the directory itself (-d): no mount needed to write it.
    await exec('mke2fs', ['-q', '-F', '-t', 'ext4', '-O', '^has_journal', '-m', '0', '-L', 'sandlot-opt', '-d', staging, image, `${kib}k`])
    fs.rmSync(staging, { recursive: true, force: true })
    fs.mkdirSync(mnt, { recursive: true })
    await exec('mount', ['-o', 'loop,ro,nosuid,nodev', image, mnt])
  }
  for (const name of fs.readdirSync(base)) {
    const other = path.join(base, name)
    if (name === key || name === `${key}.img`) continue
    if (await isMountPoint(other)) await exec('umount', ['--lazy', other]).catch(() => {})
    if (!(await isMountPoint(other))) fs.rmSync(other, { recursive: true, force: true })
  }
  return mnt
}

/**
 * Detaches the mount when the daemon stops, so no loop device outlives it: running sandboxes keep
 * their own binds of it (the filesystem lives until the last is gone), and the next start mounts
 * the image again.
 */
export async function unmountAgentFiles(mnt: string): Promise<void> {
  if (await isMountPoint(mnt)) await exec('umount', ['--lazy', mnt]).catch(() => {})
}
