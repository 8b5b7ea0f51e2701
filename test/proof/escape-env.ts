// The escape suite's plumbing (issue 17, item 1): a canary on the host and a neighbour sandbox
// with a canary file and a process of its own, checked after every case (`unaffected`); the probe
// program built on the host; the data plane's /files and Connect calls with the API key or a
// sandbox's own token.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { api, apiKey, apiUrl, createSandbox, killSandbox, run, startBackground } from '../helpers.js'

export const long = !!process.env.SANDLOT_LONG_TESTS

/** Credentials of the data plane: the API key (Sandlot's REST style) or a sandbox's access token (E2B's envd style). */
export type Auth = { key: string } | { token: string }
export const byKey = (): Auth => ({ key: apiKey() })
const authHeaders = (a: Auth): Record<string, string> => ('key' in a ? { 'x-api-key': a.key } : { 'x-access-token': a.token })

export const tokenOf = async (id: string): Promise<string> => (await api('GET', `/sandboxes/${id}`)).json.envdAccessToken

/** GET /files of a sandbox. */
export async function getFile(id: string, file: string, auth: Auth, user = 'root'): Promise<{ status: number; body: string }> {
  const res = await fetch(`${apiUrl}/files?path=${encodeURIComponent(file)}&username=${user}`, { headers: { 'e2b-sandbox-id': id, ...authHeaders(auth) } })
  return { status: res.status, body: await res.text() }
}

/** POST /files of a sandbox (one octet-stream body). */
export async function putFile(id: string, file: string, body: string | Buffer, auth: Auth, user = 'root'): Promise<{ status: number; body: string }> {
  const res = await fetch(`${apiUrl}/files?path=${encodeURIComponent(file)}&username=${user}`, {
    method: 'POST',
    headers: { 'e2b-sandbox-id': id, 'content-type': 'application/octet-stream', ...authHeaders(auth) },
    body: typeof body === 'string' ? body : new Uint8Array(body),
  })
  return { status: res.status, body: await res.text() }
}

/** A unary Connect call of envd's Filesystem service (JSON), e.g. rpc(id, 'Stat', { path }). */
export async function rpc(id: string, method: string, message: unknown, auth: Auth, user = 'root'): Promise<{ status: number; json: any }> {
  const res = await fetch(`${apiUrl}/filesystem.Filesystem/${method}`, {
    method: 'POST',
    headers: { 'e2b-sandbox-id': id, 'content-type': 'application/json', 'connect-protocol-version': '1', authorization: `Basic ${Buffer.from(`${user}:`).toString('base64')}`, ...authHeaders(auth) },
    body: JSON.stringify(message),
  })
  const text = await res.text()
  return { status: res.status, json: text ? JSON.parse(text) : undefined }
}

/** Runs as root in the sandbox; stdout and stderr together. */
export const root = async (id: string, cmd: string, timeoutMs?: number) => {
  const r = await run(id, cmd, { user: 'root', timeoutMs })
  return r.stdout + r.stderr
}

/** A sandbox's IPv4 address, read inside. */
export const addressOf = async (id: string) => (await root(id, "ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1")).trim()

/** The access token in a sandbox's agent config, read inside by root. */
export const tokenInside = async (id: string) => JSON.parse(await root(id, 'cat /run/sandlot/agent.json')).accessToken as string

/**
 * What each case must leave as it was: a file on the host (0600, root's) under a path each
 * sandbox tries, and a neighbour sandbox's file and process.
 */
export class World {
  readonly canaryPath = path.join(os.tmpdir(), `sandlot-escape-canary-${process.pid}-${crypto.randomBytes(4).toString('hex')}`)
  readonly canary = `host canary ${crypto.randomBytes(16).toString('hex')}\n`
  neighbour = ''
  readonly neighbourSecret = crypto.randomBytes(16).toString('hex')
  neighbourPid = 0
  private canaryStat?: fs.Stats

  async start(): Promise<void> {
    fs.writeFileSync(this.canaryPath, this.canary, { mode: 0o600 })
    this.canaryStat = fs.statSync(this.canaryPath)
    this.neighbour = (await createSandbox({ metadata: { suite: 'escape' } })).id
    await run(this.neighbour, `mkdir -p /home/user/n && echo ${this.neighbourSecret} > /home/user/n/secret && chmod 600 /home/user/n/secret`)
    this.neighbourPid = await startBackground(this.neighbour, 'exec sleep 100000')
  }

  async stop(): Promise<void> {
    if (this.neighbour) await killSandbox(this.neighbour)
    fs.rmSync(this.canaryPath, { force: true })
  }

  /** The host canary as it was (content, mode, owner, time), the neighbour's file and process intact, the daemon up. */
  async unaffected(): Promise<void> {
    const st = fs.statSync(this.canaryPath)
    assert.equal(fs.readFileSync(this.canaryPath, 'utf8'), this.canary, 'the host canary changed')
    assert.deepEqual([st.mode, st.uid, st.gid, st.mtimeMs, st.ino], [this.canaryStat!.mode, this.canaryStat!.uid, this.canaryStat!.gid, this.canaryStat!.mtimeMs, this.canaryStat!.ino], 'the host canary was touched')
    const n = await run(this.neighbour, `cat /home/user/n/secret; kill -0 ${this.neighbourPid} && echo alive`)
    assert.equal(n.stdout, `${this.neighbourSecret}\nalive\n`, `the neighbour was touched: ${n.stderr}`)
    assert.equal((await fetch(`${apiUrl}/health`)).status, 200)
  }
}

/** The probe program (test/fixtures/escape-probe.c), built static once per process. */
export function probeBinary(): Buffer {
  const out = path.join(os.tmpdir(), `sandlot-escape-probe-${process.pid}`)
  if (!fs.existsSync(out)) execFileSync('gcc', ['-static', '-no-pie', '-O1', '-o', out, path.resolve('test/fixtures/escape-probe.c')])
  const bin = fs.readFileSync(out)
  fs.rmSync(out)
  return bin
}

/** The host pid of a sandbox's init (from its directory under the suite's home). */
export const initPid = (id: string, home: string) => Number(fs.readFileSync(path.join(home, 'sandboxes', id, 'init.pid'), 'utf8'))

