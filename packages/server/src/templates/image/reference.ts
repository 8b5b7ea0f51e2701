// Image references read as Docker reads them (github.com/distribution/reference: ParseNormalizedNamed):
// `python:3.12` is docker.io/library/python:3.12, `me/app` is docker.io/me/app:latest, and a first
// component with a dot, a colon or exactly `localhost` names the registry (`ghcr.io/o/r`,
// `127.0.0.1:5000/app`). Which registries may be reached without verified TLS is a server setting.
import net from 'node:net'
import { ImagePullError } from './errors.js'

export const DEFAULT_REGISTRY = 'docker.io'
const LEGACY_DEFAULT_REGISTRY = 'index.docker.io'
const NAME_TOTAL_LENGTH_MAX = 255

// The grammar of distribution/reference's regexp.go.
const domainComponent = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])'
const domainName = `${domainComponent}(?:\\.${domainComponent})*`
const ipv6 = '\\[(?:[a-fA-F0-9:]+)\\]'
const domainRe = new RegExp(`^(?:${domainName}|${ipv6})(?::[0-9]+)?$`)
const pathComponentRe = /^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$/
const tagRe = /^[\w][\w.-]{0,127}$/
const digestRe = /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,}$/
const sha256Re = /^sha256:[0-9a-f]{64}$/
const hex64Re = /^[a-f0-9]{64}$/

export interface ImageReference {
  /** The registry's host[:port], `docker.io` for Docker Hub. */
  registry: string
  /** The repository inside it, `library/python` for an official Docker Hub image. */
  repository: string
  /** The tag, `latest` when the reference names neither a tag nor a digest. */
  tag?: string
  /** `sha256:…` when the reference pins one. */
  digest?: string
  /** registry/repository */
  name: string
  /** The whole reference, normalised: `docker.io/library/python:3.12`. */
  canonical: string
}

const invalid = (ref: string, why: string) =>
  new ImagePullError('invalid_reference', `"${ref}" is not a valid image reference: ${why}. Write it as Docker does, e.g. python:3.12, ghcr.io/owner/image:tag or registry.example.com:5000/team/app@sha256:<64 hex digits>`)

export function parseReference(input: string): ImageReference {
  const ref = input.trim()
  if (!ref) throw invalid(input, 'it is empty')
  if (/\s/.test(ref)) throw invalid(input, 'it contains whitespace')
  if (hex64Re.test(ref)) throw invalid(input, 'a bare 64-digit hexadecimal string is an image id, not a name')

  let rest = ref
  let digest: string | undefined
  const at = rest.indexOf('@')
  if (at >= 0) {
    digest = rest.slice(at + 1)
    rest = rest.slice(0, at)
    if (!digestRe.test(digest)) throw invalid(input, `"${digest}" is not a digest`)
    if (!sha256Re.test(digest)) throw invalid(input, 'only sha256 digests (64 lowercase hex digits) are supported')
  }
  let tag: string | undefined
  // A tag follows the last colon that comes after the last slash (a colon before it is a port).
  const colon = rest.lastIndexOf(':')
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1)
    rest = rest.slice(0, colon)
    if (!tagRe.test(tag)) throw invalid(input, `"${tag}" is not a valid tag (letters, digits, _ . -, at most 128, not starting with . or -)`)
  }

  let registry = DEFAULT_REGISTRY
  let repository = rest
  const slash = rest.indexOf('/')
  if (slash >= 0) {
    const first = rest.slice(0, slash)
    if (/[.:]/.test(first) || first === 'localhost' || first.toLowerCase() !== first) {
      registry = first
      repository = rest.slice(slash + 1)
    }
  }
  if (!domainRe.test(registry)) throw invalid(input, `"${registry}" is not a valid registry host`)
  if (registry === LEGACY_DEFAULT_REGISTRY) registry = DEFAULT_REGISTRY
  if (repository.toLowerCase() !== repository) throw invalid(input, `the repository name "${repository}" must be lowercase`)
  const components = repository.split('/')
  if (components.some((c) => !pathComponentRe.test(c))) {
    throw invalid(input, `"${repository}" is not a valid repository name (lowercase letters and digits, separated by / . _ __ or -)`)
  }
  if (registry === DEFAULT_REGISTRY && components.length === 1) repository = `library/${repository}`
  const name = `${registry}/${repository}`
  if (name.length > NAME_TOTAL_LENGTH_MAX) throw invalid(input, `the name is longer than ${NAME_TOTAL_LENGTH_MAX} characters`)
  if (!tag && !digest) tag = 'latest'
  const canonical = `${name}${tag ? `:${tag}` : ''}${digest ? `@${digest}` : ''}`
  return { registry, repository, tag, digest, name, canonical }
}

/**
 * Reads SANDLOT_INSECURE_REGISTRIES: comma-separated `host[:port]` names or CIDR ranges (matching
 * registries given as an IP literal), reached over plain HTTP or with an unverified certificate.
 */
export function parseInsecureRegistries(value: string | undefined): string[] {
  const entries = (value ?? '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean)
  for (const e of entries) {
    if (!isCidr(e) && !domainRe.test(e)) {
      throw new Error(`SANDLOT_INSECURE_REGISTRIES: "${e}" is neither a registry host[:port] nor a CIDR range`)
    }
  }
  return entries
}

/** Whether TLS verification is off for this registry: its exact host[:port] is listed, or its IP is in a listed range. */
export function isInsecureRegistry(registry: string, insecure: readonly string[]): boolean {
  const reg = registry.toLowerCase()
  if (insecure.some((e) => e === reg)) return true
  const host = hostOf(reg)
  if (!net.isIP(host)) return false
  return insecure.filter(isCidr).some((cidr) => {
    const [addr, bits] = cidr.split('/')
    const type = net.isIPv6(addr) ? 'ipv6' : 'ipv4'
    if (type !== (net.isIPv6(host) ? 'ipv6' : 'ipv4')) return false
    const list = new net.BlockList()
    list.addSubnet(addr, Number(bits), type)
    return list.check(host, type)
  })
}

function hostOf(registry: string): string {
  if (registry.startsWith('[')) return registry.slice(1, registry.indexOf(']'))
  return registry.replace(/:\d+$/, '')
}

function isCidr(s: string): boolean {
  const m = /^(.+)\/(\d{1,3})$/.exec(s)
  if (!m) return false
  const v = net.isIP(m[1])
  return v !== 0 && Number(m[2]) <= (v === 4 ? 32 : 128)
}
