// A worker thread that renews holds while the main thread cannot. Renewals run on the client's event
// loop; a client busy in execSync or a long synchronous computation would stop renewing and lose
// its sandbox 15 s later, though its process lives and its handle is open. The worker has its own
// loop: it watches when each hold was last renewed and renews the ones the main thread left late.
// It is only a backup: the main thread still renews, and handles lapsed holds and vanished
// sandboxes when it runs again. One worker serves every handle of the process; it is unref'd (it
// never keeps a script alive) and ends a while after the last hold (IDLE_MS): a client that makes
// one sandbox after another starts it once, where starting a thread per sandbox cost each create
// ~15 ms of CPU beside its first command.
import { createRequire } from 'node:module'
import { Worker } from 'node:worker_threads'

/** How much later than its period a renewal must be for the worker to step in. */
const LATE_MS = 3_000
/** How long the worker waits, without holds, for the next one before it ends. */
const IDLE_MS = 60_000

/** What the worker knows of a hold. `lastRenewed` (ms since the epoch) is shared with the main thread. */
interface Watched {
  key: number
  url: string
  apiKey: string
  renewEveryMs: number
  ttlMs: number
  lastRenewed: BigInt64Array
}

// Evaluated by the worker: the SDK ships as one bundle per module system, with no separate worker
// file to find. getBuiltinModule works whether the eval is read as CommonJS or as a module.
// Its renewals go the way of every other call (transport.ts: undici, EnvHttpProxyAgent) when a proxy
// is set; otherwise node:http/https, whose TLS is the same Node's (NODE_EXTRA_CA_CERTS included) and
// which costs the worker ~15 MB less than loading undici.
const WORKER_SOURCE = `
const { parentPort, workerData } = process.getBuiltinModule('node:worker_threads')
const holds = new Map()
const inFlight = new Set()
const renewed = (h) => Atomics.store(h.lastRenewed, 0, BigInt(Date.now()))
let renew
if (workerData.undici) {
  const undici = process.getBuiltinModule('node:module').createRequire(workerData.undici)(workerData.undici)
  const dispatcher = new undici.EnvHttpProxyAgent()
  renew = (h, done) =>
    undici
      .request(h.url, { method: 'PUT', headers: { 'x-api-key': h.apiKey }, dispatcher, signal: AbortSignal.timeout(h.ttlMs) })
      .then((res) => (res.statusCode === 200 && renewed(h), res.body.dump()))
      .catch(() => {})
      .finally(done)
} else {
  const http = process.getBuiltinModule('node:http')
  const https = process.getBuiltinModule('node:https')
  renew = (h, done) => {
    const url = new URL(h.url)
    const req = (url.protocol === 'https:' ? https : http).request(url, { method: 'PUT', headers: { 'x-api-key': h.apiKey }, timeout: h.ttlMs }, (res) => {
      if (res.statusCode === 200) renewed(h)
      res.resume()
    })
    req.on('timeout', () => req.destroy())
    req.on('error', () => {})
    req.on('close', done)
    req.end()
  }
}
parentPort.on('message', (m) => (m.url ? holds.set(m.key, m) : holds.delete(m.key)))
setInterval(() => {
  for (const h of holds.values()) {
    // The main thread renews every renewEveryMs; a renewal later than that by ${LATE_MS} ms means it is stuck.
    if (inFlight.has(h.key) || Date.now() - Number(Atomics.load(h.lastRenewed, 0)) < h.renewEveryMs + ${LATE_MS}) continue
    inFlight.add(h.key)
    renew(h, () => inFlight.delete(h.key))
  }
}, 1000)
`

/** Whether a proxy variable is set, so that the worker must speak through undici's proxy agent. */
const proxySet = () => ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy'].some((k) => process.env[k])

let worker: Worker | undefined
/** Ends the worker once it has had no hold for IDLE_MS. */
let idle: NodeJS.Timeout | undefined
/** The worker failed: the main thread's renewals go on alone. */
let workerFailed = false
let nextKey = 0
/** The holds the worker watches, by key. */
const live = new Set<number>()

/** One hold, as the main thread tells the worker about it. */
export class Lifeline {
  private readonly key = ++nextKey
  private readonly lastRenewed = new BigInt64Array(new SharedArrayBuffer(8))
  private url = ''

  /** Watches (or goes on watching) the hold renewed at `url`: counts as renewed now. */
  watch(url: string, apiKey: string, renewEveryMs: number, ttlMs: number): void {
    this.renewed()
    if (url === this.url || workerFailed) return
    this.url = url
    clearTimeout(idle)
    if (!worker) {
      // No execArgv: the client's own flags (--import hooks, --input-type, --inspect) are not the worker's.
      const undici = proxySet() ? createRequire(import.meta.url).resolve('undici') : undefined
      const started = new Worker(WORKER_SOURCE, { eval: true, name: 'sandlot-lifeline', execArgv: [], workerData: { undici } })
      started.on('error', () => {
        if (worker !== started) return
        workerFailed = true
        worker = undefined
        live.clear()
      })
      started.unref()
      worker = started
    }
    const watched: Watched = { key: this.key, url, apiKey, renewEveryMs, ttlMs, lastRenewed: this.lastRenewed }
    worker.postMessage(watched)
    live.add(this.key)
  }

  /** The main thread renewed the hold. */
  private renewed(): void {
    Atomics.store(this.lastRenewed, 0, BigInt(Date.now()))
  }

  /** Stops watching; the worker ends IDLE_MS after the last hold, unless another comes. */
  end(): void {
    if (!live.delete(this.key) || !worker) return
    worker.postMessage({ key: this.key })
    if (live.size > 0) return
    clearTimeout(idle)
    idle = setTimeout(() => {
      if (live.size > 0 || !worker) return
      void worker.terminate()
      worker = undefined
    }, IDLE_MS)
    idle.unref()
  }
}
