// Host id ranges. Root's subordinate ids (/etc/subuid, /etc/subgid) are cut into ranges of 65536:
//   the first holds the templates' files, and no sandbox maps it;
//   the second holds the owners of the sandboxes' user namespaces, one uid per sandbox, never mapped
//     into any sandbox (the kernel charges a namespace's per-user counts, such as inotify instances
//     and message-queue bytes, to the uid that created it: one owner per sandbox, one budget each);
//   every further one is the ids of at most one live sandbox at a time.
// Ranges are claimed host-wide (a small SQLite registry under /run), so several daemons on one host
// (tests, benchmarks) never hand out the same range, and recorded with the sandbox in its store.
import Database from 'better-sqlite3'
import fs from 'node:fs'
import path from 'node:path'
import { unavailable } from '../errors.js'
import { preparedOnce, type Prepare } from '../store/statements.js'

export const RANGE_SIZE = 65536
/** How many ranges root is given when it has fewer: templates, owners and 4094 sandboxes. */
const WANTED_RANGES = 4096
/** Where root's first range starts on a machine that has none (as Sandlot always used). */
const FIRST_START = 100000
const LAST_ID = 2 ** 32 - 2
/** Host-wide claims; on tmpfs, so a reboot (which ends every sandbox) forgets them too. */
export const CLAIMS_DB = '/run/sandlot/id-ranges.db'
/** A claim whose sandbox directory never appeared (its daemon died mid-create) is stale after this. */
const STALE_AFTER_MS = 60_000

export interface IdRange {
  hostId: number
  size: number
}

/** A sandbox's ids: host ids hostId… mapped to 0… inside, and the owner of its user namespace. */
export interface SandboxIds extends IdRange {
  index: number
  owner: number
}

export interface IdLayout {
  template: IdRange
  /** Owner of sandbox index i's user namespace: ownerBase + i. */
  ownerBase: number
  /** Host id of each sandbox range, by index. */
  sandboxes: number[]
}

interface SubRange {
  name: string
  start: number
  count: number
}

function readSubIds(file: string): SubRange[] {
  let text = ''
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch {
    return []
  }
  const ranges: SubRange[] = []
  for (const line of text.split('\n')) {
    const [name, start, count] = line.trim().split(':')
    if (name && !name.startsWith('#') && Number.isInteger(Number(start)) && Number(count) > 0) {
      ranges.push({ name, start: Number(start), count: Number(count) })
    }
  }
  return ranges
}

/** Root's ranges of 65536 ids, in file order. */
function rootSlots(ranges: SubRange[]): number[] {
  const slots: number[] = []
  for (const r of ranges.filter((r) => r.name === 'root' || r.name === '0')) {
    for (let k = 0; k + RANGE_SIZE <= r.count; k += RANGE_SIZE) slots.push(r.start + k)
  }
  return slots
}

/**
 * Reads root's subordinate ids, first giving root enough of them when it has fewer than
 * WANTED_RANGES ranges (a new range above every range of any user in either file).
 */
export function ensureIdLayout(files = { uid: '/etc/subuid', gid: '/etc/subgid' }): IdLayout {
  let uid = readSubIds(files.uid)
  let gid = readSubIds(files.gid)
  const have = Math.min(rootSlots(uid).length, rootSlots(gid).length)
  if (have < WANTED_RANGES) {
    const start = Math.max(FIRST_START, ...[...uid, ...gid].map((r) => r.start + r.count))
    const count = (WANTED_RANGES - have) * RANGE_SIZE
    if (start + count - 1 > LAST_ID) throw new Error(`No room above the ranges in ${files.uid} and ${files.gid} for ${count} more ids for root`)
    for (const file of [files.uid, files.gid]) {
      const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : ''
      fs.appendFileSync(file, `${text && !text.endsWith('\n') ? '\n' : ''}root:${start}:${count}\n`)
    }
    uid = readSubIds(files.uid)
    gid = readSubIds(files.gid)
  }
  const slots = rootSlots(uid)
  if (slots.join() !== rootSlots(gid).join()) {
    throw new Error(`root's ranges in ${files.uid} and ${files.gid} differ; make them equal`)
  }
  if (slots.length < 3) throw new Error(`root needs at least ${3 * RANGE_SIZE} ids in ${files.uid} and ${files.gid}`)
  // Owners are ownerBase + index: at most one range of them.
  return { template: { hostId: slots[0]!, size: RANGE_SIZE }, ownerBase: slots[1]!, sandboxes: slots.slice(2, 2 + RANGE_SIZE) }
}

