// Reading what a registry serves, before anything is downloaded: an index (several platforms) or one
// image's manifest (its layers and their compressed sizes), and the image's config (platform, Env,
// WorkingDir, User, Entrypoint, Cmd). Pure functions over the raw bytes.
import crypto from 'node:crypto'
import { ImagePullError } from './errors.js'

const INDEX_TYPES = new Set(['application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.list.v2+json'])
const MANIFEST_TYPES = new Set(['application/vnd.oci.image.manifest.v1+json', 'application/vnd.docker.distribution.manifest.v2+json'])
const SCHEMA1_TYPES = new Set(['application/vnd.docker.distribution.manifest.v1+json', 'application/vnd.docker.distribution.manifest.v1+prettyjws'])
/** Layer types umoci unpacks (0.4.7: tar, gzip and zstd). */
const LAYER_TYPES = new Set([
  'application/vnd.oci.image.layer.v1.tar',
  'application/vnd.oci.image.layer.v1.tar+gzip',
  'application/vnd.oci.image.layer.v1.tar+zstd',
  'application/vnd.docker.image.rootfs.diff.tar.gzip',
])

export interface Descriptor {
  mediaType?: string
  digest: string
  size: number
  platform?: Platform
}

export interface Platform {
  os: string
  architecture: string
  variant?: string
}

export type Manifest =
  | { kind: 'index'; manifests: Descriptor[] }
  | { kind: 'image'; config: Descriptor; layers: Descriptor[] }

/** The image's settings as a template takes them. */
export interface ImageConfig {
  env: Record<string, string>
  workdir?: string
  user?: string
  entrypoint?: string[]
  cmd?: string[]
}

export const sha256Digest = (bytes: Buffer): string => `sha256:${crypto.createHash('sha256').update(bytes).digest('hex')}`

function json(bytes: Buffer, what: string): Record<string, unknown> {
  try {
    const v = JSON.parse(bytes.toString('utf8'))
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>
  } catch {
    // fall through
  }
  throw new ImagePullError('failed', `the registry sent a ${what} that is not a JSON object`)
}

function descriptor(v: unknown, what: string): Descriptor {
  const d = v as Descriptor
  if (!d || typeof d.digest !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(d.digest) || !Number.isSafeInteger(d.size) || d.size < 0) {
    throw new ImagePullError('failed', `the registry sent a manifest with a malformed ${what} descriptor`)
  }
  return d
}

export function parseManifest(bytes: Buffer): Manifest {
  const m = json(bytes, 'manifest')
  const mediaType = typeof m.mediaType === 'string' ? m.mediaType : undefined
  if (m.schemaVersion === 1 || (mediaType && SCHEMA1_TYPES.has(mediaType))) {
    throw new ImagePullError('unsupported', 'the image uses the obsolete Docker schema 1 manifest format; push it again with a current tool (docker, buildah, skopeo)')
  }
  if ((mediaType && INDEX_TYPES.has(mediaType)) || (!mediaType && Array.isArray(m.manifests))) {
    if (!Array.isArray(m.manifests)) throw new ImagePullError('failed', 'the registry sent an image index without manifests')
    return { kind: 'index', manifests: m.manifests.map((d) => descriptor(d, 'platform manifest')) }
  }
  if ((mediaType && MANIFEST_TYPES.has(mediaType)) || (!mediaType && m.config && Array.isArray(m.layers))) {
    if (!Array.isArray(m.layers)) throw new ImagePullError('failed', 'the registry sent a manifest without layers')
    return { kind: 'image', config: descriptor(m.config, 'config'), layers: m.layers.map((d) => descriptor(d, 'layer')) }
  }
  throw new ImagePullError('unsupported', `the reference names a ${mediaType ?? 'manifest of unknown type'}, not a container image`)
}

/** The platform an image must be for to run here: linux and Node's architecture in OCI's words. */
export function hostPlatform(arch: string = process.arch): Platform {
  const architecture = ({ x64: 'amd64', ia32: '386', ppc64: 'ppc64le' } as Record<string, string>)[arch] ?? arch
  return { os: 'linux', architecture, variant: architecture === 'arm64' ? 'v8' : architecture === 'arm' ? 'v7' : undefined }
}

const describePlatform = (p?: Platform) => (p ? `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}` : 'unknown')

/** The index entry for this platform (an exact variant first, then one that names none). */
export function choosePlatform(index: Descriptor[], want: Platform, ref: string): Descriptor {
  const candidates = index.filter((d) => d.platform?.os === want.os && d.platform.architecture === want.architecture)
  const chosen = candidates.find((d) => d.platform?.variant === want.variant) ?? candidates.find((d) => !d.platform?.variant) ?? candidates[0]
  if (chosen) return chosen
  const offered = [...new Set(index.map((d) => d.platform).filter((p) => p && p.os !== 'unknown').map(describePlatform))]
  throw new ImagePullError('platform', `${ref} has no image for ${describePlatform(want)}, this machine's platform; it offers ${offered.join(', ') || 'none'}`)
}

/** Checks the layers are ones umoci unpacks and the compressed total is within the limit; returns it. */
export function checkLayers(manifest: Extract<Manifest, { kind: 'image' }>, ref: string, maxCompressedBytes: number): number {
  for (const layer of manifest.layers) {
    const type = layer.mediaType ?? ''
    if (/foreign|nondistributable/.test(type)) {
      throw new ImagePullError('unsupported', `${ref} has a non-distributable (foreign) layer, as Windows images do; only Linux images are supported`)
    }
    if (!LAYER_TYPES.has(type)) throw new ImagePullError('unsupported', `${ref} has a layer of type "${type}", which cannot be unpacked (tar, gzip or zstd layers only)`)
  }
  const total = manifest.config.size + manifest.layers.reduce((sum, l) => sum + l.size, 0)
  if (total > maxCompressedBytes) {
    throw new ImagePullError('too_large', `${ref} is ${mib(total)} MiB compressed, more than this server's limit of ${mib(maxCompressedBytes)} MiB (SANDLOT_IMAGE_MAX_MB); use a smaller image or ask the operator to raise the limit`)
  }
  return total
}

const mib = (bytes: number) => (Math.round((bytes / 2 ** 20) * 10) / 10).toString()

const strings = (v: unknown): string[] | undefined =>
  Array.isArray(v) && v.every((s) => typeof s === 'string') && v.length > 0 ? (v as string[]) : undefined

/** The config blob: checks its platform against this machine's and reads the settings a template keeps. */
export function parseImageConfig(bytes: Buffer, want: Platform, ref: string): ImageConfig {
  const c = json(bytes, 'image config')
  const p: Platform = { os: String(c.os ?? ''), architecture: String(c.architecture ?? ''), variant: typeof c.variant === 'string' ? c.variant : undefined }
  if (p.os !== want.os || p.architecture !== want.architecture) {
    throw new ImagePullError('platform', `${ref} is an image for ${describePlatform(p)}; this machine runs ${describePlatform(want)} images`)
  }
  const cfg = (c.config ?? {}) as Record<string, unknown>
  const env: Record<string, string> = {}
  for (const entry of strings(cfg.Env) ?? []) {
    const eq = entry.indexOf('=')
    if (eq === 0) continue
    if (eq < 0) env[entry] = ''
    else env[entry.slice(0, eq)] = entry.slice(eq + 1)
  }
  const text = (v: unknown) => (typeof v === 'string' && v !== '' ? v : undefined)
  return { env, workdir: text(cfg.WorkingDir), user: text(cfg.User), entrypoint: strings(cfg.Entrypoint), cmd: strings(cfg.Cmd) }
}
