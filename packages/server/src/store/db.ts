// The persistent registry: sandboxes, templates and API keys in SQLite (WAL), so a restart loses nothing.
import Database from 'better-sqlite3'
import fs from 'node:fs'
import path from 'node:path'
import type { NetworkConfig } from '../network/config.js'
import type { IngressConfig } from '../lifecycle/ingress.js'
import type { Lifecycle, PauseInfo } from '../lifecycle/pause.js'
import type { SandboxIds } from '../runtime/idmap.js'
import { preparedOnce, type Prepare } from './statements.js'

export interface SandboxRow {
  id: string
  template: string
  /** The template build the sandbox's overlay stands on (kept while any sandbox uses it). */
  templateRootfs: string
  /** The template layers it stands on, top first (the base template alone: [templateRootfs]). */
  templateLayers: string[]
  /**
   * pooled: made ahead by the pool (lifecycle/pool.ts), nobody's yet, invisible until handed out.
   * pausing, paused, resuming: lifecycle/pause.ts (the first and last only while it happens, so a
   * server that died meanwhile knows what to finish).
   */
  state: 'pooled' | 'starting' | 'running' | 'pausing' | 'paused' | 'resuming' | 'stopping'
  metadata: Record<string, string>
  envVars: Record<string, string>
  cpuCount: number
  memoryMB: number
  pids: number
  /** Size of its own filesystem in MiB; 0 for a sandbox made before disk quotas (no filesystem of its own). */
  diskSizeMB: number
  startedAt: number
  /** The deadline (epoch ms): past it, the sandbox is destroyed unless a client holds it; null = none. */
  endAt: number | null
  /** envd access token for this sandbox (E2B's envdAccessToken). */
  accessToken: string
  /** Its host id range and user-namespace owner; null for a sandbox from before ranges were per sandbox. */
  ids: SandboxIds | null
  /** Its egress configuration as the client gave it, normalised (network/config.ts). */
  network: NetworkConfig
  /** Internet access as explicitly set (E2B's allow_internet_access), or null when not given. */
  allowInternetAccess: boolean | null
  /** Who may reach its port previews and with which Host (lifecycle/ingress.ts); null = public, as before. */
  ingress: IngressConfig | null
  /** How it was paused, while it is (pausing, paused, resuming); null otherwise. */
  pause: PauseInfo | null
  /** What happens at its deadline, and whether traffic wakes it (lifecycle/pause.ts); null = killed, as before. */
  lifecycle: Lifecycle | null
  /** The template build it stands on; null for the base (and sandboxes made before this was kept). */
  templateBuild: string | null
}

export interface HoldRow {
  id: string
  sandboxId: string
  createdAt: number
  expiresAt: number
}

export interface TemplateRow {
  name: string
  recipeHash: string
  rootfs: string
  builtAt: number
}

