// A daemon of a proof suite's own (faults, soak), on its own home, port, bridge and subnet: started
// on a clean home, called, stopped or killed; and its state on the host (every directory, runtime
// state, cgroup, mount, loop device, veth and nftables address of a sandbox kind) checked against its
// store, which must pass SQLite's integrity check with no sandbox or build left half-way.
import crypto from 'node:crypto'
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import Database from 'better-sqlite3'
import { apiAt, removeHome, spawnDaemon, waitFor, type Daemon } from '../helpers.js'

export class ProofDaemon {
  readonly port: number
  readonly home: string
  readonly bridge: string
  readonly url: string
  daemon: Daemon | undefined
  key = ''
  /** REST calls to it with its key. */
  readonly call = apiAt(() => this.url, () => this.key)

  /**
   * Ids of this daemon's sandboxes (and build sandboxes) ever seen on the host: cgroups are shared by
   * every daemon on the machine (the suite's own server runs beside this one), so only these are ours.
   */
  private readonly seen = new Set<string>()

  /** `suite` names its home; `offset` is added to the suite server's port (spawnDaemon derives the subnet from it). */
  constructor(suite: string, offset: number) {
    this.port = Number(process.env.SANDLOT_TEST_PORT ?? 3190) + offset
    this.home = path.resolve(`.sandlot-test/${process.env.SANDLOT_TEST_NAME ?? 'home'}-${suite}`)
    this.bridge = `sandlot${this.port}`
    this.url = `http://127.0.0.1:${this.port}`
  }

  /** The url and key for helpers' data-plane calls (run, startBackground). */
  opts(): { url: string; key: string } {
    return { url: this.url, key: this.key }
  }

  /** Removes what an earlier run left: its mounts, then its home and log. */
  clean(): void {
    removeHome(this.home)
    fs.rmSync(`${this.home}-server.log`, { force: true })
  }

  /** Starts it (its log appended to <home>-server.log) and waits until it is ready. */
  async start(env: Record<string, string> = {}): Promise<void> {
    const log = fs.openSync(`${this.home}-server.log`, 'a')
    this.daemon = spawnDaemon(this.port, { SANDLOT_HOME: this.home, ...env }, log)
    fs.closeSync(log)
    await waitFor(() => fetch(`${this.url}/health`).then((r) => r.ok, () => false), 120_000, 'the daemon to be ready')
    this.key = fs.readFileSync(path.join(this.home, 'api-key'), 'utf8').trim()
  }

  get running(): boolean {
    return !!this.daemon && this.daemon.process.exitCode === null && this.daemon.process.signalCode === null
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    await this.daemon?.stop(signal)
  }

  /** Notes the ids on disk now (also what a crash interrupted: runc runs on without the daemon for a moment). */
  noteSeen(): void {
    for (const d of ['sandboxes', 'runtime/runc']) if (fs.existsSync(path.join(this.home, d))) for (const id of fs.readdirSync(path.join(this.home, d))) this.seen.add(id)
  }

  /** Ids seen so far. */
  ids(): string[] {
    return [...this.seen]
  }

  /** Everything of a sandbox's kind on the host, by sandbox id, that the store does not know. */
  leaked(): string[] {
    const { home, bridge, port } = this
    this.noteSeen()
    const db = new Database(path.join(home, 'sandlot.db'), { readonly: true, fileMustExist: true })
    try {
      const integrity = db.pragma('integrity_check', { simple: true })
      const rows = db.prepare('SELECT id, state FROM sandboxes').all() as { id: string; state: string }[]
      const ids = new Set(rows.map((r) => r.id))
      const nets = db.prepare('SELECT sandbox_id, address, veth FROM sandbox_networks').all() as { sandbox_id: string; address: string; veth: string }[]
      const found: string[] = []
      if (integrity !== 'ok') found.push(`store: integrity_check says ${integrity}`)
      for (const r of rows) if (!['running', 'paused', 'pooled'].includes(r.state)) found.push(`store: ${r.id} left ${r.state}`)
      const building = db.prepare("SELECT id FROM template_builds WHERE status = 'building'").all() as { id: string }[]
      for (const b of building) found.push(`store: build ${b.id} still building`)
      for (const n of nets) if (!ids.has(n.sandbox_id)) found.push(`store: network of ${n.sandbox_id}, no sandbox`)
      const holds = db.prepare('SELECT sandbox_id FROM holds').all() as { sandbox_id: string }[]
      for (const h of holds) if (!ids.has(h.sandbox_id)) found.push(`store: hold on ${h.sandbox_id}, no sandbox`)
      const unknown = (what: string, names: string[]) => {
        for (const n of names) if (!ids.has(n)) found.push(`${what} ${n}`)
      }
      const dir = (d: string) => (fs.existsSync(d) ? fs.readdirSync(d) : [])
      unknown('directory', dir(path.join(home, 'sandboxes')))
      unknown('runtime state', dir(path.join(home, 'runtime/runc')))
      for (const c of ['memory', 'pids', 'cpu', 'freezer']) unknown(`${c} cgroup`, dir(`/sys/fs/cgroup/${c}/sandlot`).filter((n) => this.seen.has(n)))
      const mounts = fs.readFileSync('/proc/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '')
      unknown('mount of', mounts.filter((m) => m.startsWith(`${home}/sandboxes/`)).map((m) => m.slice(`${home}/sandboxes/`.length).split('/')[0]!))
      for (const dev of fs.readdirSync('/sys/block').filter((d) => d.startsWith('loop'))) {
        let backing = ''
        try {
          backing = fs.readFileSync(`/sys/block/${dev}/loop/backing_file`, 'utf8').trim()
        } catch {}
        if (backing.startsWith(`${home}/sandboxes/`)) unknown(`loop device ${dev} of`, [backing.slice(`${home}/sandboxes/`.length).split('/')[0]!])
      }
      const veths = new Set(nets.map((n) => n.veth))
      for (const link of fs.readdirSync('/sys/class/net').filter((l) => l.startsWith(this.vethPrefix()))) if (!veths.has(link)) found.push(`veth ${link}`)
      const addresses = new Set(nets.map((n) => n.address))
      const rules = execFileSync('nft', ['list', 'table', 'inet', `sandlot_${bridge}`], { encoding: 'utf8' })
      const subnet = `10.${(port >> 8) & 255}.${port & 255}.`
      for (const a of new Set(rules.match(new RegExp(`${subnet.replace(/\./g, '\\.')}\\d+`, 'g')) ?? [])) {
        if (!addresses.has(a) && !['0', '1', '255'].includes(a.slice(subnet.length))) found.push(`nftables rule for ${a}`)
      }
      return found
    } finally {
      db.close()
    }
  }

  /** The prefix of this daemon's veths (network/networks.ts). */
  vethPrefix(): string {
    return `v${crypto.createHash('sha256').update(this.bridge).digest('hex').slice(0, 4)}`
  }
}
