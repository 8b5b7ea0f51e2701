// The native API's view of a sandbox.
import type { SandboxRow } from '../store/db.js'

export interface SandboxView {
  id: string
  template: string
  state: string
  metadata: Record<string, string>
  cpuCount: number
  memoryMB: number
  pids: number
  startedAt: string
  endAt: string | null
  envdAccessToken: string
}

export function sandboxView(s: SandboxRow): SandboxView {
  return {
    id: s.id,
    template: s.template,
    state: s.state,
    metadata: s.metadata,
    cpuCount: s.cpuCount,
    memoryMB: s.memoryMB,
    pids: s.pids,
    startedAt: new Date(s.startedAt).toISOString(),
    endAt: s.endAt === null ? null : new Date(s.endAt).toISOString(),
    envdAccessToken: s.accessToken,
  }
}
