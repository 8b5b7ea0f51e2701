// The template's start command: runs jupyter-server and the execution server and restarts both
// (a second later) when either ends, as E2B's systemd units do (the server is PartOf jupyter): the
// other is killed outright. The kernels of a jupyter that died are ended first, so none lingers
// unseen.
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

export interface SupervisorOptions {
  /** jupyter-server's command line. */
  jupyter: string[]
  /** The execution server's command line. */
  server: string[]
  /** Where both write their output. */
  logFile: string
  restartDelayMs?: number
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Kernels a previous jupyter started: processes of ours whose command names a Jupyter connection file. */
function leftoverKernels(): number[] {
  const pids: number[] = []
  for (const entry of fs.readdirSync('/proc')) {
    const pid = Number(entry)
    if (!Number.isInteger(pid) || pid === process.pid) continue
    try {
      const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8')
      if (/\/jupyter\/runtime\/kernel-[^\0]*\.json/.test(cmdline) && fs.statSync(`/proc/${pid}`).uid === process.getuid!()) pids.push(pid)
    } catch {
      // gone meanwhile
    }
  }
  return pids
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.exitCode !== null || child.signalCode !== null || !child.pid) return
  try {
    process.kill(-child.pid, signal)
  } catch {
    // already gone
  }
}

/** Resolves when the child has ended, or could not start (its error is noted). */
const exited = (child: ChildProcess) =>
  new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    child.once('exit', () => resolve())
    child.once('error', () => resolve())
  })

export async function supervise(o: SupervisorOptions): Promise<never> {
  fs.mkdirSync(path.dirname(o.logFile), { recursive: true })
  const log = fs.openSync(o.logFile, 'a')
  const note = (msg: string) => fs.writeSync(log, `[supervisor ${new Date().toISOString()}] ${msg}\n`)
  let stopping = false
  let children: ChildProcess[] = []
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      stopping = true
      for (const c of children) killGroup(c, 'SIGTERM')
      setTimeout(() => process.exit(0), 3000).unref()
      void Promise.all(children.map(exited)).then(() => process.exit(0))
    })
  }
  for (;;) {
    for (const pid of leftoverKernels()) {
      note(`ending kernel ${pid} of a previous jupyter`)
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // gone
      }
    }
    const start = ([cmd, ...args]: string[]) => {
      const child = spawn(cmd!, args, { stdio: ['ignore', log, log], detached: true })
      child.on('error', (err) => note(`cannot run ${cmd}: ${err.message}`))
      return child
    }
    children = [start(o.jupyter), start(o.server)]
    note(`started jupyter (pid ${children[0]!.pid}) and the execution server (pid ${children[1]!.pid})`)
    const first = await Promise.race(children.map((c, i) => exited(c).then(() => i)))
    note(`${first === 0 ? 'jupyter' : 'the execution server'} exited (${children[first]!.exitCode ?? children[first]!.signalCode}); restarting both`)
    // The surviving half is killed outright: its state goes with the other's anyway, and jupyter's
    // polite shutdown (each kernel asked, then waited for) took seconds of the recovery.
    for (const c of children) killGroup(c, 'SIGKILL')
    await Promise.all(children.map(exited))
    if (stopping) await new Promise(() => {})
    await sleep(o.restartDelayMs ?? 1000)
  }
}
