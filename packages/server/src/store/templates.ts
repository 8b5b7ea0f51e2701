// Built templates in SQLite (tables made by db.ts's migrations): templates by name, their tags, each
// pointing at an immutable build; builds with their spec, status, layers, config and logs; and the
// layer cache (a layer's id is the hash of its parent and its step, so equal steps share a layer).
import type Database from 'better-sqlite3'
import { preparedOnce, type Prepare } from './statements.js'

export type BuildStatus = 'waiting' | 'building' | 'ready' | 'error'

/** What a sandbox made from a build gets: its processes' environment, directory, user, and its start. */
export interface TemplateConfig {
  env: Record<string, string>
  /** Where commands start (null: the user's home). */
  workdir: string | null
  user: string
  /** Run in the background at each create; the create answers once `readyCmd` passes. */
  startCmd: string | null
  readyCmd: string | null
  cpuCount?: number
  memoryMB?: number
}

export interface BuildReason {
  message: string
  /** "base", "1"…"N" (the failing step, 1-based), or "finalize". */
  step?: string
}

export interface BuildRow {
  id: string
  templateId: string
  status: BuildStatus
  /** The request as accepted (JSON of templates/build.ts's BuildSpec). */
  spec: unknown
  /** Top first; set once ready. */
  layers: string[] | null
  config: TemplateConfig | null
  reason: BuildReason | null
  createdAt: number
  finishedAt: number | null
}

export interface LogEntry {
  at: number
  level: 'debug' | 'info' | 'warn' | 'error'
  message: string
  step?: string
}

/** A snapshot: a template build made from a sandbox's files (lifecycle/copies.ts). */
export interface SnapshotRow {
  buildId: string
  templateId: string
  sandboxId: string
  createdAt: number
}

export interface CustomTemplate {
  id: string
  name: string
  createdAt: number
}

interface RawBuild {
  id: string
  template_id: string
  status: BuildStatus
  spec: string
  layers: string | null
  config: string | null
  reason: string | null
  created_at: number
  finished_at: number | null
}

const parse = <T>(s: string | null): T | null => (s === null ? null : (JSON.parse(s) as T))

const toBuild = (r: RawBuild): BuildRow => ({
  id: r.id,
  templateId: r.template_id,
  status: r.status,
  spec: JSON.parse(r.spec),
  layers: parse<string[]>(r.layers),
  config: parse<TemplateConfig>(r.config),
  reason: parse<BuildReason>(r.reason),
  createdAt: r.created_at,
  finishedAt: r.finished_at,
})

export class TemplateStore {
  private readonly sql: Prepare

  constructor(private readonly db: Database.Database) {
    this.sql = preparedOnce(db)
  }

  // --- templates and tags ---
  templateByName(name: string): CustomTemplate | undefined {
    const r = this.sql('SELECT id, name, created_at AS createdAt FROM custom_templates WHERE name = ?').get(name) as CustomTemplate | undefined
    return r
  }

  templateById(id: string): CustomTemplate | undefined {
    return this.sql('SELECT id, name, created_at AS createdAt FROM custom_templates WHERE id = ?').get(id) as CustomTemplate | undefined
  }

  listTemplates(): CustomTemplate[] {
    return this.sql('SELECT id, name, created_at AS createdAt FROM custom_templates ORDER BY name').all() as CustomTemplate[]
  }

  insertTemplate(t: CustomTemplate): void {
    this.sql('INSERT INTO custom_templates (id, name, created_at) VALUES (?, ?, ?)').run(t.id, t.name, t.createdAt)
  }

  deleteTemplate(id: string): void {
    this.db.transaction(() => {
      this.sql('DELETE FROM template_tags WHERE template_id = ?').run(id)
      for (const b of this.sql('SELECT id FROM template_builds WHERE template_id = ?').all(id) as { id: string }[]) {
        this.sql('DELETE FROM template_build_logs WHERE build_id = ?').run(b.id)
      }
      this.sql('DELETE FROM template_builds WHERE template_id = ?').run(id)
      this.sql('DELETE FROM template_spawns WHERE name = (SELECT name FROM custom_templates WHERE id = ?)').run(id)
      this.sql('DELETE FROM sandbox_snapshots WHERE template_id = ?').run(id)
      this.sql('DELETE FROM custom_templates WHERE id = ?').run(id)
    })()
  }

  setTag(templateId: string, tag: string, buildId: string, at: number): void {
    this.sql(
        `INSERT INTO template_tags (template_id, tag, build_id, created_at) VALUES (?, ?, ?, ?)
         ON CONFLICT(template_id, tag) DO UPDATE SET build_id = excluded.build_id, created_at = excluded.created_at`,
      )
      .run(templateId, tag, buildId, at)
  }

  removeTag(templateId: string, tag: string): void {
    this.sql('DELETE FROM template_tags WHERE template_id = ? AND tag = ?').run(templateId, tag)
  }

  tags(templateId: string): { tag: string; buildId: string; createdAt: number }[] {
    return this.sql('SELECT tag, build_id AS buildId, created_at AS createdAt FROM template_tags WHERE template_id = ? ORDER BY tag')
      .all(templateId) as { tag: string; buildId: string; createdAt: number }[]
  }

  buildOfTag(templateId: string, tag: string): string | undefined {
    return (this.sql('SELECT build_id AS b FROM template_tags WHERE template_id = ? AND tag = ?').get(templateId, tag) as { b: string } | undefined)?.b
  }

