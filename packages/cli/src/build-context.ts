// The files of a Dockerfile's COPY steps: each source resolved in the build context (its
// .dockerignore applied, with Docker's own matching rules), packed as a gzip tar with paths relative
// to the context, and named by a hash of what it holds.
//
// Sources never leave the context: an absolute path, a `..` that climbs out, or a path that goes
// through a symlink is refused; symlinks inside what is copied are packed as links (never followed),
// wherever they point. The hash covers each entry's path, type, mode, size and content (or link
// target), not times or owners: an unchanged source keeps its hash after a checkout or a touch, so
// the server's layer cache still hits and nothing is uploaded again.
import ignoreModule from '@balena/dockerignore'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { minimatch } from 'minimatch'
import * as tar from 'tar'

// A CommonJS module whose types declare an ES default: imported from ESM, the module is the factory.
const dockerignore = ignoreModule as unknown as typeof ignoreModule.default

export class ContextError extends Error {}

export interface ContextArchive {
  /** sha256 of the entries (see above), the files hash the server stores it under. */
  hash: string
  /** The gzip tar, in a temporary file. */
  file: string
  size: number
  /** Entries (files, directories, links), relative to the context. */
  entries: string[]
}

const GLOB = /[*?[]/

export class BuildContext {
  readonly dir: string
  private readonly ignore: ReturnType<typeof dockerignore>
  readonly ignorePatterns: string[]
  private tmp?: string

  constructor(dir: string) {
    this.dir = path.resolve(dir)
    let st: fs.Stats
    try {
      st = fs.statSync(this.dir)
    } catch {
      throw new ContextError(`The build context ${dir} does not exist`)
    }
    if (!st.isDirectory()) throw new ContextError(`The build context ${dir} is not a directory`)
    const ignoreFile = path.join(this.dir, '.dockerignore')
    this.ignorePatterns = fs.existsSync(ignoreFile)
      ? fs.readFileSync(ignoreFile, 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'))
      : []
    this.ignore = dockerignore().add(this.ignorePatterns)
  }

  ignored(rel: string): boolean {
    return rel !== '' && this.ignore.ignores(rel)
  }

  /**
   * What a COPY source names, relative to the context: the path itself, everything under it when
   * it is a directory (less what .dockerignore excludes), sorted. Globs match as Docker's do.
   */
  resolve(src: string): string[] {
    if (path.posix.isAbsolute(src)) throw new ContextError(`COPY ${src}: an absolute source is outside the build context; give a path relative to ${this.dir}`)
    const norm = path.posix.normalize(src).replace(/\/+$/, '')
    if (norm === '..' || norm.startsWith('../')) throw new ContextError(`COPY ${src}: the source escapes the build context ${this.dir}`)
    const rel = norm === '.' ? '' : norm
    const parts = rel ? rel.split('/') : []
    const firstGlob = parts.findIndex((p) => GLOB.test(p))
    const fixed = firstGlob < 0 ? parts : parts.slice(0, firstGlob)
    // Every directory on the way must be a real directory inside the context, not a symlink.
    for (let k = 1; k < (firstGlob < 0 ? fixed.length : fixed.length + 1); k++) {
      const on = fixed.slice(0, k).join('/')
      const st = fs.lstatSync(path.join(this.dir, on), { throwIfNoEntry: false })
      if (st?.isSymbolicLink()) throw new ContextError(`COPY ${src}: ${on} is a symlink; a source may not go through one (it could lead out of the build context)`)
    }
    const found = new Set<string>()
    if (firstGlob < 0) {
      if (this.ignored(rel)) throw new ContextError(`COPY ${src}: ${rel} is excluded by .dockerignore`)
      const st = fs.lstatSync(path.join(this.dir, rel), { throwIfNoEntry: false })
      if (!st) throw new ContextError(`COPY ${src}: no such file or directory in the build context ${this.dir}`)
      this.add(rel, st, found)
    } else {
      const base = fixed.join('/')
      const pattern = rel
      const walk = (dir: string) => {
        for (const name of fs.readdirSync(path.join(this.dir, dir)).sort()) {
          const p = dir ? `${dir}/${name}` : name
          if (this.ignored(p)) continue
          const st = fs.lstatSync(path.join(this.dir, p))
          if (minimatch(p, pattern, { dot: true })) this.add(p, st, found)
          else if (st.isDirectory() && p.split('/').length < parts.length) walk(p)
        }
      }
      if (fs.lstatSync(path.join(this.dir, base || '.'), { throwIfNoEntry: false })?.isDirectory()) walk(base)
      if (!found.size) throw new ContextError(`COPY ${src}: matches no file in the build context ${this.dir}`)
    }
    return [...found].sort()
  }

  /** `rel` and, for a directory, all under it that is not ignored (symlinks are not followed). */
  private add(rel: string, st: fs.Stats, into: Set<string>): void {
    if (rel) into.add(rel)
    if (!st.isDirectory()) return
    for (const name of fs.readdirSync(path.join(this.dir, rel || '.')).sort()) {
      const p = rel ? `${rel}/${name}` : name
      if (this.ignored(p)) continue
      this.add(p, fs.lstatSync(path.join(this.dir, p)), into)
    }
  }

  /** The hash of entries: path, type, mode, size, content or link target. */
  hashOf(entries: string[]): string {
    const h = crypto.createHash('sha256')
    for (const rel of entries) {
      const abs = path.join(this.dir, rel)
      const st = fs.lstatSync(abs)
      const type = st.isSymbolicLink() ? 'link' : st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other'
      h.update(`${rel}\0${type}\0${(st.mode & 0o7777).toString(8)}\0${st.isFile() ? st.size : 0}\0`)
      if (st.isSymbolicLink()) h.update(fs.readlinkSync(abs))
      else if (st.isFile()) h.update(fs.readFileSync(abs))
      h.update('\0')
    }
    return h.digest('hex')
  }

  /** Packs a source's entries into a gzip tar (paths relative to the context, links kept as links). */
  async archive(src: string): Promise<ContextArchive> {
    const entries = this.resolve(src)
    const weird = entries.find((e) => {
      const st = fs.lstatSync(path.join(this.dir, e))
      return !(st.isFile() || st.isDirectory() || st.isSymbolicLink())
    })
    if (weird) throw new ContextError(`COPY ${src}: ${weird} is not a file, directory or symlink (a socket, device or pipe cannot be copied)`)
    const hash = this.hashOf(entries)
    this.tmp ??= fs.mkdtempSync(path.join(os.tmpdir(), 'sandlot-context-'))
    const file = path.join(this.tmp, `${hash}.tar.gz`)
    if (!fs.existsSync(file)) {
      // noDirRecurse: exactly the entries resolved (ignored files stay out); portable: no owners.
      await tar.create({ gzip: true, cwd: this.dir, file, portable: true, noDirRecurse: true, follow: false }, entries.map((e) => `./${e}`))
    }
    return { hash, file, size: fs.statSync(file).size, entries }
  }

  /** Removes the temporary archives. */
  cleanup(): void {
    if (this.tmp) fs.rmSync(this.tmp, { recursive: true, force: true })
  }
}
