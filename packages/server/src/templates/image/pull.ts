// A template's base from an OCI image in a registry: skopeo fetches it (nothing hand-written speaks
// to the registry), umoci unpacks it with whiteouts applied, inside a user namespace mapped onto the
// templates' id range, exactly as the base template's tarball is unpacked (templates/base.ts).
//
//   1. skopeo inspect --raw: the manifest the reference names (an index: this platform's entry, then
//      its manifest); its layers' types and compressed sizes are checked before any download;
//   2. skopeo inspect --config --raw: the image's config (platform, Env, WorkingDir, User, Cmd…),
//      checked against the digest the manifest gives;
//   3. skopeo copy docker://NAME@DIGEST oci:LAYOUT: exactly the manifest inspected, even if the tag
//      moves meanwhile; skopeo checks every blob against its digest;
//   4. the layers' decompressed size is counted against SANDLOT_IMAGE_MAX_UNPACKED_MB (unpacked-size.ts);
//   5. umoci raw unpack in the user namespace: files owned by the range, setuid bits kept, device
//      nodes left as empty files (the runtime provides /dev), every path kept inside the rootfs;
//   6. the scratch directory is renamed into place: a failed or interrupted pull leaves nothing there.
import fs from 'node:fs'
import path from 'node:path'
import type { Logger } from 'pino'
import type { IdRange } from '../../runtime/idmap.js'
import { ImagePullError } from './errors.js'
import { checkLayers, choosePlatform, hostPlatform, parseImageConfig, parseManifest, sha256Digest, type ImageConfig, type Platform } from './manifest.js'
import { isInsecureRegistry, parseInsecureRegistries, parseReference } from './reference.js'
import { classifySkopeoFailure, runTool, ToolFailure, type RegistryContext } from './tools.js'
import { checkUnpackedSize } from './unpacked-size.js'

export const DEFAULT_MAX_IMAGE_MB = 4096
export const DEFAULT_MAX_UNPACKED_MB = 16384
const INSPECT_TIMEOUT_MS = 120_000
const DEFAULT_TIMEOUT_MS = 30 * 60_000

export interface PullRequest {
  /** As Docker writes it: `python:3.12`, `ghcr.io/owner/app:tag`, `host:5000/app@sha256:…`. */
  ref: string
  username?: string
  password?: string
  /** Registries (host[:port] or CIDR) reached over plain HTTP or without verifying their certificate. */
  insecureRegistries?: readonly string[]
  /** The most the image may weigh compressed (layers and config), checked before anything is downloaded. */
  maxCompressedBytes?: number
  /** The most its layers may hold once decompressed, counted before anything is unpacked. */
  maxUnpackedBytes?: number
  /** Each of the download and the unpack may take this long (default 30 min). */
  timeoutMs?: number
  /** Stops the pull; it fails as cancelled and leaves nothing behind. */
  signal?: AbortSignal
  /** The platform to pull (default: this machine's, linux/<arch>). */
  platform?: Platform
}

export interface PulledImage extends ImageConfig {
  /** The digest of the image manifest unpacked (this platform's, when the reference names an index). */
  digest: string
  /** The reference, normalised: `docker.io/library/python:3.12`. */
  reference: string
  /** Compressed size of layers and config, in bytes. */
  compressedBytes: number
}

/** The server settings for pulls: SANDLOT_INSECURE_REGISTRIES, SANDLOT_IMAGE_MAX_MB and SANDLOT_IMAGE_MAX_UNPACKED_MB. */
export function imagePullSettings(env: NodeJS.ProcessEnv = process.env): { insecureRegistries: string[]; maxCompressedBytes: number; maxUnpackedBytes: number } {
  const mib = (name: string, fallback: number) => {
    const raw = env[name]
    const mb = raw === undefined || raw === '' ? fallback : Number(raw)
    if (!Number.isInteger(mb) || mb <= 0) throw new Error(`${name} must be a positive integer, got "${raw}"`)
    return mb * 2 ** 20
  }
  return {
    insecureRegistries: parseInsecureRegistries(env.SANDLOT_INSECURE_REGISTRIES),
    maxCompressedBytes: mib('SANDLOT_IMAGE_MAX_MB', DEFAULT_MAX_IMAGE_MB),
    maxUnpackedBytes: mib('SANDLOT_IMAGE_MAX_UNPACKED_MB', DEFAULT_MAX_UNPACKED_MB),
  }
}

