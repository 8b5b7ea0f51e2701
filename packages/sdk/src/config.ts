// Where the server is and which key to send: options first, then the environment, then the
// defaults of a server on this machine (its key file).
import fs from 'node:fs'
import path from 'node:path'
import { AuthenticationError, InvalidArgumentError } from './errors.js'

/** Options every call that talks to the server accepts. */
export interface ConnectionOptions {
  /** The server's URL. Default: `SANDLOT_API_URL`, else `http://127.0.0.1:3000`. */
  apiUrl?: string
  /**
   * The API key. Default: `SANDLOT_API_KEY`, else the key the server wrote to
   * `$SANDLOT_HOME/api-key` (`SANDLOT_HOME` defaulting to `/var/lib/sandlot`), readable on the
   * server's own machine.
   */
  apiKey?: string
  /**
   * How long (ms) calls that are safe to repeat (list, reconnect, getInfo, keepAlive, kill, …) go
   * on retrying, with backoff, while the server cannot be reached or answers 502/503 (e.g. during
   * its restart), before they throw. Calls that are not safe to repeat (create, starting a
   * process) are never retried. Default: `SANDLOT_RETRY_TIMEOUT_MS`, else 10 000; `0` turns retries off.
   */
  retryTimeout?: number
}

export interface ResolvedConfig {
  apiUrl: string
  apiKey: string
  retryTimeout: number
}

export const DEFAULT_RETRY_TIMEOUT_MS = 10_000

export const DEFAULT_API_URL = 'http://127.0.0.1:3000'
export const DEFAULT_HOME = '/var/lib/sandlot'

export function resolveConfig(opts: ConnectionOptions = {}, env: NodeJS.ProcessEnv = process.env): ResolvedConfig {
  const apiUrl = (opts.apiUrl ?? env.SANDLOT_API_URL ?? DEFAULT_API_URL).replace(/\/+$/, '')
  let apiKey = opts.apiKey ?? env.SANDLOT_API_KEY
  if (!apiKey) {
    const keyFile = path.join(env.SANDLOT_HOME || DEFAULT_HOME, 'api-key')
    try {
      apiKey = fs.readFileSync(keyFile, 'utf8').trim()
    } catch (err) {
      const why = (err as NodeJS.ErrnoException).code === 'EACCES' ? 'is not readable by this user' : 'does not exist'
      throw new AuthenticationError(
        `No API key: pass { apiKey }, set SANDLOT_API_KEY, or run on the server's machine where ${keyFile} holds it (that file ${why}; SANDLOT_HOME selects another state directory).`,
      )
    }
  }
  const retryTimeout = opts.retryTimeout ?? (env.SANDLOT_RETRY_TIMEOUT_MS ? Number(env.SANDLOT_RETRY_TIMEOUT_MS) : DEFAULT_RETRY_TIMEOUT_MS)
  if (!Number.isFinite(retryTimeout) || retryTimeout < 0) throw new InvalidArgumentError(`retryTimeout (SANDLOT_RETRY_TIMEOUT_MS) is a number of milliseconds, 0 or more; got ${String(opts.retryTimeout ?? env.SANDLOT_RETRY_TIMEOUT_MS)}`)
  return { apiUrl, apiKey, retryTimeout }
}
