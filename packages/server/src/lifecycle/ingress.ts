// A sandbox's ingress settings (who may reach its port previews, and the Host they see), given at
// create as E2B's network.allowPublicTraffic / network.maskRequestHost and stored with the sandbox
// (the `ingress` column). The rest of `network` (egress) is stored apart.
import { badRequest } from '../errors.js'

export interface IngressConfig {
  /** false: every preview request needs the sandbox's traffic access token (e2b-traffic-access-token). */
  allowPublicTraffic: boolean
  /** The Host previews are forwarded with (`${PORT}` → the port), or null to keep the client's. */
  maskRequestHost: string | null
}

export const PUBLIC_INGRESS: IngressConfig = { allowPublicTraffic: true, maskRequestHost: null }

/** host[:port], ASCII letters, digits, dots and dashes, with `${PORT}` anywhere (E2B's rule). */
const MASK = /^(?:[A-Za-z0-9.-]|\$\{PORT\})+(?::(?:\d{1,5}|\$\{PORT\}))?$/

/**
 * The ingress part of a create request's `network` object; throws a 400 on a wrong type or mask.
 * Absent fields keep E2B's defaults (public, client's Host).
 */
export function ingressFrom(network: unknown): IngressConfig {
  if (network === undefined || network === null) return PUBLIC_INGRESS
  if (typeof network !== 'object' || Array.isArray(network)) throw badRequest('network must be an object')
  const { allowPublicTraffic, maskRequestHost } = network as Record<string, unknown>
  if (allowPublicTraffic !== undefined && allowPublicTraffic !== null && typeof allowPublicTraffic !== 'boolean') {
    throw badRequest('network.allowPublicTraffic must be true or false')
  }
  let mask: string | null = null
  if (maskRequestHost !== undefined && maskRequestHost !== null && maskRequestHost !== '') {
    if (typeof maskRequestHost !== 'string' || maskRequestHost.length > 253 || !MASK.test(maskRequestHost)) {
      throw badRequest(
        `network.maskRequestHost must be host or host:port in ASCII (letters, digits, "." and "-"), where \${PORT} stands for the port; got ${JSON.stringify(maskRequestHost)}`,
      )
    }
    mask = maskRequestHost
  }
  return { allowPublicTraffic: allowPublicTraffic !== false, maskRequestHost: mask }
}

/** The Host a preview request is forwarded with under a mask. */
export const maskedHost = (mask: string, port: number) => mask.replaceAll('${PORT}', String(port))
