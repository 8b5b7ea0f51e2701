// Plumbing for the SDK's tests: run small client scripts in their own node processes (importing the
// built SDK, as ESM or CommonJS), watch a sandbox's existence over REST, and clean up.
import { spawn, type ChildProcess } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { api, killSandbox } from './helpers.js'

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

export interface ScriptResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/** Starts `node -e code` in the repo root (so `sandlot` resolves to the built package), ESM unless `cjs`. */
export function spawnScript(code: string, opts: { cjs?: boolean; env?: Record<string, string> } = {}): ChildProcess {
  const args = opts.cjs ? ['-e', code] : ['--input-type=module', '-e', code]
  return spawn(process.execPath, args, { cwd: root, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] })
}

/** Runs a script to its end; fails if it has not exited by itself within `timeoutMs`. */
export function runScript(code: string, opts: { cjs?: boolean; env?: Record<string, string>; timeoutMs?: number } = {}): Promise<ScriptResult> {
  const child = spawnScript(code, opts)
  const out = { stdout: '', stderr: '' }
  child.stdout!.on('data', (d) => (out.stdout += d))
  child.stderr!.on('data', (d) => (out.stderr += d))
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`the script did not exit within ${opts.timeoutMs ?? 60_000} ms; stderr: ${out.stderr}`))
    }, opts.timeoutMs ?? 60_000)
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, ...out })
    })
  })
}

/** Reads lines of a child's stdout until one matches. */
export function waitForLine(child: ChildProcess, re: RegExp, timeoutMs = 30_000): Promise<RegExpExecArray> {
  let buf = ''
  let err = ''
  child.stderr?.on('data', (d) => (err += d))
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no line matching ${re} within ${timeoutMs} ms; stderr: ${err}`)), timeoutMs)
    child.stdout!.on('data', (d) => {
      buf += d
      const m = re.exec(buf)
      if (m) {
        clearTimeout(timer)
        resolve(m)
      }
    })
    child.on('exit', () => reject(new Error(`the script exited before printing ${re}; stderr: ${err}`)))
  })
}

/** The server's view of a sandbox, or undefined once it is gone. */
export async function sandboxState(id: string): Promise<{ holds: number; endAt: string | null } | undefined> {
  const r = await api('GET', `/api/v1/sandboxes/${id}`)
  if (r.status === 404) return undefined
  if (r.status !== 200) throw new Error(`GET sandbox ${id}: ${r.status} ${JSON.stringify(r.json)}`)
  return r.json
}

/** Polls until the sandbox is gone; resolves with the ms it took, fails after `limitMs`. */
export async function msUntilGone(id: string, limitMs: number): Promise<number> {
  const start = Date.now()
  for (;;) {
    if (!(await sandboxState(id))) return Date.now() - start
    if (Date.now() - start > limitMs) throw new Error(`sandbox ${id} still exists ${limitMs} ms later`)
    await sleep(250)
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Sandboxes a test made, killed at its end whatever happened. */
export class Cleanup {
  private readonly ids = new Set<string>()

  add(id: string): string {
    this.ids.add(id)
    return id
  }

  async run(): Promise<void> {
    await Promise.all([...this.ids].map((id) => killSandbox(id).catch(() => {})))
    this.ids.clear()
  }
}

/** A label that tells this run's sandboxes from any other's. */
export const runLabel = () => `sdk-${process.pid}-${Date.now().toString(36)}`
