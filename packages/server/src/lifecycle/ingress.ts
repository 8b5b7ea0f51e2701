// A sandbox's ingress settings (who may reach its port previews, and the Host they see), given at
// create as E2B's network.allowPublicTraffic / network.maskRequestHost (checked by network/config.ts)
// and stored with the sandbox (the `ingress` column). The rest of `network` (egress) is stored apart.
import type { IngressSettings } from '../network/config.js'

export interface IngressConfig {
  /** false: every preview request needs the sandbox's traffic access token (e2b-traffic-access-token). */
  allowPublicTraffic: boolean
  /** The Host previews are forwarded with (`${PORT}` → the port), or null to keep the client's. */
  maskRequestHost: string | null
}

export const PUBLIC_INGRESS: IngressConfig = { allowPublicTraffic: true, maskRequestHost: null }

/** The stored form of the ingress settings network/config.ts checked (absent: E2B's defaults, public and the client's Host). */
export const ingressConfigOf = (settings: IngressSettings): IngressConfig => ({
  allowPublicTraffic: settings.allowPublicTraffic !== false,
  maskRequestHost: settings.maskRequestHost ?? null,
})

/** The Host a preview request is forwarded with under a mask. */
export const maskedHost = (mask: string, port: number) => mask.replaceAll('${PORT}', String(port))
