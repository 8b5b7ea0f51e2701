// The base template: a Debian 12 rootfs built from Debian's packages with mmdebstrap, owned by the
// templates' id range (no sandbox's), cached under $SANDLOT_HOME/templates and rebuilt only when its
// recipe changes. Each sandbox sees it through an idmapped mount onto its own ids (runtime/oci.ts).
import { spawn } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import type { Logger } from 'pino'
import type { IdRange } from '../runtime/idmap.js'

export interface TemplateRecipe {
  name: string
  suite: string
  packages: string[]
  /** Shell commands run by mmdebstrap against the finished rootfs ("$1" is its path). */
  customize: string[]
}

export const BASE_RECIPE: TemplateRecipe = {
  name: 'base',
  suite: 'bookworm',
  packages: [
    'bash', 'python3', 'python3-pip', 'python-is-python3', 'curl', 'git', 'sudo', 'procps', 'iproute2',
    'ca-certificates', 'less', 'nano', 'xz-utils', 'unzip',
    // Node.js LTS and npm from Debian, as E2B's base has them.
    'nodejs', 'npm',
    // The agent needs nothing of the template (it brings its loader, libraries, init and exec
    // helper on /opt/sandlot): what is here is for users.
  ],
  customize: [
    'chroot "$1" useradd --create-home --uid 1000 --user-group --shell /bin/bash --groups sudo user',
    'echo "user ALL=(ALL:ALL) NOPASSWD: ALL" > "$1/etc/sudoers.d/user" && chmod 0440 "$1/etc/sudoers.d/user"',
    // Mount points for the agent, the host's node binary and the per-sandbox run directory.
    'mkdir -p "$1/opt/sandlot/bin" "$1/opt/sandlot/agent" "$1/opt/sandlot/node_modules/node-pty" "$1/run/sandlot"',
    'touch "$1/opt/sandlot/bin/node"',
    // pip may install for the user without --break-system-packages, as in E2B's images.
    'printf "[global]\\nbreak-system-packages = true\\n" > "$1/etc/pip.conf"',
    // Every command of E2B's is a login shell (`bash -l -c`), whose /etc/profile forks `id -u` to pick
    // root's PATH: bash knows it as $EUID (3.75 → 2.4 ms a login shell here); sh still asks `id`.
    // base-files keeps an edited /etc/profile across upgrades (it is no conffile: its postinst
    // replaces only an unchanged one). The grep fails the build if Debian's text ever changes.
    `sed -i 's/"$(id -u)"/"\${EUID:-$(id -u)}"/g' "$1/etc/profile" && grep -q 'EUID:-' "$1/etc/profile"`,
    'rm -rf "$1/var/cache/apt/archives"/*.deb "$1/var/lib/apt/lists"/*',
  ],
}

export function recipeHash(recipe: TemplateRecipe, mirror: string): string {
  return crypto.createHash('sha256').update(JSON.stringify({ recipe, mirror, v: 1 })).digest('hex').slice(0, 16)
}

export function debianSources(mirror: string, securityMirror: string): string[] {
  return [
    `deb ${mirror} bookworm main`,
    `deb ${mirror} bookworm-updates main`,
    `deb ${securityMirror} bookworm-security main`,
  ]
}

/**
 * mmdebstrap's phases as the log shows them, numbered so a person sees how far the build is; its
 * other lines (hooks, temp dirs, apt's own output) go to the debug level.
 */
const MMDEBSTRAP_PHASES: [RegExp, string][] = [
  [/^I: running apt-get update/, '[1/5] updating the package lists'],
  [/^I: downloading packages/, '[2/5] downloading packages'],
  [/^I: extracting archives/, '[3/5] unpacking the essential packages'],
  [/^I: installing remaining packages/, '[4/5] installing packages (the longest step)'],
  [/^I: creating tarball/, '[5/5] packing the rootfs'],
]

/** The level and message a tool's output line is logged with (undefined: debug, as it is). */
type LineView = (line: string) => { level: 'info' | 'warn'; msg: string } | undefined