/**
 * Pulls `req.ref` and unpacks its rootfs at `dest` (which must not be in use: an existing one is
 * replaced), owned by `idRange` as a sandbox's root and users see it through their idmapped mount.
 * Returns the image's config and digest.
 */
export async function pullImage(req: PullRequest, dest: string, idRange: IdRange, log: Logger): Promise<PulledImage> {
  const ref = parseReference(req.ref)
  const want = req.platform ?? hostPlatform()
  const limit = req.maxCompressedBytes ?? DEFAULT_MAX_IMAGE_MB * 2 ** 20
  const timeoutMs = req.timeoutMs ?? DEFAULT_TIMEOUT_MS
  const withCredentials = req.username !== undefined || req.password !== undefined
  if (withCredentials && !req.username) throw new ImagePullError('unauthorized', `a password for ${ref.registry} was given without a username`)
  if (req.username?.includes(':')) throw new ImagePullError('unauthorized', 'a registry username cannot contain ":"')
  const context: RegistryContext = { ref: ref.canonical, registry: ref.registry, withCredentials }

  // Credentials go to skopeo in an auth file (0600, in a 0700 directory of root's beside the scratch
  // directory, removed at the end, and by the registry's prune with the scratch if the daemon dies
  // mid-pull), never on its command line, which every user of the host reads in ps. Without
  // credentials skopeo goes anonymously (--no-creds), and HOME points into that directory, so no
  // login of the host's root (~/.docker/config.json, containers' auth.json) ever lends its access to
  // a template's pull.
  const scratch = `${dest}.build-${process.pid}-${Date.now()}`
  const layout = `${scratch}.oci`
  const secrets = `${scratch}.auth`
  try {
    fs.mkdirSync(path.dirname(dest), { recursive: true })
    fs.mkdirSync(secrets, { mode: 0o700 })
    let authFile: string | undefined
    if (withCredentials) {
      authFile = path.join(secrets, 'auth.json')
      const auth = Buffer.from(`${req.username}:${req.password ?? ''}`).toString('base64')
      fs.writeFileSync(authFile, JSON.stringify({ auths: { [ref.registry]: { auth } } }), { mode: 0o600 })
    }
    const insecure = isInsecureRegistry(ref.registry, req.insecureRegistries ?? [])
    // skopeo's flags for the registry side: bare for inspect, `src-` for copy.
    const registryArgs = (p: '' | 'src-') => [
      ...(authFile ? [`--${p}authfile`, authFile] : [`--${p}no-creds`]),
      ...(insecure ? [`--${p}tls-verify=false`] : []),
    ]
    const env: NodeJS.ProcessEnv = { ...process.env, HOME: secrets, DOCKER_CONFIG: secrets, XDG_CONFIG_HOME: secrets, XDG_RUNTIME_DIR: secrets }
    delete env.REGISTRY_AUTH_FILE
    const skopeo = async (args: string[], step: string, o: { timeoutMs?: number; logStdout?: boolean } = {}) => {
      try {
        return await runTool('skopeo', args, { env, log, step, timeoutMs: o.timeoutMs ?? INSPECT_TIMEOUT_MS, signal: req.signal, logStdout: o.logStdout })
      } catch (err) {
        throw classifySkopeoFailure(err, context)
      }
    }
    const inspect = (target: string, config = false) =>
      skopeo(['inspect', '--raw', ...(config ? ['--config'] : []), ...registryArgs(''), `docker://${target}`], 'inspect')

    // 1. The manifest (through the index, if the reference names one).
    let bytes = await inspect(ref.digest ? `${ref.name}@${ref.digest}` : `${ref.name}:${ref.tag}`)
    let digest = sha256Digest(bytes)
    if (ref.digest && digest !== ref.digest) throw new ImagePullError('failed', `the registry answered ${ref.canonical} with content of digest ${digest}`)
    let manifest = parseManifest(bytes)
    if (manifest.kind === 'index') {
      const entry = choosePlatform(manifest.manifests, want, ref.canonical)
      bytes = await inspect(`${ref.name}@${entry.digest}`)
      digest = sha256Digest(bytes)
      if (digest !== entry.digest) throw new ImagePullError('failed', `the registry answered ${ref.name}@${entry.digest} with content of digest ${digest}`)
      manifest = parseManifest(bytes)
      if (manifest.kind !== 'image') throw new ImagePullError('unsupported', `${ref.canonical}: an index inside an index is not supported`)
    }
    const compressedBytes = checkLayers(manifest, ref.canonical, limit)

    // 2. The config: the platform and the settings the template keeps.
    const pinned = `${ref.name}@${digest}`
    const configBytes = await inspect(pinned, true)
    if (sha256Digest(configBytes) !== manifest.config.digest) throw new ImagePullError('failed', `the registry sent a config for ${pinned} that does not match its digest`)
    const config = parseImageConfig(configBytes, want, ref.canonical)

    // 3. Download.
    log.info({ step: 'pull' }, `pulling ${ref.canonical} (${digest}, ${manifest.layers.length} layers, ${(compressedBytes / 2 ** 20).toFixed(1)} MiB compressed)`)
    // The unpack, as the templates' ids, must get through to the scratch directory and the layout.
    fs.chmodSync(path.dirname(dest), 0o711)
    await skopeo(
      ['copy', ...registryArgs('src-'), `docker://${pinned}`, `oci:${layout}:image`],
      'pull',
      { timeoutMs, logStdout: true },
    )

    // 4. What it unpacks to, counted before anything is written.
    const unpacked = await checkUnpackedSize(layout, manifest.layers, ref.canonical, req.maxUnpackedBytes ?? DEFAULT_MAX_UNPACKED_MB * 2 ** 20, req.signal).catch((err: Error) => {
      throw err.name === 'AbortError' ? new ImagePullError('failed', `pulling ${ref.canonical} was cancelled`) : err
    })
    log.info({ step: 'pull' }, `${ref.canonical} unpacks to ${(unpacked / 2 ** 20).toFixed(1)} MiB`)

    // 5. Unpack inside a user namespace mapped onto the templates' range, which reads the layout as
    // its own whatever the daemon's umask made of it.
    for (const entry of ['', ...fs.readdirSync(layout, { recursive: true }).map(String)]) fs.lchownSync(path.join(layout, entry), idRange.hostId, idRange.hostId)
    fs.mkdirSync(scratch, { mode: 0o755 })
    fs.chownSync(scratch, idRange.hostId, idRange.hostId)
    await unpack(layout, scratch, idRange, { log, timeoutMs, signal: req.signal, ref: ref.canonical })

    // 6. Into place.
    fs.rmSync(dest, { recursive: true, force: true })
    fs.renameSync(scratch, dest)
    log.info({ step: 'pull' }, `${ref.canonical} unpacked`)
    return { ...config, digest, reference: ref.canonical, compressedBytes }
  } catch (err) {
    fs.rmSync(scratch, { recursive: true, force: true })
    throw err
  } finally {
    fs.rmSync(layout, { recursive: true, force: true })
    fs.rmSync(secrets, { recursive: true, force: true })
  }
}

