// A sandbox's network configuration as clients give it (E2B's `network` and `allow_internet_access`,
// and Sandlot's own `network`): validated and normalised with E2B's semantics and error texts
// (../shared/reference/e2b-protocol-next.md §1.2), and folded into the egress policy the enforcement
// (network/, the kernel side) applies. Every input here is hostile: anything that is not exactly
// what is expected is a 400 that says what is wrong, never an exception or a silent drop.
import net from 'node:net'
import { domainToASCII } from 'node:url'
import { SandlotError, badRequest } from '../errors.js'
import type { EgressPolicy } from './policy.js'

/** E2B's ALL_TRAFFIC: the only "unspecified" address a rule may name. */
export const ALL_TRAFFIC = '0.0.0.0/0'
/** Entries per list (allowOut, denyOut). Far more than a hand-written policy needs; bounded so one request cannot make a huge rule set. */
export const MAX_ENTRIES = 512
/** Characters per entry: a DNS name is at most 253, plus a leading `*.`. */
export const MAX_ENTRY_LENGTH = 255

// E2B's own limits on `rules` (its API's validateNetworkRules).
const MAX_RULE_DOMAINS = 10
const MAX_RULES_PER_DOMAIN = 1
const MAX_RULE_DOMAIN_LENGTH = 128
const MAX_HEADERS_PER_RULE = 20
const MAX_HEADER_NAME_LENGTH = 64
const MAX_HEADER_VALUE_LENGTH = 2048
// E2B's limits on `iam`.
const MAX_IAM_TOKENS = 5
/** httpsPorts: every port at most once; 49983 is envd's, which the proxy never speaks TLS to. */
const ENVD_PORT = 49983

export const DOMAINS_REQUIRE_ALL_TRAFFIC =
  "When specifying allowed domains in allow out, you must include 'ALL_TRAFFIC' in deny out to block all other traffic."

const TRANSFORMS_NEED_TLS_INTERCEPTION =
  'header transforms need TLS interception of the sandbox\'s HTTPS traffic (a proxy that re-signs it with its own CA), which Sandlot does not do, so they would never be applied'

/** A per-domain rule (E2B's SandboxNetworkRule). Sandlot accepts only rules without header transforms. */
export interface NetworkRule {
  transform?: { headers?: Record<string, string> }
}

/** A sandbox's egress configuration as stored and described (getInfo): the client's lists, normalised. */
export interface NetworkConfig {
  /** IPv4 CIDRs (a bare address becomes `/32`) and domain patterns (`a.com`, `*.a.com`, `*`), lower-case ASCII. */
  allowOut: string[]
  /** IPv4 CIDRs. */
  denyOut: string[]
  /** E2B's per-domain rules, when given (keys lower-case). */
  rules?: Record<string, NetworkRule[]>
}

/** What a sandbox's network is set to: its egress configuration and the explicit internet flag (null: not given). */
export interface SandboxNetwork {
  config: NetworkConfig
  allowInternetAccess: boolean | null
}

/**
 * What the enforcement needs (one definition, the enforcement's): allow beats deny; no rules at all
 * means everything outside is allowed. allowOut holds IPv4 CIDRs (network address, e.g.
 * `10.0.0.0/8`) and domain patterns (`a.com`, `*.a.com`, `*`); denyOut IPv4 CIDRs.
 */
export type { EgressPolicy } from './policy.js'

/** Ingress settings E2B takes in `network` (port previews): validated here, stored and applied by the preview proxy. */
export interface IngressSettings {
  allowPublicTraffic?: boolean
  maskRequestHost?: string
  httpsPorts?: number[]
}

// --- helpers ---

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

/** A value for an error message: hostile input is cut short (the JSON error body escapes the rest). */
const shown = (s: string) => (s.length > 100 ? `${s.slice(0, 100)}…` : s)

function refuseUnknownKeys(obj: Record<string, unknown>, where: string, known: readonly string[]): void {
  for (const key of Object.keys(obj)) {
    if (!known.includes(key)) {
      throw badRequest(`Unknown field ${where}${shown(key)}: this takes ${known.join(', ')}`)
    }
  }
}

