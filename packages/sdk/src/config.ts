// Where the server is and which key to send: options first, then the environment, then the
// defaults of a server on this machine (its key file).
import fs from 'node:fs'
import path from 'node:path'
import { AuthenticationError } from './errors.js'

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
}

export interface ResolvedConfig {
  apiUrl: string
  apiKey: string
}

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
  return { apiUrl, apiKey }
}
