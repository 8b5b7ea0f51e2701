// What every sandbox gets read-only at /opt/sandlot: all the agent needs, so that it runs in any
// image (glibc of any version, musl, a static busybox, nothing at all) and never uses the template's
// libraries or commands:
//
//   bin/node        the host's node binary, unchanged
//   lib/            the host's dynamic loader (also as lib/ld.so) and every shared library node and
//                   the native modules need (found with ldd at image build time)
//   bin/sandlot-init
//                   the init: the agent's static helper (agent/sandlot-exec --init), no library at
//                   all; execute-only (0711, root's): an exec of a file its caller cannot read leaves
//                   the process non-dumpable and its memory owned by the host's user namespace, so
//                   root in the sandbox (without CAP_SYS_PTRACE there) can neither ptrace pid 1 nor
//                   take its descriptors: the agent's listening socket (fd 3) and its log (fd 1, 2).
//                   A copy: the one the agent runs commands through must stay readable (an unreadable
//                   one would leave them non-dumpable, unable to set their own OOM score)
//   agent/          the agent bundle and its static helper sandlot-exec (packages/agent/native)
//   code-interpreter/ the code interpreter's supervisor and execution server (packages/code-interpreter),
//                   which the code-interpreter-v1 template's start command runs
//   node_modules/   the native modules (node-pty, fs-xattr)
//
// The agent runs as `lib/ld.so --inhibit-cache --library-path /opt/sandlot/lib bin/node …`: the
// loader is told the path on its command line (and reads no ld.so.cache), so the agent and all it
// loads (its native modules too) use these libraries and never the template's /lib, and nothing is
// put in the environment (no LD_LIBRARY_PATH) of the processes it starts, which run on the image's
// own libraries. The binaries are the host's files as they are (no patchelf): nothing to rewrite or
// get wrong when node or glibc is upgraded, and node's build ID and checksums stay the host's.
//
// On a small read-only ext4 filesystem of its own, mounted once per content and bound whole into
// each sandbox. A bind of the host's own paths would show them (the checkout, $SANDLOT_HOME, where
// node is installed) in the sandbox's /proc/self/mountinfo; a bind of this filesystem shows only its
// own root, "/".
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
  /** The code interpreter's bundle (packages/code-interpreter): a template's start command runs it. */
  codeInterpreterDir: string
  /** Native modules by name, each at node_modules/<name>. */
  nativeModules: Record<string, string>
}

/** The loader's name under /opt/sandlot/lib whatever the architecture's (ld-linux-x86-64.so.2, …). */
export const AGENT_LOADER = 'ld.so'

/** Source → place under /opt/sandlot, and the symlinks to make there. */
interface Layout {
  files: [string, string][]
  links: [string, string][]
}

/**
 * The shared libraries `ldd` names for an ELF file on the host, and its loader. A file ldd cannot
 * read (another platform's prebuilt module, a script) has none. A library it cannot find is an error:
 * the agent would not start.
 */
export async function sharedLibraries(file: string): Promise<{ libs: Map<string, string>; loader?: string }> {
  const libs = new Map<string, string>()
  let stdout: string
  try {
    ;({ stdout } = await exec('ldd', [file]))
  } catch {
    return { libs } // "not a dynamic executable": static, or not for this machine
  }
  let loader: string | undefined
  for (const line of stdout.split('\n')) {
    const lib = /^\s*(\S+)\s+=>\s+(.+?)(?:\s+\(0x[0-9a-f]+\))?\s*$/.exec(line)
    if (lib) {
      if (!lib[2]!.startsWith('/')) throw new Error(`${file} needs ${lib[1]}, which this host does not have (ldd: ${lib[2]})`)
      libs.set(lib[1]!, lib[2]!)
      continue
    }
    const interp = /^\s*(\/\S+)\s+\(0x[0-9a-f]+\)\s*$/.exec(line)
    if (interp) loader = interp[1]
  }
  return { libs, loader }
}

/** Every `*.node` file under a directory (the native modules' compiled parts). */
function addons(dir: string): string[] {
  const found: string[] = []
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name)
    if (entry.isDirectory()) found.push(...addons(p))
    else if (entry.name.endsWith('.node')) found.push(p)
  }
  return found
}

async function layout(src: AgentFileSources): Promise<Layout> {
  const files: [string, string][] = [
    [src.nodeBinary, 'bin/node'],
    [path.join(src.agentDir, 'sandlot-exec'), 'bin/sandlot-init'],
    [src.agentDir, 'agent'],
    [src.codeInterpreterDir, 'code-interpreter'],
    ...Object.entries(src.nativeModules).map(([name, dir]): [string, string] => [dir, `node_modules/${name}`]),
  ]
  const libs = new Map<string, string>()
  let loader: string | undefined
  for (const file of [src.nodeBinary, ...Object.values(src.nativeModules).flatMap(addons)]) {
    const found = await sharedLibraries(file)
    for (const [name, at] of found.libs) libs.set(name, at)
    loader ??= found.loader
  }
  if (!loader) throw new Error(`ldd names no dynamic loader for ${src.nodeBinary}: the agent needs a dynamically linked node`)
  const loaderName = path.basename(loader)
  for (const [name, at] of libs) if (name !== loaderName) files.push([at, `lib/${name}`])
  files.push([loader, `lib/${loaderName}`])
  return { files, links: [[loaderName, `lib/${AGENT_LOADER}`]] }
}

/** Files of the image that no one in a sandbox may read, only run (see bin/sandlot-init above). */
const EXECUTE_ONLY = ['bin/sandlot-init']

/** Every file under the sources with its size and mtime: the image is made again when one changes. */
function contentKey(l: Layout): string {
  const hash = crypto.createHash('sha256')
  hash.update(`execute-only\0${EXECUTE_ONLY.join('\0')}\n`)
  const walk = (p: string, as: string) => {
    const st = fs.statSync(p)
    hash.update(`${as}\0${st.mode}\0${st.size}\0${st.mtimeMs}\n`)
    if (st.isDirectory()) for (const name of fs.readdirSync(p).sort()) walk(path.join(p, name), `${as}/${name}`)
  }
  for (const [from, to] of l.files) walk(from, to)
  for (const [target, at] of l.links) hash.update(`${at}\0->${target}\n`)
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
  const files = await layout(src)
  const key = contentKey(files)
  const mnt = path.join(base, key)
  const image = `${mnt}.img`
  if (!(await isMountPoint(mnt))) {
    const staging = `${mnt}.staging`
    fs.rmSync(staging, { recursive: true, force: true })
    for (const [from, to] of files.files) {
      fs.mkdirSync(path.dirname(path.join(staging, to)), { recursive: true })
      fs.cpSync(from, path.join(staging, to), { recursive: true, dereference: true })
    }
    for (const [target, at] of files.links) fs.symlinkSync(target, path.join(staging, at))
    for (const at of EXECUTE_ONLY) fs.chmodSync(path.join(staging, at), 0o711)
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