/** `null` and absent are the same: not given. */
function stringList(raw: unknown, field: string): string[] | undefined {
  if (raw === undefined || raw === null) return undefined
  if (!Array.isArray(raw)) throw badRequest(`${field} must be an array of strings`)
  if (raw.length > MAX_ENTRIES) throw badRequest(`${field} has ${raw.length} entries: at most ${MAX_ENTRIES} are allowed`)
  raw.forEach((v, i) => {
    if (typeof v !== 'string') throw badRequest(`${field}[${i}] must be a string`)
  })
  return raw as string[]
}

function optionalBoolean(raw: unknown, field: string): boolean | null {
  if (raw === undefined || raw === null) return null
  if (typeof raw !== 'boolean') throw badRequest(`${field} must be true or false`)
  return raw
}

// --- addresses ---

type Parsed =
  | { kind: 'cidr'; address: string; prefix: number; text: string }
  | { kind: 'domain'; pattern: string }
  | { kind: 'invalid'; why?: string }

/**
 * Network address of an IPv4 CIDR, e.g. 10.1.2.3/8 → 10.0.0.0/8. The address was validated by
 * net.isIPv4 (Node's own parser: four decimal parts, no leading zeros); this only masks it.
 */
function networkOf(address: string, prefix: number): string {
  const n = address.split('.').reduce((acc, part) => acc * 256 + Number(part), 0)
  const masked = prefix === 0 ? 0 : n - (n % 2 ** (32 - prefix))
  return `${[24, 16, 8, 0].map((s) => Math.floor(masked / 2 ** s) % 256).join('.')}/${prefix}`
}

/**
 * A DNS name pattern, lower-case ASCII: `*`, or a name (labels of letters, digits, `_` and inner
 * `-`, at most 63 each and 253 in all, the last not all digits so that a mistyped IPv4 address is
 * never taken for a name), optionally after `*.`. One trailing dot is dropped. Names in other
 * scripts become their punycode (`münchen.de` → `xn--mnchen-3ya.de`), the form that TLS SNI and the
 * HTTP Host carry, through Node's own IDNA (url.domainToASCII).
 */
export function normaliseDomainPattern(raw: string, allowBareStar = true): string | undefined {
  if (raw === '*') return allowBareStar ? '*' : undefined
  const wildcard = raw.startsWith('*.')
  let name = wildcard ? raw.slice(2) : raw
  if (name.endsWith('.')) name = name.slice(0, -1)
  // Only what can be part of a name goes to the IDNA conversion, which would also read URL syntax
  // ("a.com/x" as "a.com", "0x7f.1" as an IPv4 address).
  if (/[^\p{L}\p{M}\p{N}._-]/u.test(name)) return undefined
  if (/[^\x00-\x7f]/.test(name)) {
    name = domainToASCII(name)
    if (!name) return undefined
  }
  name = name.toLowerCase()
  if (name.length === 0 || name.length > 253) return undefined
  const labels = name.split('.')
  if (!labels.every((l) => /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/.test(l))) return undefined
  if (/^\d+$/.test(labels[labels.length - 1]!)) return undefined
  return wildcard ? `*.${name}` : name
}

/**
 * One allowOut/denyOut entry. IPv4 only: E2B's rules are IPv4 (a bare address becomes /32), and
 * sandboxes have no IPv6 at all (off inside, dropped at the bridge), so an IPv6 entry could never
 * match anything. It is refused with a message that says so, rather than stored as a rule that
 * looks as if it did something.
 */
function parseEntry(entry: string): Parsed {
  if (entry.length > MAX_ENTRY_LENGTH) return { kind: 'invalid', why: `longer than ${MAX_ENTRY_LENGTH} characters` }
  const slash = entry.indexOf('/')
  const address = slash < 0 ? entry : entry.slice(0, slash)
  if (net.isIPv6(address)) return { kind: 'invalid', why: 'IPv6 is not supported: sandboxes have IPv4 only' }
  if (net.isIPv4(address)) {
    let prefix = 32
    if (slash >= 0) {
      const bits = entry.slice(slash + 1)
      if (!/^(?:0|[1-9]\d?)$/.test(bits) || Number(bits) > 32) return { kind: 'invalid' }
      prefix = Number(bits)
    }
    // E2B refuses unspecified addresses (0.0.0.0, 0.0.0.0/8 …): all traffic is exactly 0.0.0.0/0.
    if (address === '0.0.0.0' && entry !== ALL_TRAFFIC) return { kind: 'invalid', why: `unspecified address; all traffic is ${ALL_TRAFFIC}` }
    return { kind: 'cidr', address, prefix, text: slash < 0 ? `${entry}/32` : entry }
  }
  if (slash >= 0) return { kind: 'invalid' }
  const pattern = normaliseDomainPattern(entry)
  return pattern ? { kind: 'domain', pattern } : { kind: 'invalid' }
}