const mmdebstrapView: LineView = (line) => {
  const phase = MMDEBSTRAP_PHASES.find(([re]) => re.test(line))
  if (phase) return { level: 'info', msg: phase[1] }
  if (/^[WE]: /.test(line)) return { level: 'warn', msg: line }
  return undefined
}

function run(cmd: string, args: string[], log: Logger, step: string, view: LineView = () => undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    const tail: string[] = []
    const onLine = (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n')) {
        if (!line.trim()) continue
        tail.push(line)
        if (tail.length > 20) tail.shift()
        const shown = view(line)
        if (shown) log[shown.level]({ step }, shown.msg)
        else log.debug({ step }, line)
      }
    }
    child.stdout.on('data', onLine)
    child.stderr.on('data', onLine)
    child.on('error', (err) =>
      reject(new Error(`${step}: cannot run ${cmd} (${(err as NodeJS.ErrnoException).code}); is it installed? ${err.message}`)),
    )
    child.on('exit', (code, signal) => {
      if (code === 0) resolve()
      else reject(new Error(`${step} failed (${signal ?? `exit ${code}`}):\n${tail.join('\n')}`))
    })
  })
}

export interface BuildOptions {
  recipe: TemplateRecipe
  /** Final location of the rootfs directory; created only when the build succeeds. */
  rootfs: string
  /** The host ids that own the files: the templates' range. */
  idRange: IdRange
  mirror: string
  securityMirror: string
  log: Logger
}

/**
 * Builds the rootfs into a scratch directory beside the target and renames it into place at the end,
 * so a failed build leaves no half-template behind.
 */
export async function buildTemplate(o: BuildOptions): Promise<void> {
  const scratch = `${o.rootfs}.build-${process.pid}-${Date.now()}`
  const tarball = `${scratch}.tar`
  fs.mkdirSync(path.dirname(o.rootfs), { recursive: true })
  // The unpack, as the templates' ids, must get through to the scratch directory and the tarball.
  fs.chmodSync(path.dirname(o.rootfs), 0o711)
  try {
    const started = Date.now()
    o.log.info({ template: o.recipe.name }, `building template "${o.recipe.name}" from Debian packages (${o.recipe.packages.length} packages and their dependencies; once: one to three minutes on an idle machine, longer on a busy one)`)
    await run(
      'mmdebstrap',
      [
        '--mode=unshare',
        '--variant=minbase',
        `--include=${o.recipe.packages.join(',')}`,
        ...o.recipe.customize.map((c) => `--customize-hook=${c}`),
        o.recipe.suite,
        tarball,
        ...debianSources(o.mirror, o.securityMirror),
      ],
      o.log,
      'mmdebstrap',
      mmdebstrapView,
    )
    // Unpack inside a user namespace mapped onto the templates' range: the files land owned by it,
    // setuid bits and capabilities intact. Device nodes are skipped; the runtime provides /dev.
    fs.mkdirSync(scratch)
    fs.chownSync(scratch, o.idRange.hostId, o.idRange.hostId)
    const map = `${o.idRange.hostId},0,${o.idRange.size}`
    await run(
      'unshare',
      [`--map-users=${map}`, `--map-groups=${map}`, '--setuid', '0', '--setgid', '0',
        'tar', '-xpf', tarball, '-C', scratch, '--same-owner', '--numeric-owner', '--exclude=./dev/*'],
      o.log,
      'unpack',
    )
    fs.rmSync(o.rootfs, { recursive: true, force: true })
    fs.renameSync(scratch, o.rootfs)
    o.log.info({ template: o.recipe.name }, `template "${o.recipe.name}" is ready (built in ${Math.round((Date.now() - started) / 1000)} s)`)
  } catch (err) {
    fs.rmSync(scratch, { recursive: true, force: true })
    throw err
  } finally {
    fs.rmSync(tarball, { force: true })
  }
}
