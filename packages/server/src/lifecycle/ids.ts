// Sandbox ids and per-sandbox tokens, in E2B's formats (an id is "i" + 20 of [a-z0-9]).
import crypto from 'node:crypto'

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789'

export function newSandboxId(): string {
  const bytes = crypto.randomBytes(20)
  let id = 'i'
  for (const b of bytes) id += ALPHABET[b % 36]
  return id
}

/** A hold's id: unguessable, so one client cannot renew or close another's hold by counting. */
export const newHoldId = (): string => 'h' + crypto.randomBytes(16).toString('hex')

export const SANDBOX_ID_PATTERN = /^[a-z0-9]{1,64}$/

export function accessTokenFor(seed: string, sandboxId: string): string {
  return crypto.createHmac('sha256', seed).update(sandboxId).digest('hex')
}

/**
 * The traffic access token of a sandbox whose previews are not public (E2B's trafficAccessToken):
 * from the same seed with its own label, so neither token tells the other.
 */
export function trafficTokenFor(seed: string, sandboxId: string): string {
  return crypto.createHmac('sha256', seed).update(`sandbox-traffic-${sandboxId}`).digest('hex')
}