/** The host-wide claims on sandbox ranges, for the sandboxes under one daemon's sandboxes directory. */
export class IdRanges {
  private readonly db: Database.Database
  private readonly sql: Prepare

  constructor(
    readonly layout: IdLayout,
    private readonly sandboxesDir: string,
    file = CLAIMS_DB,
  ) {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 })
    fs.closeSync(fs.openSync(file, 'a', 0o600))
    this.db = new Database(file)
    this.sql = preparedOnce(this.db)
    this.db.pragma('journal_mode = WAL')
    this.db.pragma('busy_timeout = 5000')
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS claims (idx INTEGER PRIMARY KEY, sandbox TEXT NOT NULL UNIQUE, claimed_at INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS cursor (id INTEGER PRIMARY KEY CHECK (id = 0), next INTEGER NOT NULL);`)
  }

  close(): void {
    this.db.close()
  }

  private ids(index: number): SandboxIds {
    return { index, hostId: this.layout.sandboxes[index]!, size: RANGE_SIZE, owner: this.layout.ownerBase + index }
  }

  private dirOf(sandboxId: string): string {
    return path.join(this.sandboxesDir, sandboxId)
  }

  /**
   * Claims a free range for a new sandbox. The next one after the last claimed, so a range just
   * freed is the last to be reused; when none is free, claims of sandboxes that never got a
   * directory (their daemon died mid-create, or their home was deleted) are taken back.
   */
  claim(sandboxId: string): SandboxIds {
    const n = this.layout.sandboxes.length
    const index = this.db.transaction(() => {
      const pick = (): number | undefined => {
        const taken = new Set((this.sql('SELECT idx FROM claims').all() as { idx: number }[]).map((r) => r.idx))
        const from = ((this.sql('SELECT next FROM cursor').get() as { next: number } | undefined)?.next ?? 0) % n
        for (let k = 0; k < n; k++) if (!taken.has((from + k) % n)) return (from + k) % n
        return undefined
      }
      let i = pick()
      if (i === undefined) {
        const old = this.sql('SELECT idx, sandbox FROM claims WHERE claimed_at < ?').all(Date.now() - STALE_AFTER_MS) as { idx: number; sandbox: string }[]
        for (const c of old) if (!fs.existsSync(c.sandbox)) this.sql('DELETE FROM claims WHERE idx = ?').run(c.idx)
        i = pick()
      }
      if (i === undefined) return undefined
      this.sql('INSERT INTO claims (idx, sandbox, claimed_at) VALUES (?, ?, ?)').run(i, this.dirOf(sandboxId), Date.now())
      this.sql('INSERT INTO cursor (id, next) VALUES (0, ?) ON CONFLICT(id) DO UPDATE SET next = excluded.next').run((i + 1) % n)
      return i
    }).immediate()
    if (index === undefined) throw unavailable(`All ${n} id ranges of this host are in use by sandboxes; destroy some, or give root more ids in /etc/subuid and /etc/subgid`)
    return this.ids(index)
  }

  /** Frees a sandbox's range (only if the claim is that sandbox's). */
  release(sandboxId: string, ids: SandboxIds): void {
    this.sql('DELETE FROM claims WHERE idx = ? AND sandbox = ?').run(ids.index, this.dirOf(sandboxId))
  }

  /**
   * Makes sure a re-adopted sandbox's range is claimed for it (the claims are lost on reboot, and
   * could be on a wiped /run); false if another sandbox holds it.
   */
  adopt(sandboxId: string, ids: SandboxIds): boolean {
    const dir = this.dirOf(sandboxId)
    this.sql('INSERT OR IGNORE INTO claims (idx, sandbox, claimed_at) VALUES (?, ?, ?)').run(ids.index, dir, Date.now())
    return (this.sql('SELECT sandbox FROM claims WHERE idx = ?').get(ids.index) as { sandbox: string } | undefined)?.sandbox === dir
  }

  /** Drops this daemon's claims for sandboxes it no longer has (run at start, before any create). */
  sweep(live: Set<string>): void {
    const mine = this.sql('SELECT idx, sandbox FROM claims WHERE sandbox LIKE ?').all(`${this.sandboxesDir}/%`) as { idx: number; sandbox: string }[]
    for (const c of mine) {
      if (path.dirname(c.sandbox) === this.sandboxesDir && !live.has(path.basename(c.sandbox))) {
        this.sql('DELETE FROM claims WHERE idx = ?').run(c.idx)
      }
    }
  }
}
