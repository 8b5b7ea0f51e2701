// The rules of a sandbox's lifetime, as pure functions of the clock: keepAlive (Sandlot) and
// timeouts (E2B). A sandbox lives while a client holds it or its deadline is ahead.
import { SandlotError, badRequest } from '../errors.js'

/** A hold lapses this long after its last renewal; clients renew three times as often. */
export const HOLD_TTL_MS = 15_000
export const HOLD_RENEW_EVERY_MS = 5_000
/** E2B's /refreshes never gives less than this. */
const E2B_MIN_REFRESH_MS = 15_000

export interface LifetimeLimits {
  keepAliveLimitMs: number
  maxLifetimeMs: number
}

export const isAlive = (endAt: number | null, holds: number, now: number): boolean => holds > 0 || (endAt !== null && endAt > now)

const humanMs = (ms: number): string =>
  ms % 3_600_000 === 0 ? `${ms / 3_600_000} hour${ms === 3_600_000 ? '' : 's'}` : ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`

/** Sandlot's keepAlive: the deadline is now + ms, replacing any earlier one. */
export function keepAliveDeadline(ms: unknown, now: number, limits: LifetimeLimits): number {
  if (typeof ms !== 'number' || !Number.isInteger(ms) || ms < 0) throw badRequest('keepAlive takes a whole number of milliseconds, 0 or more')
  if (ms > limits.keepAliveLimitMs) {
    throw new SandlotError(
      400,
      'keep_alive_too_long',
      `keepAlive(${ms}) is longer than this server's limit of ${limits.keepAliveLimitMs} ms (${humanMs(limits.keepAliveLimitMs)}); ask for at most that, and call keepAlive again later to extend it`,
    )
  }
  return now + ms
}

/**
 * The deadline of a sandbox Sandlot's API starts (a create, resume or fork): `keepAliveMs` from now,
 * else the longest keepAlive unless a hold keeps it (then none). 0 without a hold is refused.
 */
export function startDeadline(keepAliveMs: number | undefined, hold: boolean | undefined, now: number, limits: LifetimeLimits): number | null {
  const ms = keepAliveMs ?? (hold ? undefined : limits.keepAliveLimitMs)
  if (ms === 0 && !hold) throw badRequest('keepAliveMs 0 without a hold would end the sandbox at once: give a keepAlive, or hold it')
  return ms === undefined ? null : keepAliveDeadline(ms, now, limits)
}

/** The latest deadline E2B's rules allow: the maximum lifetime counted from the start. */
function lifetimeEnd(startedAt: number, now: number, limits: LifetimeLimits): number {
  const end = startedAt + limits.maxLifetimeMs
  if (end <= now) throw badRequest(`Max instance length exceeded: sandboxes live at most ${humanMs(limits.maxLifetimeMs)} from their start on this server`)
  return end
}

function checkTimeout(timeoutMs: number, limits: LifetimeLimits): void {
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw badRequest('timeout must be a positive number of seconds')
  if (timeoutMs > limits.maxLifetimeMs) throw badRequest(`Timeout cannot be greater than ${humanMs(limits.maxLifetimeMs)}`)
}

/** E2B create and setTimeout: now + timeout, which may shorten, clamped to the maximum lifetime. */
export function e2bTimeoutDeadline(timeoutMs: number, startedAt: number, now: number, limits: LifetimeLimits): number {
  checkTimeout(timeoutMs, limits)
  return Math.min(now + timeoutMs, lifetimeEnd(startedAt, now, limits))
}

/** E2B connect: like setTimeout, but never shortens the current deadline. */
export function e2bConnectDeadline(timeoutMs: number, current: number | null, startedAt: number, now: number, limits: LifetimeLimits): number {
  const wanted = e2bTimeoutDeadline(timeoutMs, startedAt, now, limits)
  return current === null ? wanted : Math.max(current, wanted)
}

/** E2B's legacy /refreshes (the v0 SDK's keepAlive): extend-only, at least 15 s. */
export function e2bRefreshDeadline(durationMs: number, current: number | null, startedAt: number, now: number, limits: LifetimeLimits): number {
  const end = Math.min(now + Math.max(durationMs, E2B_MIN_REFRESH_MS), startedAt + limits.maxLifetimeMs)
  return current === null ? end : Math.max(current, end)
}
