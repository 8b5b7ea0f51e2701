// Test fixtures for OCI images: a local registry on loopback (Debian's docker-registry, storage in a
// directory of the test's), optionally behind basic auth and a self-signed certificate, and images
// the tests make themselves with umoci (layers from directories or from raw tar entries, any config)
// and push with skopeo. No public registry is reachable from these machines.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'

export interface Registry {
  /** host:port */
  host: string
  /** The self-signed certificate's file, when it speaks https. */
  cert?: string
  stop(): Promise<void>
}

/** Starts docker-registry on 127.0.0.1:port; with auth, behind htpasswd basic auth and a self-signed certificate. */
export async function startRegistry(o: { port: number; dir: string; auth?: { username: string; password: string } }): Promise<Registry> {
  fs.mkdirSync(o.dir, { recursive: true })
  const host = `127.0.0.1:${o.port}`
  let extra = ''
  let cert: string | undefined
  if (o.auth) {
    const htpasswd = path.join(o.dir, 'htpasswd')
    fs.writeFileSync(htpasswd, execFileSync('htpasswd', ['-Bbn', o.auth.username, o.auth.password]))
    cert = path.join(o.dir, 'cert.pem')
    const key = path.join(o.dir, 'key.pem')
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
      '-subj', '/CN=sandlot-test-registry', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' })
    extra = `  tls:\n    certificate: ${cert}\n    key: ${key}\nauth:\n  htpasswd:\n    realm: sandlot-test\n    path: ${htpasswd}\n`
  }
  const config = path.join(o.dir, 'config.yml')
  fs.writeFileSync(config, `version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: ${path.join(o.dir, 'storage')}\n  delete:\n    enabled: true\nhttp:\n  addr: ${host}\n${extra}`)
  const child: ChildProcess = spawn('docker-registry', ['serve', config], { stdio: ['ignore', 'ignore', fs.openSync(path.join(o.dir, 'registry.log'), 'w')] })
  const stopNow = () => child.exitCode === null && child.kill('SIGTERM')
  process.on('exit', stopNow)
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited: ${fs.readFileSync(path.join(o.dir, 'registry.log'), 'utf8')}`)
    const listening = await new Promise<boolean>((resolve) => {
      const socket = net.connect(o.port, '127.0.0.1', () => {
        socket.destroy()
        resolve(true)
      })
      socket.on('error', () => resolve(false))
    })
    if (listening) break
    if (i > 100) throw new Error(`docker-registry did not listen on ${host}`)
    await new Promise((r) => setTimeout(r, 100))
  }
  return {
    host,
    cert,
    async stop() {
      if (child.exitCode !== null) return
      const exited = new Promise((r) => child.once('exit', r))
      child.kill('SIGTERM')
      await exited
    },
  }
}

export interface TarEntry {
  name: string
  type?: 'file' | 'dir' | 'symlink' | 'hardlink' | 'char'
  data?: string
  mode?: number
  uid?: number
  gid?: number
  linkname?: string
}

/** A tar archive with exactly these entries, names as given (`../x`, `/abs`: things tar would not write). */
export function rawTar(entries: TarEntry[]): Buffer {
  const blocks: Buffer[] = []
  const typeflag = { file: '0', hardlink: '1', symlink: '2', char: '3', dir: '5' }
  for (const e of entries) {
    const type = e.type ?? 'file'
    const data = Buffer.from(type === 'file' ? e.data ?? '' : '')
    const h = Buffer.alloc(512)
    const put = (s: string, at: number, len: number) => h.write(s, at, len, 'utf8')
    const octal = (n: number, at: number, len: number) => put(`${n.toString(8).padStart(len - 1, '0')}\0`, at, len)
    if (Buffer.byteLength(e.name) > 100) throw new Error(`tar name too long: ${e.name}`)
    put(e.name, 0, 100)
    octal(e.mode ?? (type === 'dir' ? 0o755 : type === 'symlink' ? 0o777 : 0o644), 100, 8)
    octal(e.uid ?? 0, 108, 8)
    octal(e.gid ?? 0, 116, 8)
    octal(data.length, 124, 12)
    octal(1_700_000_000, 136, 12)
    put('        ', 148, 8)
    put(typeflag[type], 156, 1)
    put(e.linkname ?? '', 157, 100)
    put('ustar\u000000', 257, 8)
    if (type === 'char') {
      octal(1, 329, 8)
      octal(3, 337, 8)
    }
    let sum = 0
    for (const b of h) sum += b
    put(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8)
    blocks.push(h, data, Buffer.alloc((512 - (data.length % 512)) % 512))
  }
  blocks.push(Buffer.alloc(1024))
  return Buffer.concat(blocks)
}

/** A layer: a directory archived as it is, raw tar bytes, or a tar file. */
export type Layer = { dir: string } | { tar: Buffer } | { file: string }

export interface ImageSpec {
  layers: Layer[]
  env?: string[]
  workdir?: string
  user?: string
  entrypoint?: string[]
  cmd?: string[]
  architecture?: string
}

/** Makes an image in the OCI layout `layout` under `tag` with umoci: one layer per entry, then the config. */
export function makeImage(layout: string, tag: string, spec: ImageSpec): void {
  const umoci = (...args: string[]) => execFileSync('umoci', args, { stdio: ['ignore', 'ignore', 'pipe'] })
  if (!fs.existsSync(path.join(layout, 'index.json'))) umoci('init', '--layout', layout)
  const image = `${layout}:${tag}`
  umoci('new', '--image', image)
  for (const [i, layer] of spec.layers.entries()) {
    if ('file' in layer) {
      umoci('raw', 'add-layer', '--image', image, layer.file)
      continue
    }
    const file = `${layout}.layer-${tag}-${i}.tar`
    if ('dir' in layer) execFileSync('tar', ['--numeric-owner', '--xattrs', '-C', layer.dir, '-cf', file, '.'])
    else fs.writeFileSync(file, layer.tar)
    umoci('raw', 'add-layer', '--image', image, file)
    fs.rmSync(file)
  }
  const args = ['config', '--image', image, '--no-history']
  for (const e of spec.env ?? []) args.push('--config.env', e)
  if (spec.workdir) args.push('--config.workingdir', spec.workdir)
  if (spec.user) args.push('--config.user', spec.user)
  for (const e of spec.entrypoint ?? []) args.push('--config.entrypoint', e)
  for (const c of spec.cmd ?? []) args.push('--config.cmd', c)
  if (spec.architecture) args.push('--architecture', spec.architecture)
  umoci(...args)
}

/**
 * Adds to `layout` an image index tagged `tag` whose entries are the given tags' manifests, each
 * declared for the platform given (os/architecture).
 */
export function makeIndex(layout: string, tag: string, entries: { tag: string; platform: string }[]): void {
  const indexFile = path.join(layout, 'index.json')
  const top = JSON.parse(fs.readFileSync(indexFile, 'utf8')) as { manifests: { digest: string; size: number; mediaType: string; annotations?: Record<string, string> }[] }
  const manifests = entries.map((e) => {
    const d = top.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === e.tag)
    if (!d) throw new Error(`no tag ${e.tag} in ${layout}`)
    const [os, architecture] = e.platform.split('/')
    return { mediaType: d.mediaType, digest: d.digest, size: d.size, platform: { os, architecture } }
  })
  const blob = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests }))
  const hex = crypto.createHash('sha256').update(blob).digest('hex')
  fs.writeFileSync(path.join(layout, 'blobs/sha256', hex), blob)
  top.manifests.push({ mediaType: 'application/vnd.oci.image.index.v1+json', digest: `sha256:${hex}`, size: blob.length, annotations: { 'org.opencontainers.image.ref.name': tag } })
  fs.writeFileSync(indexFile, JSON.stringify(top))
}

/** Pushes layout:tag to the registry as name:tag (an index with all its images). */
export function push(layout: string, tag: string, registry: Registry, name: string, creds?: { username: string; password: string }): void {
  execFileSync('skopeo', ['copy', '--all', '--quiet', '--dest-tls-verify=false', ...(creds ? ['--dest-creds', `${creds.username}:${creds.password}`] : []),
    `oci:${layout}:${tag}`, `docker://${registry.host}/${name}`], { stdio: ['ignore', 'ignore', 'pipe'] })
}
