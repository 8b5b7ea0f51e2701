// sandbox.filesystem: files and directories in the sandbox. Metadata operations use envd's
// Connect Filesystem service; content goes over /files.
import { FileType } from '@sandlot/envd-proto'
import { userHeader, type SandboxContext } from './envd.js'
import { InvalidArgumentError } from './errors.js'
import { readFileBytes, uploadFrom } from './files-transfer.js'
import { DirWatcher, type WatchOptions } from './watcher.js'

/** An entry of a directory listing. */
export interface FileInfo {
  /** The entry's name within its directory. */
  name: string
  /** Whether it is a directory (a symlink to a directory counts as one). */
  isDir: boolean
  /** Its absolute path in the sandbox. */
  path: string
  /** Size in bytes, for files. */
  size?: number
}

/** Files and directories in a sandbox, as user `user`. Relative paths are under the sandbox's `cwd` if one was given, else `/home/user`; `~` is `/home/user`. */
export class Filesystem {
  /** @internal */
  constructor(private readonly ctx: SandboxContext) {}

  /** Writes a file (created or replaced; parent directories created). A string is written as UTF-8. */
  async write(path: string, content: string | Uint8Array): Promise<void> {
    const bytes = typeof content === 'string' ? new TextEncoder().encode(content) : content
    if (!(bytes instanceof Uint8Array)) throw new InvalidArgumentError('write() takes a string or a Uint8Array')
    await uploadFrom(this.ctx, this.ctx.resolve(path), bytes)
  }

  /** Writes bytes to a file (created or replaced; parent directories created). */
  async writeBytes(path: string, content: Uint8Array): Promise<void> {
    await this.write(path, content)
  }

  /** Reads a file as UTF-8 text. Throws {@link FileNotFoundError} if it does not exist. */
  async read(path: string): Promise<string> {
    return new TextDecoder().decode(await this.readBytes(path))
  }

  /** Reads a file's bytes. Throws {@link FileNotFoundError} if it does not exist. For big files use {@link Sandbox.downloadFile}. */
  async readBytes(path: string): Promise<Uint8Array> {
    return readFileBytes(this.ctx, this.ctx.resolve(path))
  }

  /** Lists a directory (not recursively). Throws {@link FileNotFoundError} if it does not exist. */
  async list(path: string): Promise<FileInfo[]> {
    const p = this.ctx.resolve(path)
    const res = await this.call(p, () => this.ctx.envd.filesystem.listDir({ path: p, depth: 1 }, this.opts()))
    // The agent reports a symlink with its target's type.
    return res.entries.map((e) => ({
      name: e.name,
      isDir: e.type === FileType.DIRECTORY,
      path: e.path,
      ...(e.type === FileType.FILE ? { size: Number(e.size) } : {}),
    }))
  }

  /** Removes a file, or a directory with everything in it. Removing what does not exist is not an error. */
  async remove(path: string): Promise<void> {
    const p = this.ctx.resolve(path)
    await this.call(p, () => this.ctx.envd.filesystem.remove({ path: p }, this.opts()))
  }

  /** Creates a directory and its missing parents. Resolves `false` if it already existed. */
  async makeDir(path: string): Promise<boolean> {
    const p = this.ctx.resolve(path)
    try {
      await this.call(p, () => this.ctx.envd.filesystem.makeDir({ path: p }, this.opts()))
      return true
    } catch (err) {
      if (err instanceof InvalidArgumentError && err.code === 'already_exists') return false
      throw err
    }
  }

  /** Whether a file or directory exists. */
  async exists(path: string): Promise<boolean> {
    const p = this.ctx.resolve(path)
    try {
      await this.call(p, () => this.ctx.envd.filesystem.stat({ path: p }, this.opts()))
      return true
    } catch (err) {
      if ((err as { code?: string }).code === 'file_not_found') return false
      throw err
    }
  }

  /** Moves or renames a file or directory (parent directories of `to` are created). */
  async rename(from: string, to: string): Promise<void> {
    const source = this.ctx.resolve(from)
    const destination = this.ctx.resolve(to)
    await this.call(source, () => this.ctx.envd.filesystem.move({ source, destination }, this.opts()))
  }

  /**
   * A watcher of a directory's changes. Nothing is watched until its `start()`; events go to the
   * listeners added with `addEventListener`.
   *
   * ```ts
   * const watcher = sandbox.filesystem.watchDir('/home/user/project', { recursive: true })
   * watcher.addEventListener((e) => console.log(e.operation, e.path))
   * await watcher.start()
   * // …
   * await watcher.stop()
   * ```
   */
  watchDir(path: string, opts: WatchOptions = {}): DirWatcher {
    return new DirWatcher(this.ctx, this.ctx.resolve(path), opts)
  }

  private opts() {
    return { headers: userHeader('user'), signal: this.ctx.closedSignal }
  }

  private async call<T>(path: string, fn: () => Promise<T>): Promise<T> {
    this.ctx.assertUsable()
    try {
      return await fn()
    } catch (err) {
      throw this.ctx.error(err, path)
    }
  }
}