// Each entry moves the schema one version up (PRAGMA user_version); never edit a released one.
const MIGRATIONS = [
  `
CREATE TABLE IF NOT EXISTS sandboxes (
  id TEXT PRIMARY KEY,
  template TEXT NOT NULL,
  state TEXT NOT NULL,
  metadata TEXT NOT NULL,
  env_vars TEXT NOT NULL,
  cpu_count INTEGER NOT NULL,
  memory_mb INTEGER NOT NULL,
  pids INTEGER NOT NULL,
  started_at INTEGER NOT NULL,
  end_at INTEGER,
  access_token TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS templates (
  name TEXT PRIMARY KEY,
  recipe_hash TEXT NOT NULL,
  rootfs TEXT NOT NULL,
  built_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
  hash TEXT PRIMARY KEY,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
`,
  `ALTER TABLE sandboxes ADD COLUMN template_rootfs TEXT NOT NULL DEFAULT ''`,
  // Holds: open client handles, each a lease renewed by its client. A sandbox without a deadline
  // used to live until killed; it now needs a hold or a deadline, so old ones get an hour.
  `
CREATE TABLE IF NOT EXISTS holds (
  id TEXT PRIMARY KEY,
  sandbox_id TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS holds_by_sandbox ON holds (sandbox_id);
UPDATE sandboxes SET end_at = CAST(strftime('%s', 'now') AS INTEGER) * 1000 + 3600000 WHERE end_at IS NULL;
`,
  // Each sandbox's own id range (runtime/idmap.ts), as JSON; NULL for those that shared one.
  `ALTER TABLE sandboxes ADD COLUMN id_range TEXT`,
  // Each sandbox's writable layer is a filesystem of its own, of this size; sandboxes made before
  // have none (0) and keep their layer on the host's disk until they end.
  `ALTER TABLE sandboxes ADD COLUMN disk_size_mb INTEGER NOT NULL DEFAULT 0`,
  // Each sandbox's network (network/): its address, the host end of its veth and the egress rules in
  // force. A row stays until everything of that network is gone, so its address is not reused before.
  `
CREATE TABLE IF NOT EXISTS sandbox_networks (
  sandbox_id TEXT PRIMARY KEY,
  address TEXT NOT NULL UNIQUE,
  veth TEXT NOT NULL,
  policy TEXT NOT NULL
);
`,
  // Each sandbox's network settings as the client gave them (JSON, network/config.ts; the policy in
  // force is sandbox_networks') and its explicit internet flag (NULL: not given). Sandboxes made
  // before have none: no rules.
  `
ALTER TABLE sandboxes ADD COLUMN network TEXT;
ALTER TABLE sandboxes ADD COLUMN allow_internet_access INTEGER;
`,
  // Port previews: allowPublicTraffic and maskRequestHost (lifecycle/ingress.ts) as JSON; NULL = public.
  `ALTER TABLE sandboxes ADD COLUMN ingress TEXT`,
  // Built templates (store/templates.ts): a template has a name and tags, each tag points at an
  // immutable build; a build is a stack of layers plus its config. Sandboxes record the layers they
  // stand on (JSON, top first), so a layer in use is never collected.
  `
CREATE TABLE IF NOT EXISTS custom_templates (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS template_builds (
  id TEXT PRIMARY KEY,
  template_id TEXT NOT NULL,
  status TEXT NOT NULL,
  spec TEXT NOT NULL,
  layers TEXT,
  config TEXT,
  reason TEXT,
  created_at INTEGER NOT NULL,
  finished_at INTEGER
);
CREATE TABLE IF NOT EXISTS template_tags (
  template_id TEXT NOT NULL,
  tag TEXT NOT NULL,
  build_id TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (template_id, tag)
);
CREATE TABLE IF NOT EXISTS template_layers (
  id TEXT PRIMARY KEY,
  path TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS template_build_logs (
  build_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  at INTEGER NOT NULL,
  level TEXT NOT NULL,
  message TEXT NOT NULL,
  step TEXT,
  PRIMARY KEY (build_id, seq)
);
ALTER TABLE sandboxes ADD COLUMN template_layers TEXT;
`,
  // How often each template (by name, the base too) was created from, and when last: E2B's
  // spawnCount and lastSpawnedAt.
  `CREATE TABLE IF NOT EXISTS template_spawns (name TEXT PRIMARY KEY, count INTEGER NOT NULL, last_at INTEGER NOT NULL)`,
  // Pause (lifecycle/pause.ts): how a paused sandbox was paused, and its lifecycle settings (what its
  // deadline does, auto-resume), both JSON; NULL: not paused, killed at its deadline.
  `
ALTER TABLE sandboxes ADD COLUMN pause TEXT;
ALTER TABLE sandboxes ADD COLUMN lifecycle TEXT;
`,
  // Snapshots (lifecycle/copies.ts): template builds made from a sandbox's files, and which sandbox
  // each came from; sandboxes record the template build they stand on (NULL: the base, or made
  // before), so a copy of one gets its template's config.
  `
ALTER TABLE sandboxes ADD COLUMN template_build TEXT;
CREATE TABLE IF NOT EXISTS sandbox_snapshots (
  build_id TEXT PRIMARY KEY,
  template_id TEXT NOT NULL,
  sandbox_id TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS snapshots_by_template ON sandbox_snapshots (template_id);
`,
  // Each sandbox's metrics samples and log (store/history.ts), kept past its end until pruned by age.
  `
CREATE TABLE IF NOT EXISTS sandbox_metrics (
  sandbox_id TEXT NOT NULL,
  at INTEGER NOT NULL,
  cpu_count INTEGER NOT NULL,
  cpu_used_pct REAL NOT NULL,
  mem_used INTEGER NOT NULL,
  mem_total INTEGER NOT NULL,
  mem_cache INTEGER NOT NULL,
  disk_used INTEGER NOT NULL,
  disk_total INTEGER NOT NULL,
  PRIMARY KEY (sandbox_id, at)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sandbox_metrics_by_time ON sandbox_metrics (at);
CREATE TABLE IF NOT EXISTS sandbox_logs (
  sandbox_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  at INTEGER NOT NULL,
  level TEXT NOT NULL,
  message TEXT NOT NULL,
  fields TEXT NOT NULL,
  PRIMARY KEY (sandbox_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sandbox_logs_by_time ON sandbox_logs (at);
`,
]