  // --- builds ---
  insertBuild(b: { id: string; templateId: string; spec: unknown; createdAt: number }): void {
    this.sql("INSERT INTO template_builds (id, template_id, status, spec, created_at) VALUES (?, ?, 'waiting', ?, ?)")
      .run(b.id, b.templateId, JSON.stringify(b.spec), b.createdAt)
  }

  getBuild(id: string): BuildRow | undefined {
    const r = this.sql('SELECT * FROM template_builds WHERE id = ?').get(id) as RawBuild | undefined
    return r && toBuild(r)
  }

  buildsOf(templateId: string): BuildRow[] {
    return (this.sql('SELECT * FROM template_builds WHERE template_id = ? ORDER BY created_at').all(templateId) as RawBuild[]).map(toBuild)
  }

  /** Builds that were running when the daemon stopped: they failed with it. */
  unfinishedBuilds(): BuildRow[] {
    return (this.sql("SELECT * FROM template_builds WHERE status IN ('waiting', 'building')").all() as RawBuild[]).map(toBuild)
  }

  setBuildSpec(id: string, spec: unknown): void {
    this.sql('UPDATE template_builds SET spec = ? WHERE id = ?').run(JSON.stringify(spec), id)
  }

  setBuildStatus(id: string, status: BuildStatus): void {
    this.sql('UPDATE template_builds SET status = ? WHERE id = ?').run(status, id)
  }

  /** Ends a build; for a ready one, `also` (its tags) in the same transaction. */
  finishBuild(id: string, result: { status: 'ready'; layers: string[]; config: TemplateConfig } | { status: 'error'; reason: BuildReason }, at: number, also: () => void = () => {}): void {
    if (result.status === 'ready') {
      this.db.transaction(() => {
        this.sql("UPDATE template_builds SET status = 'ready', layers = ?, config = ?, finished_at = ? WHERE id = ?")
          .run(JSON.stringify(result.layers), JSON.stringify(result.config), at, id)
        also()
      })()
    } else {
      this.sql("UPDATE template_builds SET status = 'error', reason = ?, finished_at = ? WHERE id = ?").run(JSON.stringify(result.reason), at, id)
    }
  }

  // --- snapshots ---
  insertSnapshot(s: SnapshotRow): void {
    this.sql('INSERT INTO sandbox_snapshots (build_id, template_id, sandbox_id, created_at) VALUES (?, ?, ?, ?)').run(s.buildId, s.templateId, s.sandboxId, s.createdAt)
  }

  /** Templates made by snapshots, newest snapshot first: each with its latest snapshot (from `sandboxId` when given). */
  snapshotTemplates(filter: { sandboxId?: string; templateId?: string }): SnapshotRow[] {
    const where = [filter.sandboxId !== undefined && 'sandbox_id = @sandboxId', filter.templateId !== undefined && 'template_id = @templateId'].filter(Boolean)
    return this.sql(
        `SELECT build_id AS buildId, template_id AS templateId, sandbox_id AS sandboxId, MAX(created_at) AS createdAt FROM sandbox_snapshots
         ${where.length ? `WHERE ${where.join(' AND ')}` : ''} GROUP BY template_id ORDER BY createdAt DESC, template_id`,
      )
      .all(filter) as SnapshotRow[]
  }

  /** Whether a template was made by a snapshot. */
  isSnapshot(templateId: string): boolean {
    return this.sql('SELECT 1 FROM sandbox_snapshots WHERE template_id = ? LIMIT 1').get(templateId) !== undefined
  }

  // --- logs ---
  appendLog(buildId: string, e: LogEntry): void {
    this.sql(
        `INSERT INTO template_build_logs (build_id, seq, at, level, message, step)
         VALUES (?, (SELECT COALESCE(MAX(seq), -1) + 1 FROM template_build_logs WHERE build_id = ?), ?, ?, ?, ?)`,
      )
      .run(buildId, buildId, e.at, e.level, e.message, e.step ?? null)
  }

  logs(buildId: string, offset: number, limit: number): LogEntry[] {
    return (
      this.sql('SELECT at, level, message, step FROM template_build_logs WHERE build_id = ? AND seq >= ? ORDER BY seq LIMIT ?')
        .all(buildId, offset, limit) as { at: number; level: LogEntry['level']; message: string; step: string | null }[]
    ).map((r) => ({ at: r.at, level: r.level, message: r.message, ...(r.step !== null && { step: r.step }) }))
  }

  // --- use ---
  recordSpawn(name: string, at: number): void {
    this.sql('INSERT INTO template_spawns (name, count, last_at) VALUES (?, 1, ?) ON CONFLICT(name) DO UPDATE SET count = count + 1, last_at = excluded.last_at')
      .run(name, at)
  }

  spawns(name: string): { count: number; lastAt: number | null } {
    const r = this.sql('SELECT count, last_at AS lastAt FROM template_spawns WHERE name = ?').get(name) as { count: number; lastAt: number } | undefined
    return r ?? { count: 0, lastAt: null }
  }

  // --- layers ---
  layerPath(id: string): string | undefined {
    return (this.sql('SELECT path FROM template_layers WHERE id = ?').get(id) as { path: string } | undefined)?.path
  }

  putLayer(id: string, path: string, at: number): void {
    this.sql('INSERT OR REPLACE INTO template_layers (id, path, created_at) VALUES (?, ?, ?)').run(id, path, at)
  }

  listLayers(): { id: string; path: string }[] {
    return this.sql('SELECT id, path FROM template_layers').all() as { id: string; path: string }[]
  }

  deleteLayer(id: string): void {
    this.sql('DELETE FROM template_layers WHERE id = ?').run(id)
  }
}