async function unpack(layout: string, rootfs: string, ids: IdRange, o: { log: Logger; timeoutMs: number; signal?: AbortSignal; ref: string }): Promise<void> {
  const map = `${ids.hostId},0,${ids.size}`
  try {
    await runTool(
      'unshare',
      [`--map-users=${map}`, `--map-groups=${map}`, '--setuid', '0', '--setgid', '0', 'umoci', 'raw', 'unpack', '--image', `${layout}:image`, rootfs],
      { env: process.env, log: o.log, step: 'unpack', timeoutMs: o.timeoutMs, signal: o.signal, logStdout: true },
    )
  } catch (err) {
    if (!(err instanceof ToolFailure)) throw err
    if (err.cancelled) throw new ImagePullError('failed', `pulling ${o.ref} was cancelled`)
    // umoci's failure is its line marked ⨯; the rest is progress.
    const line = err.detail.split('\n').reverse().find((l) => l.includes('⨯'))?.replace(/^.*⨯\s*/, '') ?? err.detail
    if (/lchown .*invalid argument/.test(line)) {
      const file = /unpack entry: ([^:]+):/.exec(line)?.[1]
      throw new ImagePullError('unpack', `${o.ref} has a file${file ? ` (${file})` : ''} owned by a user or group id above ${ids.size - 1}, which no sandbox has; rebuild the image with ids in 0–${ids.size - 1}`)
    }
    if (/no space left/.test(line)) throw new ImagePullError('unpack', `unpacking ${o.ref} failed: the disk is full`)
    throw new ImagePullError('unpack', `unpacking ${o.ref} failed: ${line}`)
  }
}