const invalid = (prefix: string, entry: string, why?: string) => badRequest(`${prefix} ${shown(entry)}${why ? ` (${why})` : ''}`)

/**
 * allowOut and denyOut, checked in E2B's order (every denied entry, then every allowed one, then
 * the domain rule) with its texts. Domains need all other traffic denied: `0.0.0.0/0` in denyOut,
 * or (Sandlot also takes this, as it is the same policy) internet access turned off.
 */
export function parseEgressLists(
  rawAllow: unknown,
  rawDeny: unknown,
  allowInternetAccess: boolean | null,
  where = '',
): { allowOut: string[]; denyOut: string[] } {
  const allowIn = stringList(rawAllow, `${where}allowOut`) ?? []
  const denyIn = stringList(rawDeny, `${where}denyOut`) ?? []
  const denyOut = denyIn.map((entry) => {
    const p = parseEntry(entry)
    if (p.kind !== 'cidr') throw invalid('invalid denied CIDR', entry, p.kind === 'domain' ? 'denyOut takes IP addresses and CIDRs only, not domains' : p.why)
    return p.text
  })
  let domains = false
  const allowOut = allowIn.map((entry) => {
    const p = parseEntry(entry)
    if (p.kind === 'invalid') throw invalid('invalid allowed address', entry, p.why)
    if (p.kind === 'domain') {
      domains = true
      return p.pattern
    }
    return p.text
  })
  if (domains && !denyOut.includes(ALL_TRAFFIC) && allowInternetAccess !== false) throw badRequest(DOMAINS_REQUIRE_ALL_TRAFFIC)
  return { allowOut, denyOut }
}

// --- rules, egressProxy, iam: E2B features Sandlot cannot honour ---

/** An HTTP header field name (RFC 9110 token). */
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
/** A header field value: visible ASCII, obs-text, spaces and tabs; no CR, LF or other controls. */
const HEADER_VALUE_BAD = /[\x00-\x08\x0a-\x1f\x7f]/

/**
 * E2B's per-domain rules, checked as E2B checks them (its limits and texts). A rule's only action
 * is a header transform, applied by a proxy that intercepts the sandbox's TLS; Sandlot has none, so
 * a rule that transforms anything is refused rather than stored and never applied. Rules without
 * a transform (they do nothing, on E2B too) are kept, so getInfo shows what was sent.
 */
export function parseRules(raw: unknown, field: string): Record<string, NetworkRule[]> | undefined {
  if (raw === undefined || raw === null) return undefined
  if (!isObject(raw)) throw badRequest(`${field} must be an object of domain → list of rules`)
  const entries = Object.entries(raw)
  if (entries.length > MAX_RULE_DOMAINS) throw badRequest(`Network rules can have at most ${MAX_RULE_DOMAINS} domains.`)
  const out: [string, NetworkRule[]][] = []
  const seen = new Set<string>()
  for (const [domain, rules] of entries) {
    if (domain.length === 0) throw badRequest('Rule domain must not be empty.')
    if (domain.length > MAX_RULE_DOMAIN_LENGTH) throw badRequest(`Rule domain ${JSON.stringify(shown(domain))} exceeds maximum length of ${MAX_RULE_DOMAIN_LENGTH} characters.`)
    const key = /^[\x00-\x7f]*$/.test(domain) ? normaliseDomainPattern(domain, false) : undefined
    if (!key) throw badRequest(`Rule domain ${JSON.stringify(shown(domain))} is not a valid domain name.`)
    if (seen.has(key)) throw badRequest('Network rule domain keys must be unique ignoring case.')
    seen.add(key)
    if (!Array.isArray(rules)) throw badRequest(`${field}[${JSON.stringify(shown(domain))}] must be a list of rules`)
    if (rules.length > MAX_RULES_PER_DOMAIN) throw badRequest(`Domain ${JSON.stringify(key)} can have at most ${MAX_RULES_PER_DOMAIN} transform rule.`)
    const kept: NetworkRule[] = []
    for (const rule of rules as unknown[]) {
      if (!isObject(rule)) throw badRequest(`${field}[${JSON.stringify(key)}]: a rule must be an object ({ transform?: { headers? } })`)
      refuseUnknownKeys(rule, `in a rule of ${field}[${JSON.stringify(key)}]: `, ['transform'])
      const headers = headersOf(rule.transform, key, field)
      if (headers.length) {
        throw badRequest(`${field}[${JSON.stringify(key)}]: ${TRANSFORMS_NEED_TLS_INTERCEPTION}. Remove the transform (and ask for this domain in allowOut if it should be reachable).`)
      }
      kept.push({})
    }
    out.push([key, kept])
  }
  return Object.fromEntries(out)
}

