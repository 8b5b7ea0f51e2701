// What `npm start` and `npm test` do before anything else on a bare machine: install the system
// packages the runtime needs, install npm dependencies, build the workspaces that changed.
import { execFileSync, spawnSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { WORKSPACES, buildWorkspaces } from './build.mjs'

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

// command → Debian package providing it
const SYSTEM_PACKAGES = {
  runc: 'runc',
  mmdebstrap: 'mmdebstrap',
  newuidmap: 'uidmap',
  unshare: 'util-linux',
  tar: 'tar',
  mount: 'mount',
  // the read-only image of the agent's files (runtime/agent-files.ts), with the shared libraries
  // ldd names for node
  mke2fs: 'e2fsprogs',
  ldd: 'libc-bin',
  // builds sandlot-idmap (packages/server/native); gcc brings libc6-dev, its headers, as recommended
  cc: 'gcc',
  losetup: 'mount',
  'mkfs.ext4': 'e2fsprogs',
  // sandboxes' networks (packages/server/src/network): veths and namespaces, firewall and NAT rules,
  // and forgetting a removed sandbox's connections
  ip: 'iproute2',
  nft: 'nftables',
  conntrack: 'conntrack',
  // the local CA and server certificate for https:// (packages/server/src/tls/certs.ts)
  openssl: 'openssl',
  // templates from OCI images (packages/server/src/templates/image): skopeo pulls, umoci unpacks
  skopeo: 'skopeo',
  umoci: 'umoci',
  // what a zstd layer unpacks to, counted before umoci unpacks it (templates/image/unpacked-size.ts)
  zstd: 'zstd',
  // each sandbox's own memory and CPUs in free, top and /proc (runtime/lxcfs.ts)
  lxcfs: 'lxcfs',
}

// What only the tests need, installed by `npm test` alone (never by `npm start`: Debian's
// docker-registry starts a registry service of its own where systemd runs).
const TEST_PACKAGES = {
  // a local OCI registry on loopback, and its htpasswd file, for test/oci-image.test.ts
  'docker-registry': 'docker-registry',
  htpasswd: 'apache2-utils',
  // a static busybox: the test images' tiny rootfs (oci-image, any-image)
  busybox: 'busybox-static',
  // musl's loader and libc: test/any-image.test.ts's image without glibc
  'musl-gcc': 'musl-tools',
}

const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0
const run = (cmd, args, opts = {}) => execFileSync(cmd, args, { stdio: 'inherit', cwd: root, ...opts })

export function ensureSystemPackages({ forTests = false } = {}) {
  const runtime = process.env.SANDLOT_RUNTIME ?? 'runc'
  const wanted = { ...SYSTEM_PACKAGES, [runtime]: runtime, ...(forTests ? TEST_PACKAGES : {}) }
  const missing = [...new Set(Object.entries(wanted).filter(([cmd]) => !has(cmd)).map(([, pkg]) => pkg))]
  if (missing.length === 0) return
  if (process.getuid?.() !== 0) {
    throw new Error(`Missing system packages: ${missing.join(' ')}. Install them as root: apt-get install ${missing.join(' ')}`)
  }
  console.log(`[setup] installing ${missing.join(' ')} from Debian`)
  run('apt-get', ['update', '-qq'])
  run('apt-get', ['install', '-y', '-qq', ...missing], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
}

/**
 * Port previews are reached at <port>-<id>.sandlot.localhost by default. Browsers and curl resolve
 * every *.localhost to loopback by themselves; Node and other programs ask the system resolver,
 * which does so with libnss-myhostname on the hosts line of /etc/nsswitch.conf. Idempotent.
 */
export function ensureLocalhostNames() {
  const resolves = () => spawnSync('getent', ['hosts', 'probe.sandlot.localhost'], { stdio: 'ignore' }).status === 0
  if (resolves()) return
  if (process.getuid?.() !== 0) {
    console.warn('[setup] *.localhost names do not resolve here: as root, apt-get install libnss-myhostname (port previews at <port>-<id>.sandlot.localhost need it)')
    return
  }
  const installed = spawnSync('dpkg-query', ['-W', '-f=${Status}', 'libnss-myhostname'], { encoding: 'utf8' }).stdout?.includes('install ok installed')
  if (!installed) {
    console.log('[setup] installing libnss-myhostname from Debian (so *.localhost resolves to this machine)')
    run('apt-get', ['update', '-qq'])
    run('apt-get', ['install', '-y', '-qq', 'libnss-myhostname'], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
  }
  const file = '/etc/nsswitch.conf'
  const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : ''
  const hosts = /^hosts:(.*)$/m.exec(text)
  if (!hosts) fs.writeFileSync(file, `${text}${text && !text.endsWith('\n') ? '\n' : ''}hosts:          files myhostname dns\n`)
  else if (!/\bmyhostname\b/.test(hosts[1])) {
    // After "files" (so /etc/hosts still wins), before dns.
    const sources = hosts[1].trim().split(/\s+/)
    const at = sources.indexOf('files') + 1
    sources.splice(at, 0, 'myhostname')
    fs.writeFileSync(file, text.replace(hosts[0], `hosts:          ${sources.join(' ')}`))
  }
  if (!resolves()) console.warn('[setup] *.localhost still does not resolve: check the hosts line of /etc/nsswitch.conf')
}

export function ensureNpmDependencies() {
  const marker = path.join(root, 'node_modules/.package-lock.json')
  const lock = path.join(root, 'package-lock.json')
  if (fs.existsSync(marker) && fs.statSync(marker).mtimeMs >= fs.statSync(lock).mtimeMs) return
  console.log('[setup] installing npm dependencies (npm ci)')
  run('npm', ['ci', '--no-audit', '--no-fund'])
}

/** What every workspace's build depends on besides its own files: a change rebuilds them all. */
const SHARED_INPUTS = ['scripts/build.mjs', 'package-lock.json', 'tsconfig.base.json']

/** A hash of a workspace's files but its outputs and tests, with the shared inputs and Node's version. */
function workspaceHash(dir) {
  const hash = crypto.createHash('sha256').update(process.version)
  for (const f of SHARED_INPUTS) hash.update(f).update(fs.readFileSync(path.join(root, f)))
  const skip = new Set(['dist', 'node_modules', 'test', 'gen'])
  const walk = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const file = path.join(d, e.name)
      if (e.isDirectory()) {
        if (!skip.has(e.name)) walk(file)
      } else if (e.isFile()) hash.update(`${path.relative(root, file)}\0`).update(fs.readFileSync(file))
    }
  }
  walk(path.join(root, dir))
  return hash.digest('hex')
}

/** Each workspace's hash at its last successful build. */
const BUILD_STAMPS = path.join(root, 'node_modules/.sandlot-build.json')

/**
 * The workspaces to build, with the hash each will have been built from: those whose files (or the
 * shared inputs) changed since their last build, whose outputs are missing, and those that use one
 * of them; all with SANDLOT_REBUILD=1.
 */
export function staleWorkspaces(stamps = readStamps()) {
  const stale = new Map()
  for (const w of WORKSPACES) {
    const hash = workspaceHash(w.dir)
    const changed = stamps[w.name] !== hash || w.outputs.some((o) => !fs.existsSync(path.join(root, w.dir, o)))
    if (changed || process.env.SANDLOT_REBUILD === '1' || w.uses.some((u) => stale.has(u))) stale.set(w.name, hash)
  }
  return stale
}

function readStamps() {
  try {
    return JSON.parse(fs.readFileSync(BUILD_STAMPS, 'utf8'))
  } catch {
    return {}
  }
}

/** Builds the workspaces that changed since their last build, and those built from them. */
export function build() {
  const stamps = readStamps()
  const stale = staleWorkspaces(stamps)
  if (stale.size === 0) return
  console.log(`[setup] building ${[...stale.keys()].join(', ')}`)
  // A build that fails half-way leaves the ones after it to build next time.
  for (const name of stale.keys()) delete stamps[name]
  fs.writeFileSync(BUILD_STAMPS, JSON.stringify(stamps))
  for (const [name, hash] of stale) {
    buildWorkspaces([name])
    stamps[name] = hash
    fs.writeFileSync(BUILD_STAMPS, JSON.stringify(stamps))
  }
}

/** Sandboxes need root (mounts, namespaces, cgroups, nftables): say so before doing anything. */
export function requireRoot(what) {
  if (process.getuid?.() === 0) return
  console.error(`${what} needs root: sandlotd creates mounts, namespaces, cgroups and firewall rules for sandboxes.\nRun it as root, e.g.: sudo npm ${what === 'npm test' ? 'test' : 'start'}`)
  process.exit(1)
}

export function setup({ forTests = false } = {}) {
  requireRoot(forTests ? 'npm test' : 'npm start')
  ensureSystemPackages({ forTests })
  ensureLocalhostNames()
  ensureNpmDependencies()
  build()
}
