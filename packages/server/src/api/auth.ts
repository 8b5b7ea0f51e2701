// API keys: "e2b_" + 40 hex digits (so the official e2b SDK's key check passes), generated at first
// start into $SANDLOT_HOME/api-key (mode 0600); only their SHA-256 is stored. Also the constant-time
// token comparison, and which sandbox a signed /files URL belongs to.
import { filesSignature } from '@sandlot/envd-proto/signature'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import type http from 'node:http'
import type { Store } from '../store/db.js'

export const hashKey = (key: string) => crypto.createHash('sha256').update(key).digest('hex')

export function newApiKey(): string {
  return `e2b_${crypto.randomBytes(20).toString('hex')}`
}

/** Makes sure the key file exists and its key is accepted; returns the key file's path. */
export function ensureApiKey(store: Store, home: string): string {
  const file = path.join(home, 'api-key')
  let key = ''
  try {
    key = fs.readFileSync(file, 'utf8').trim()
  } catch {
    // first start
  }
  if (!/^e2b_[0-9a-f]{40}$/.test(key)) {
    key = newApiKey()
    fs.mkdirSync(home, { recursive: true })
    fs.writeFileSync(file, `${key}\n`, { mode: 0o600 })
  }
  fs.chmodSync(file, 0o600)
  store.addApiKeyHash(hashKey(key))
  return file
}

/** The API key a request carries: X-API-Key (E2B SDK) or Authorization: Bearer. */
export function apiKeyOf(req: http.IncomingMessage): string | undefined {
  const header = req.headers['x-api-key']
  if (typeof header === 'string' && header) return header
  const auth = req.headers.authorization
  if (auth?.startsWith('Bearer ')) return auth.slice(7).trim()
  return undefined
}

export function isValidApiKey(store: Store, key: string | undefined): boolean {
  return !!key && store.hasApiKeyHash(hashKey(key))
}

export function tokensEqual(a: string, b: string): boolean {
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && crypto.timingSafeEqual(x, y)
}

/**
 * A signed /files URL that arrived without routing headers (the e2b SDK's uploadUrl/downloadUrl
 * point at E2B_SANDBOX_URL itself): the sandbox whose token made the signature. The agent checks
 * the signature (and its expiry) again before it serves the file.
 */
export function signedFilesTarget(req: http.IncomingMessage, sandboxes: readonly { id: string; accessToken: string }[]): string | undefined {
  const url = new URL(req.url ?? '/', 'http://x')
  const signature = url.searchParams.get('signature')
  if (url.pathname !== '/files' || !signature) return undefined
  const op = req.method === 'POST' ? 'write' : req.method === 'GET' || req.method === 'HEAD' ? 'read' : undefined
  if (!op) return undefined
  const filePath = url.searchParams.get('path') ?? ''
  const user = url.searchParams.get('username') ?? ''
  const exp = url.searchParams.get('signature_expiration') ?? undefined
  return sandboxes.find((s) => tokensEqual(filesSignature(filePath, op, user, s.accessToken, exp), signature))?.id
}