function headersOf(transform: unknown, domain: string, field: string): string[] {
  if (transform === undefined || transform === null) return []
  if (!isObject(transform)) throw badRequest(`${field}[${JSON.stringify(domain)}]: transform must be an object ({ headers })`)
  refuseUnknownKeys(transform, `in the transform of ${field}[${JSON.stringify(domain)}]: `, ['headers'])
  const headers = transform.headers
  if (headers === undefined || headers === null) return []
  if (!isObject(headers)) throw badRequest(`${field}[${JSON.stringify(domain)}]: transform.headers must be an object of header name → value`)
  const names = Object.keys(headers)
  if (names.length > MAX_HEADERS_PER_RULE) throw badRequest(`Domain ${JSON.stringify(domain)} can have at most ${MAX_HEADERS_PER_RULE} headers per rule.`)
  for (const [name, value] of Object.entries(headers)) {
    const n = JSON.stringify(shown(name))
    if (name.length === 0) throw badRequest(`Header name in rule for domain ${JSON.stringify(domain)} must not be empty.`)
    if (!HEADER_NAME.test(name)) throw badRequest(`Header name ${n} in rule for domain ${JSON.stringify(domain)} must contain only valid HTTP token characters.`)
    if (name.length > MAX_HEADER_NAME_LENGTH) throw badRequest(`Header name ${n} in rule for domain ${JSON.stringify(domain)} exceeds maximum length of ${MAX_HEADER_NAME_LENGTH} characters.`)
    if (typeof value !== 'string') throw badRequest(`Value for header ${n} in rule for domain ${JSON.stringify(domain)} must be a string.`)
    if (HEADER_VALUE_BAD.test(value)) throw badRequest(`Value for header ${n} in rule for domain ${JSON.stringify(domain)} contains invalid characters.`)
    if (value.length > MAX_HEADER_VALUE_LENGTH) throw badRequest(`Value for header ${n} in rule for domain ${JSON.stringify(domain)} exceeds maximum length of ${MAX_HEADER_VALUE_LENGTH} characters.`)
  }
  return names
}

/**
 * E2B's "bring your own proxy" (SOCKS5). Sandlot has no such tunnel, so any proxy gets E2B's own
 * answer for a team without the feature (E2B checks the feature before the proxy's fields). The
 * field is `network.egressProxy` at create and `egressProxy` in an update, as in E2B's texts.
 */
function refuseEgressProxy(raw: unknown, field: string): void {
  if (raw === undefined || raw === null) return
  throw new SandlotError(403, 'forbidden', `Egress proxy (${field}) is not enabled for this team.`)
}

/**
 * E2B's workload identity tokens (`iam`), checked as E2B checks them. Their only use is in header
 * transforms, which Sandlot refuses (see parseRules), so a token is refused too; an empty `iam` is fine.
 */