export interface NetworkRow {
  sandboxId: string
  address: string
  veth: string
  /** The egress rules in force, as JSON (network/policy.ts). */
  policy: string
}

interface RawSandbox {
  id: string
  template: string
  template_rootfs: string
  template_layers: string | null
  state: SandboxRow['state']
  metadata: string
  env_vars: string
  cpu_count: number
  memory_mb: number
  pids: number
  disk_size_mb: number
  started_at: number
  end_at: number | null
  access_token: string
  id_range: string | null
  network: string | null
  allow_internet_access: number | null
  ingress: string | null
  pause: string | null
  lifecycle: string | null
  template_build: string | null
}

const toSandbox = (r: RawSandbox): SandboxRow => ({
  id: r.id,
  template: r.template,
  templateRootfs: r.template_rootfs,
  templateLayers: r.template_layers ? JSON.parse(r.template_layers) : [r.template_rootfs],
  state: r.state,
  metadata: JSON.parse(r.metadata),
  envVars: JSON.parse(r.env_vars),
  cpuCount: r.cpu_count,
  memoryMB: r.memory_mb,
  pids: r.pids,
  diskSizeMB: r.disk_size_mb,
  startedAt: r.started_at,
  endAt: r.end_at,
  accessToken: r.access_token,
  ids: r.id_range ? JSON.parse(r.id_range) : null,
  network: r.network ? JSON.parse(r.network) : { allowOut: [], denyOut: [] },
  allowInternetAccess: r.allow_internet_access === null ? null : r.allow_internet_access === 1,
  ingress: r.ingress ? JSON.parse(r.ingress) : null,
  pause: r.pause ? JSON.parse(r.pause) : null,
  lifecycle: r.lifecycle ? JSON.parse(r.lifecycle) : null,
  templateBuild: r.template_build,
})

const jsonOrNull = (v: object | null) => (v ? JSON.stringify(v) : null)

const flagOf = (b: boolean | null) => (b === null ? null : b ? 1 : 0)

interface RawHold {
  id: string
  sandbox_id: string
  created_at: number
  expires_at: number
}

const toHold = (r: RawHold): HoldRow => ({ id: r.id, sandboxId: r.sandbox_id, createdAt: r.created_at, expiresAt: r.expires_at })

export class Store {
  readonly db: Database.Database
  private readonly sql: Prepare

  constructor(file: string) {
    fs.mkdirSync(path.dirname(file), { recursive: true })
    // The database holds the seed of every sandbox's access token: only root may read it. SQLite
    // gives its -wal and -shm files the database file's mode.
    fs.closeSync(fs.openSync(file, 'a', 0o600))
    fs.chmodSync(file, 0o600)
    this.db = new Database(file)
    this.sql = preparedOnce(this.db)
    this.db.pragma('journal_mode = WAL')
    this.db.pragma('synchronous = NORMAL')
    this.db.pragma('busy_timeout = 5000')
    this.migrate()
  }

