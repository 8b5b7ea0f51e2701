// The native API's view of a sandbox (docs/api.md).
import { PUBLIC_INGRESS, type IngressConfig } from '../lifecycle/ingress.js'
import type { SandboxState } from '../lifecycle/manager.js'
import type { HoldRow } from '../store/db.js'
import { HOLD_RENEW_EVERY_MS, HOLD_TTL_MS } from '../lifecycle/lifetime.js'

/** The envd protocol version the agent implements (packages/agent/src/config.ts; a test keeps them equal). */
export const ENVD_VERSION = '0.6.13'

export interface HoldView {
  id: string
  sandboxId: string
  expiresAt: string
  ttlMs: number
  renewEveryMs: number
}

/** A sandbox's network settings (docs/api.md). */
export interface NetworkView {
  /** As set at create or by the last update; null when not given (the internet is then reachable unless denyOut says otherwise). */
  allowInternetAccess: boolean | null
  /** Allowed destinations: IPv4 CIDRs and domain patterns; they win over denyOut. */
  allowOut: string[]
  /** Denied IPv4 CIDRs. */
  denyOut: string[]
  /** Port previews: public, or only with `trafficAccessToken` in the e2b-traffic-access-token header. */
  allowPublicTraffic: IngressConfig['allowPublicTraffic']
  /** The Host previews are forwarded with (`${PORT}` → the port), or null for the client's. */
  maskRequestHost: IngressConfig['maskRequestHost']
}

export interface SandboxView {
  id: string
  template: string
  /** running or paused (lifecycle/pause.ts). */
  state: 'running' | 'paused'
  /** How it is paused; null while it runs. */
  paused: { at: string; keepMemory: boolean; memoryLost: boolean } | null
  /** What its deadline (or its last hold lapsing) does: kill, or pause; and whether a request wakes it from a pause. */
  lifecycle: { onTimeout: 'kill' | 'pause'; keepMemory: boolean; autoResume: boolean }
  metadata: Record<string, string>
  cpuCount: number
  memoryMB: number
  pids: number
  /** Size of the sandbox's own filesystem (MiB); 0 for one made before disk quotas. */
  diskSizeMB: number
  startedAt: string
  /** The deadline: the sandbox is destroyed then unless a client holds it; null = none. */
  endAt: string | null
  /** Open client holds. */
  holds: number
  envdAccessToken: string
  envdVersion: string
  /** Ports are reached at `<port>-<id>.<domain>` (previews, and envd on 49983). */
  domain: string
  /** What it may reach (egress) and who may reach its port previews (ingress). */
  network: NetworkView
  /** The token previews need when network.allowPublicTraffic is false; null when they are public. */
  trafficAccessToken: string | null
  /** Only in the answer to a create that asked for a hold. */
  hold?: HoldView
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString())

export const holdView = (h: HoldRow): HoldView => ({
  id: h.id,
  sandboxId: h.sandboxId,
  expiresAt: new Date(h.expiresAt).toISOString(),
  ttlMs: HOLD_TTL_MS,
  renewEveryMs: HOLD_RENEW_EVERY_MS,
})

/** What a view needs beyond the stored sandbox. */
export interface ViewContext {
  domain: string
  trafficTokenOf: (id: string) => string
}

/** A sandbox's ingress settings as clients see them (E2B's network.allowPublicTraffic / maskRequestHost). */
export const ingressOf = (s: SandboxState): IngressConfig => s.ingress ?? PUBLIC_INGRESS

/** E2B's trafficAccessToken: issued only for a sandbox whose previews are not public. */
export const trafficTokenView = (s: SandboxState, ctx: ViewContext): string | null => (ingressOf(s).allowPublicTraffic ? null : ctx.trafficTokenOf(s.id))

export function sandboxView(s: SandboxState, ctx: ViewContext): SandboxView {
  return {
    id: s.id,
    template: s.template,
    state: s.state === 'running' ? 'running' : 'paused',
    paused: s.pause && { at: new Date(s.pause.at).toISOString(), keepMemory: s.pause.memory, memoryLost: !!s.pause.memoryLost },
    lifecycle: { onTimeout: s.lifecycle?.onTimeout ?? 'kill', keepMemory: s.lifecycle?.keepMemory ?? true, autoResume: s.lifecycle?.autoResume ?? false },
    metadata: s.metadata,
    cpuCount: s.cpuCount,
    memoryMB: s.memoryMB,
    pids: s.pids,
    diskSizeMB: s.diskSizeMB,
    startedAt: new Date(s.startedAt).toISOString(),
    endAt: iso(s.endAt),
    holds: s.holds,
    envdAccessToken: s.accessToken,
    envdVersion: ENVD_VERSION,
    domain: ctx.domain,
    network: { allowInternetAccess: s.allowInternetAccess, allowOut: s.network.allowOut, denyOut: s.network.denyOut, ...ingressOf(s) },
    trafficAccessToken: trafficTokenView(s, ctx),
  }
}