export function checkIam(raw: unknown): void {
  if (raw === undefined || raw === null) return
  if (!isObject(raw)) throw badRequest('iam must be an object ({ tokens })')
  refuseUnknownKeys(raw, 'iam.', ['tokens'])
  const tokens = raw.tokens
  if (tokens === undefined || tokens === null) return
  if (!isObject(tokens)) throw badRequest('iam.tokens must be an object of token name → { audience, tokenType }')
  const entries = Object.entries(tokens)
  if (entries.length > MAX_IAM_TOKENS) throw badRequest(`iam.tokens can have at most ${MAX_IAM_TOKENS} tokens`)
  for (const [name, token] of entries) {
    const where = `iam.tokens[${JSON.stringify(shown(name))}]`
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(name)) throw badRequest(`${where}: a token name is 1 to 64 letters, digits, "_" or "-"`)
    if (!isObject(token)) throw badRequest(`${where} must be an object ({ audience, tokenType })`)
    refuseUnknownKeys(token, `${where}.`, ['audience', 'tokenType'])
    if (token.tokenType !== 'JWT-SVID') throw badRequest(`${where}.tokenType must be "JWT-SVID"`)
    if (typeof token.audience !== 'string' || !token.audience) throw badRequest(`${where}.audience is required`)
  }
  if (entries.length) {
    throw badRequest(`iam.tokens: workload identity tokens are only used in network header transforms, and ${TRANSFORMS_NEED_TLS_INTERCEPTION}`)
  }
}

// --- ingress fields (the preview proxy stores and applies them) ---

function parseIngress(n: Record<string, unknown>, where: string): IngressSettings {
  const out: IngressSettings = {}
  if (n.allowPublicTraffic !== undefined && n.allowPublicTraffic !== null) {
    if (typeof n.allowPublicTraffic !== 'boolean') throw badRequest(`${where}allowPublicTraffic must be true or false`)
    out.allowPublicTraffic = n.allowPublicTraffic
  }
  if (n.maskRequestHost !== undefined && n.maskRequestHost !== null) {
    const mask = n.maskRequestHost
    if (typeof mask !== 'string') throw badRequest(`${where}maskRequestHost must be a string ("host[:port]", \${PORT} allowed)`)
    if (/[^\x00-\x7f]/.test(mask)) throw badRequest(`mask request host '${shown(mask)}' is not ASCII. Please use ASCII characters only.`)
    if (!mask || mask.length > MAX_ENTRY_LENGTH || !/^[A-Za-z0-9._${}-]+(?::(?:\d{1,5}|\$\{PORT\}))?$/.test(mask)) {
      throw badRequest(`mask request host is not valid: ${shown(mask)}`)
    }
    out.maskRequestHost = mask
  }
  if (n.httpsPorts !== undefined && n.httpsPorts !== null) {
    const ports = n.httpsPorts
    if (!Array.isArray(ports)) throw badRequest(`${where}httpsPorts must be an array of port numbers`)
    if (ports.length > 64) throw badRequest(`${where}httpsPorts has ${ports.length} entries: at most 64 are allowed`)
    for (const p of ports as unknown[]) {
      if (!Number.isInteger(p) || (p as number) < 1 || (p as number) > 65535) throw badRequest(`${where}httpsPorts: ${shown(String(p))} is not a port number (1 to 65535)`)
      if (p === ENVD_PORT) throw badRequest(`${where}httpsPorts: the envd port ${ENVD_PORT} cannot be listed`)
    }
    out.httpsPorts = [...new Set(ports as number[])]
  }
  return out
}

// --- the request shapes ---

const E2B_NETWORK_KEYS = ['allowOut', 'denyOut', 'rules', 'egressProxy', 'allowPublicTraffic', 'maskRequestHost', 'httpsPorts'] as const
const E2B_UPDATE_KEYS = ['allowOut', 'denyOut', 'rules', 'egressProxy', 'allow_internet_access'] as const
const NATIVE_KEYS = ['allowInternetAccess', 'allowOut', 'denyOut'] as const
const NATIVE_CREATE_KEYS = [...NATIVE_KEYS, 'allowPublicTraffic', 'maskRequestHost'] as const

/** E2B's create: `allow_internet_access` and `network` (NewSandbox / NewSandboxV2). */
export function parseE2BCreateNetwork(rawNetwork: unknown, rawAllowInternet: unknown): { network: SandboxNetwork; ingress: IngressSettings } {
  const allowInternetAccess = optionalBoolean(rawAllowInternet, 'allow_internet_access')
  if (rawNetwork === undefined || rawNetwork === null) return { network: { config: { allowOut: [], denyOut: [] }, allowInternetAccess }, ingress: {} }
  if (!isObject(rawNetwork)) throw badRequest('network must be an object')
  refuseUnknownKeys(rawNetwork, 'network.', E2B_NETWORK_KEYS)
  const ingress = parseIngress(rawNetwork, 'network.')
  const lists = parseEgressLists(rawNetwork.allowOut, rawNetwork.denyOut, allowInternetAccess, 'network.')
  const rules = parseRules(rawNetwork.rules, 'network.rules')
  refuseEgressProxy(rawNetwork.egressProxy, 'network.egressProxy')
  return { network: { config: { ...lists, ...(rules && { rules }) }, allowInternetAccess }, ingress }
}

