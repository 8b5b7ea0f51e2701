// What `npm start` and `npm test` do before anything else on a bare machine: install the system
// packages the runtime needs, install npm dependencies, build every workspace.
import { execFileSync, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

// command → Debian package providing it
const SYSTEM_PACKAGES = {
  runc: 'runc',
  mmdebstrap: 'mmdebstrap',
  newuidmap: 'uidmap',
  unshare: 'util-linux',
  tar: 'tar',
  mount: 'mount',
  // the read-only image of the agent's files (runtime/agent-files.ts)
  mke2fs: 'e2fsprogs',
  // builds sandlot-idmap (packages/server/native); gcc brings libc6-dev, its headers, as recommended
  cc: 'gcc',
  losetup: 'mount',
  'mkfs.ext4': 'e2fsprogs',
  // sandboxes' networks (packages/server/src/network): veths and namespaces, firewall and NAT rules,
  // and forgetting a removed sandbox's connections
  ip: 'iproute2',
  nft: 'nftables',
  conntrack: 'conntrack',
}

const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0
const run = (cmd, args, opts = {}) => execFileSync(cmd, args, { stdio: 'inherit', cwd: root, ...opts })

export function ensureSystemPackages() {
  const runtime = process.env.SANDLOT_RUNTIME ?? 'runc'
  const wanted = { ...SYSTEM_PACKAGES, [runtime]: runtime }
  const missing = [...new Set(Object.entries(wanted).filter(([cmd]) => !has(cmd)).map(([, pkg]) => pkg))]
  if (missing.length === 0) return
  if (process.getuid?.() !== 0) {
    throw new Error(`Missing system packages: ${missing.join(' ')}. Install them as root: apt-get install ${missing.join(' ')}`)
  }
  console.log(`[setup] installing ${missing.join(' ')} from Debian`)
  run('apt-get', ['update', '-qq'])
  run('apt-get', ['install', '-y', '-qq', ...missing], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
}

export function ensureNpmDependencies() {
  const marker = path.join(root, 'node_modules/.package-lock.json')
  const lock = path.join(root, 'package-lock.json')
  if (fs.existsSync(marker) && fs.statSync(marker).mtimeMs >= fs.statSync(lock).mtimeMs) return
  console.log('[setup] installing npm dependencies (npm ci)')
  run('npm', ['ci', '--no-audit', '--no-fund'])
}

export function build() {
  console.log('[setup] building')
  run('node', ['scripts/build.mjs'])
}

export function setup() {
  ensureSystemPackages()
  ensureNpmDependencies()
  build()
}