  private migrate(): void {
    const version = this.db.pragma('user_version', { simple: true }) as number
    if (version > MIGRATIONS.length) throw new Error(`The database ${this.db.name} is from a newer Sandlot (schema ${version}); upgrade Sandlot`)
    for (let v = version; v < MIGRATIONS.length; v++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[v]!)
        this.db.pragma(`user_version = ${v + 1}`)
      })()
    }
  }

  close(): void {
    this.db.close()
  }

  // --- sandboxes ---
  insertSandbox(s: SandboxRow): void {
    this.sql(
        `INSERT INTO sandboxes (id, template, template_rootfs, template_layers, state, metadata, env_vars, cpu_count, memory_mb, pids, disk_size_mb, started_at, end_at, access_token, id_range, network, allow_internet_access, ingress, pause, lifecycle, template_build)
         VALUES (@id, @template, @templateRootfs, @templateLayers, @state, @metadata, @envVars, @cpuCount, @memoryMB, @pids, @diskSizeMB, @startedAt, @endAt, @accessToken, @ids, @network, @allowInternetAccess, @ingress, @pause, @lifecycle, @templateBuild)`,
      )
      .run({
        ...s,
        metadata: JSON.stringify(s.metadata),
        envVars: JSON.stringify(s.envVars),
        ids: s.ids && JSON.stringify(s.ids),
        network: JSON.stringify(s.network),
        allowInternetAccess: flagOf(s.allowInternetAccess),
        ingress: jsonOrNull(s.ingress),
        templateLayers: JSON.stringify(s.templateLayers ?? [s.templateRootfs]),
        pause: jsonOrNull(s.pause),
        lifecycle: jsonOrNull(s.lifecycle),
      })
  }

  getSandbox(id: string): SandboxRow | undefined {
    const r = this.sql('SELECT * FROM sandboxes WHERE id = ?').get(id) as RawSandbox | undefined
    return r && toSandbox(r)
  }

  listSandboxes(): SandboxRow[] {
    return (this.sql('SELECT * FROM sandboxes ORDER BY started_at DESC, id ASC').all() as RawSandbox[]).map(toSandbox)
  }

  /** A pooled sandbox becomes a requester's: what the request sets, in one statement. */
  handOutSandbox(s: SandboxRow): void {
    this.sql(
        `UPDATE sandboxes SET state = @state, metadata = @metadata, env_vars = @envVars, network = @network, allow_internet_access = @allowInternetAccess,
           ingress = @ingress, lifecycle = @lifecycle, started_at = @startedAt, end_at = @endAt WHERE id = @id AND state = 'pooled'`,
      )
      .run({
        id: s.id,
        state: s.state,
        metadata: JSON.stringify(s.metadata),
        envVars: JSON.stringify(s.envVars),
        network: JSON.stringify(s.network),
        allowInternetAccess: flagOf(s.allowInternetAccess),
        ingress: jsonOrNull(s.ingress),
        lifecycle: jsonOrNull(s.lifecycle),
        startedAt: s.startedAt,
        endAt: s.endAt,
      })
  }

  setSandboxState(id: string, state: SandboxRow['state']): void {
    this.sql('UPDATE sandboxes SET state = ? WHERE id = ?').run(state, id)
  }

  /** A step of pausing or resuming: its state and how it is paused (null once it runs again), at once. */
  setSandboxPause(id: string, state: SandboxRow['state'], pause: PauseInfo | null): void {
    this.sql('UPDATE sandboxes SET state = ?, pause = ? WHERE id = ?').run(state, jsonOrNull(pause), id)
  }

  /** A resumed sandbox runs again: its state, new start time and deadline, in one statement. */
  setSandboxResumed(id: string, startedAt: number, endAt: number | null): void {
    this.sql(`UPDATE sandboxes SET state = 'running', pause = NULL, started_at = ?, end_at = ? WHERE id = ?`).run(startedAt, endAt, id)
  }

  setSandboxLifecycle(id: string, lifecycle: Lifecycle | null): void {
    this.sql('UPDATE sandboxes SET lifecycle = ? WHERE id = ?').run(jsonOrNull(lifecycle), id)
  }

  /** Replaces the sandbox's network configuration and internet flag (one statement: both or neither). */
  setSandboxNetwork(id: string, network: NetworkConfig, allowInternetAccess: boolean | null): void {
    this.sql('UPDATE sandboxes SET network = ?, allow_internet_access = ? WHERE id = ?').run(JSON.stringify(network), flagOf(allowInternetAccess), id)
  }

  setSandboxEndAt(id: string, endAt: number | null): void {
    this.sql('UPDATE sandboxes SET end_at = ? WHERE id = ?').run(endAt, id)
  }

  deleteSandbox(id: string): void {
    this.db.transaction(() => {
      this.sql('DELETE FROM holds WHERE sandbox_id = ?').run(id)
      this.sql('DELETE FROM sandboxes WHERE id = ?').run(id)
    })()
  }

  // --- holds (client leases on sandboxes) ---
  insertHold(h: HoldRow): void {
    this.sql('INSERT INTO holds (id, sandbox_id, created_at, expires_at) VALUES (@id, @sandboxId, @createdAt, @expiresAt)').run(h)
  }

  getHold(id: string): HoldRow | undefined {
    const r = this.sql('SELECT * FROM holds WHERE id = ?').get(id) as RawHold | undefined
    return r && toHold(r)
  }

  /** Moves a hold's expiry; false if it no longer exists. */
  renewHold(id: string, expiresAt: number): boolean {
    return this.sql('UPDATE holds SET expires_at = ? WHERE id = ?').run(expiresAt, id).changes === 1
  }

  deleteHoldsOf(sandboxId: string): void {
    this.sql('DELETE FROM holds WHERE sandbox_id = ?').run(sandboxId)
  }

  deleteHold(id: string): void {
    this.sql('DELETE FROM holds WHERE id = ?').run(id)
  }

  /** Removes the holds that expired by `now` and returns them. */
  takeExpiredHolds(now: number): HoldRow[] {
    return this.db.transaction(() => {
      const rows = (this.sql('SELECT * FROM holds WHERE expires_at <= ?').all(now) as RawHold[]).map(toHold)
      this.sql('DELETE FROM holds WHERE expires_at <= ?').run(now)
      return rows
    })()
  }

  /** Gives every hold at least until `expiresAt` (after a restart, so live clients can renew). */
  extendAllHolds(expiresAt: number): void {
    this.sql('UPDATE holds SET expires_at = MAX(expires_at, ?)').run(expiresAt)
  }

  /** One sandbox's open holds, and the latest expiry among them. */
  holdsOf(sandboxId: string): { count: number; latestExpiry: number | null } {
    const r = this.sql('SELECT COUNT(*) AS n, MAX(expires_at) AS latest FROM holds WHERE sandbox_id = ?').get(sandboxId) as { n: number; latest: number | null }
    return { count: r.n, latestExpiry: r.latest }
  }

  /** Open holds per sandbox, and the latest expiry among them. */
  holdSummary(): Map<string, { count: number; latestExpiry: number }> {
    const rows = this.sql('SELECT sandbox_id, COUNT(*) AS n, MAX(expires_at) AS latest FROM holds GROUP BY sandbox_id').all() as {
      sandbox_id: string
      n: number
      latest: number
    }[]
    return new Map(rows.map((r) => [r.sandbox_id, { count: r.n, latestExpiry: r.latest }]))
  }

  // --- templates ---
  getTemplate(name: string): TemplateRow | undefined {
    const r = this.sql('SELECT * FROM templates WHERE name = ?').get(name) as
      | { name: string; recipe_hash: string; rootfs: string; built_at: number }
      | undefined
    return r && { name: r.name, recipeHash: r.recipe_hash, rootfs: r.rootfs, builtAt: r.built_at }
  }

  putTemplate(t: TemplateRow): void {
    this.sql(
        `INSERT INTO templates (name, recipe_hash, rootfs, built_at) VALUES (?, ?, ?, ?)
         ON CONFLICT(name) DO UPDATE SET recipe_hash = excluded.recipe_hash, rootfs = excluded.rootfs, built_at = excluded.built_at`,
      )
      .run(t.name, t.recipeHash, t.rootfs, t.builtAt)
  }

  // --- API keys (only their SHA-256 is stored) ---
  addApiKeyHash(hash: string): void {
    this.sql('INSERT OR IGNORE INTO api_keys (hash, created_at) VALUES (?, ?)').run(hash, Date.now())
  }

  hasApiKeyHash(hash: string): boolean {
    return this.sql('SELECT 1 FROM api_keys WHERE hash = ?').get(hash) !== undefined
  }

  countApiKeys(): number {
    return (this.sql('SELECT COUNT(*) AS n FROM api_keys').get() as { n: number }).n
  }

  // --- settings ---
  // --- sandbox networks ---
  listNetworks(): NetworkRow[] {
    return this.sql('SELECT sandbox_id AS sandboxId, address, veth, policy FROM sandbox_networks').all() as NetworkRow[]
  }

  insertNetwork(n: NetworkRow): void {
    this.sql('INSERT INTO sandbox_networks (sandbox_id, address, veth, policy) VALUES (?, ?, ?, ?)').run(n.sandboxId, n.address, n.veth, n.policy)
  }

  setNetworkPolicy(sandboxId: string, policy: string): void {
    this.sql('UPDATE sandbox_networks SET policy = ? WHERE sandbox_id = ?').run(policy, sandboxId)
  }

  deleteNetwork(sandboxId: string): void {
    this.sql('DELETE FROM sandbox_networks WHERE sandbox_id = ?').run(sandboxId)
  }

  getSetting(key: string): string | undefined {
    return (this.sql('SELECT value FROM settings WHERE key = ?').get(key) as { value: string } | undefined)?.value
  }

  setSetting(key: string, value: string): void {
    this.sql('INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(key, value)
  }
}
