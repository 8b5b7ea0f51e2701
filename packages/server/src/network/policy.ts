// A sandbox's egress rules as the enforcement sees them (validated and normalised beforehand by the
// API), and E2B's matching rules for them.
import net from 'node:net'

export interface EgressPolicy {
  /** Allowed: IPv4 CIDRs and domain patterns (`a.com`, `*.a.com`, `*`), lower-case. Allow beats deny. */
  allowOut: string[]
  /** Denied IPv4 CIDRs (`0.0.0.0/0` for all traffic). */
  denyOut: string[]
}

/** No rules: everything the platform allows (the internet) is allowed. */
export const OPEN_POLICY: EgressPolicy = { allowOut: [], denyOut: [] }

export const isOpenPolicy = (p: EgressPolicy): boolean => p.allowOut.length === 0 && p.denyOut.length === 0

export const isDomainPattern = (entry: string): boolean => !entry.includes('/') && net.isIP(entry) === 0

/**
 * E2B's domain match: case-insensitive exact name, `*` for any, or `*.suffix` for names under the
 * suffix (not the suffix itself).
 */
export function domainAllowed(host: string, policy: EgressPolicy): boolean {
  const name = host.toLowerCase().replace(/\.$/, '')
  if (!name) return false
  return policy.allowOut.some((p) => {
    if (!isDomainPattern(p)) return false
    if (p === '*') return true
    if (p.startsWith('*.')) return name.endsWith(p.slice(1))
    return name === p
  })
}

/** Whether the sandbox may reach anything at all outside (if not, its resolver refuses it too). */
export const reachesOutside = (policy: EgressPolicy): boolean =>
  policy.allowOut.length > 0 || !policy.denyOut.includes('0.0.0.0/0')
