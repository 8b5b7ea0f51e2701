// A proof daemon's own state on the host (faults and soak suites): every directory, runtime state,
// cgroup, mount, loop device, veth and nftables address of a sandbox kind, checked against its
// store, which must pass SQLite's integrity check with no sandbox or build left half-way.
import crypto from 'node:crypto'
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import Database from 'better-sqlite3'

export class HostState {
  /**
   * Ids of this daemon's sandboxes (and build sandboxes) ever seen on the host: cgroups are shared by
   * every daemon on the machine (the suite's own server runs beside this one), so only these are ours.
   */
  private readonly seen = new Set<string>()

  /** `home`, `bridge` and `port` as the daemon was given them (spawnDaemon derives its subnet from the port). */
  constructor(
    private readonly home: string,
    private readonly bridge: string,
    private readonly port: number,
  ) {}

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