/**
 * E2B's `PUT /sandboxes/{id}/network` (SandboxNetworkUpdateConfig): a full replace, so whatever is
 * left out is cleared (`{}` clears every rule and the internet flag).
 */
export function parseE2BNetworkUpdate(body: unknown): SandboxNetwork {
  if (!isObject(body)) throw badRequest('The body must be a JSON object ({} clears every network rule)')
  refuseUnknownKeys(body, '', E2B_UPDATE_KEYS)
  const allowInternetAccess = optionalBoolean(body.allow_internet_access, 'allow_internet_access')
  const lists = parseEgressLists(body.allowOut, body.denyOut, allowInternetAccess)
  const rules = parseRules(body.rules, 'rules')
  refuseEgressProxy(body.egressProxy, 'egressProxy')
  return { config: { ...lists, ...(rules && { rules }) }, allowInternetAccess }
}

/**
 * Sandlot's own `network` at create: { allowInternetAccess?, allowOut?, denyOut? } for egress, plus
 * the port previews' { allowPublicTraffic?, maskRequestHost? } (parseNativeIngress); absent or null for none.
 */
export function parseNativeNetwork(raw: unknown): SandboxNetwork {
  if (raw === undefined || raw === null) return { config: { allowOut: [], denyOut: [] }, allowInternetAccess: null }
  return parseNative(raw, 'network', 'network.', NATIVE_CREATE_KEYS)
}

/** The ingress part of Sandlot's `network` at create (checked with parseNativeNetwork's rules). */
export function parseNativeIngress(raw: unknown): IngressSettings {
  return isObject(raw) ? parseIngress(raw, 'network.') : {}
}

/** The body of Sandlot's `PUT /api/v1/sandboxes/{id}/network`: the same shape, a full replace (`{}` clears all). */
export function parseNativeNetworkUpdate(body: unknown): SandboxNetwork {
  return parseNative(body, 'The body', '', NATIVE_KEYS)
}

function parseNative(raw: unknown, what: string, where: string, keys: readonly string[]): SandboxNetwork {
  if (!isObject(raw)) throw badRequest(`${what} must be a JSON object ({ ${keys.map((k) => `${k}?`).join(', ')} })`)
  refuseUnknownKeys(raw, where, keys)
  const allowInternetAccess = optionalBoolean(raw.allowInternetAccess, `${where}allowInternetAccess`)
  return { config: parseEgressLists(raw.allowOut, raw.denyOut, allowInternetAccess, where), allowInternetAccess }
}

/**
 * The policy the enforcement applies. CIDRs go as network addresses (10.1.2.3/8 → 10.0.0.0/8), and
 * each entry once. `allowInternetAccess: false` replaces the deny list with all traffic; allowOut
 * stays, and still wins (E2B). E2B also adds its fixed nameserver (8.8.8.8/32) to the allowed
 * CIDRs when domains are allowed, for its sandboxes resolve directly; Sandlot's sandboxes use the
 * resolver on their bridge, so nothing is added.
 */
export function egressPolicyOf(config: NetworkConfig, allowInternetAccess: boolean | null): EgressPolicy {
  // Stored entries were validated on the way in. One that is not (a hand-edited database) fails
  // closed: an allowed one is dropped, a denied one denies everything.
  const norm = (entry: string, otherwise: string | undefined) => {
    const p = parseEntry(entry)
    if (p.kind === 'cidr') return networkOf(p.address, p.prefix)
    if (p.kind === 'domain') return p.pattern
    return otherwise
  }
  const unique = (list: (string | undefined)[]) => [...new Set(list.filter((e): e is string => e !== undefined))]
  return {
    allowOut: unique(config.allowOut.map((e) => norm(e, undefined))),
    denyOut: allowInternetAccess === false ? [ALL_TRAFFIC] : unique(config.denyOut.map((e) => (parseEntry(e).kind === 'cidr' ? norm(e, ALL_TRAFFIC) : ALL_TRAFFIC))),
  }
}
