// The control-plane client the CLI uses: finds the server and its key, turns failures into messages
// that say what to do.
import fs from 'node:fs'
import path from 'node:path'

export interface ClientConfig {
  apiUrl: string
  apiKey: string
}

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message)
  }
}

export function clientConfig(env = process.env): ClientConfig {
  const apiUrl = (env.SANDLOT_API_URL ?? 'http://127.0.0.1:3000').replace(/\/+$/, '')
  let apiKey = env.SANDLOT_API_KEY
  if (!apiKey) {
    const keyFile = path.join(env.SANDLOT_HOME ?? '/var/lib/sandlot', 'api-key')
    try {
      apiKey = fs.readFileSync(keyFile, 'utf8').trim()
    } catch {
      throw new CliError(`No API key: set SANDLOT_API_KEY, or run on the server's machine where ${keyFile} is readable.`)
    }
  }
  return { apiUrl, apiKey }
}


export async function request<T>(c: ClientConfig, method: string, route: string, body?: unknown): Promise<T> {
  let res: Response
  try {
    res = await fetch(`${c.apiUrl}${route}`, {
      method,
      headers: { 'x-api-key': c.apiKey, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message
    throw new CliError(`Cannot reach the Sandlot server at ${c.apiUrl} (${cause}). Is it running? Start it with "npm start" or "sandlot server".`)
  }
  const text = await res.text()
  const json = text ? (JSON.parse(text) as unknown) : undefined
  if (res.status === 401) throw new CliError(`The server at ${c.apiUrl} refused the API key: check SANDLOT_API_KEY.`)
  if (!res.ok) throw new CliError(`Error ${res.status}: ${(json as { message?: string } | undefined)?.message ?? text}`)
  return json as T
}
