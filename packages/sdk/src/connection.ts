// A running sandbox's data plane: its files, processes and terminals through envd, and port
// previews. Reached without a hold (SandlotClient.connect); a Sandbox is one of these that also
// holds its sandbox open.
import { FileType } from '@sandlot/envd-proto'
import { CodeInterpreter, type CodeContext, type CodeContextOptions, type Execution, type Notebook, type RunCodeOptions } from './code.js'
import type { Readable } from 'node:stream'
import { EnvdConnection, SandboxContext, userHeader, type SandboxUser } from './envd.js'
import { InvalidArgumentError, SandlotError } from './errors.js'
import { execRaw, type ExecOptions, type ExecResult } from './exec.js'
import { downloadTo, openReadStream, uploadFrom, type DownloadTarget, type TransferOptions, type UploadSource } from './files-transfer.js'
import { Filesystem } from './filesystem.js'
import type { SandboxJSON } from './http.js'
import { ProcessManager } from './process.js'
import { TerminalManager } from './terminal.js'

/** What a path in a sandbox is ({@link SandboxConnection.stat}). */
export interface PathInfo {
  /** Its absolute path. */
  path: string
  /** A file, a directory (a symlink counts as what it points to), or anything else. */
  type: 'file' | 'dir' | 'other'
  /** Size in bytes. */
  size: number
}

/** `<port>-<id>.<domain>`: where a port of a sandbox is reached. */
function hostnameOf(id: string, domain: string | undefined, port: number): string {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new InvalidArgumentError(`getHostname takes a port number from 1 to 65535; got ${String(port)}`)
  if (!domain) throw new SandlotError('The server did not say under which domain its sandboxes are reached: it predates port previews', 'unsupported_server')
  return `${port}-${id}.${domain}`
}

/**
 * A running sandbox's files, processes and terminals, reached without holding it
 * ({@link SandlotClient.connect}): it lives by its keepAlive deadline, whatever this object does.
 * {@link Sandbox} adds the hold.
 */
export class SandboxConnection {
  /** The sandbox's id. */
  readonly id: string
  /** Files and directories in the sandbox. */
  readonly filesystem: Filesystem
  /** Commands in the sandbox (run by a shell, output as lines). */
  readonly process: ProcessManager
  /** Interactive terminals in the sandbox. */
  readonly terminal: TerminalManager
  /**
   * The token its port previews require in the `e2b-traffic-access-token` header when it was
   * created with `network: { allowPublicTraffic: false }`; undefined when they are public.
   */
  readonly trafficAccessToken: string | undefined
  private readonly domain: string | undefined
  private readonly apiUrl: string
  /** @internal */
  protected readonly ctx: SandboxContext

  /** @internal */
  constructor(apiUrl: string, json: SandboxJSON, cwd?: string, envVars: Record<string, string> = {}) {
    this.id = json.id
    this.apiUrl = apiUrl
    this.domain = json.domain
    this.trafficAccessToken = json.trafficAccessToken ?? undefined
    this.ctx = new SandboxContext(new EnvdConnection(apiUrl, json.id, json.envdAccessToken), cwd, { ...envVars })
    this.filesystem = new Filesystem(this.ctx)
    this.process = new ProcessManager(this.ctx)
    this.terminal = new TerminalManager(this.ctx)
  }

  /**
   * Runs code in the sandbox's code interpreter (a sandbox of the `code-interpreter-v1` template):
   * Python by default, or `language: 'javascript' | 'typescript' | 'bash'`, or in a context of
   * {@link SandboxConnection.createCodeContext}. State is kept between runs of a context.
   *
   * ```ts
   * const sandbox = await Sandbox.create('code-interpreter-v1')
   * const run = await sandbox.runCode('x = 1; x + 1', { onStdout: (t) => process.stdout.write(t) })
   * console.log(run.text) // 2
   * ```
   */
  runCode(code: string, opts?: RunCodeOptions): Promise<Execution> {
    return this.code.runCode(code, opts)
  }

  /** E2B v0's name for {@link SandboxConnection.runCode}: `sandbox.notebook.execCell(code, opts)`. */
  get notebook(): Notebook {
    return { execCell: (code, opts) => this.runCode(code, opts) }
  }

  /** A new code context (a kernel of its own) for {@link SandboxConnection.runCode}. */
  createCodeContext(opts?: CodeContextOptions): Promise<CodeContext> {
    return this.code.createContext(opts)
  }

  private get code(): CodeInterpreter {
    return new CodeInterpreter(this.apiUrl, this.id, this.trafficAccessToken)
  }

  /** The sandbox's id, under E2B v0's name. */
  get sandboxID(): string {
    return this.id
  }

  /**
   * The host name under which a server listening on `port` inside the sandbox is reached through
   * Sandlot's port (E2B v0's name; E2B's `getHost`): `<port>-<id>.<domain>`, with the server's
   * port when it is not the default one. Put `http://` or `https://` in front (Sandlot serves both);
   * WebSocket servers work too (`ws://`, `wss://`). A server bound to 127.0.0.1 inside is reached as
   * well as one bound to 0.0.0.0.
   *
   * ```ts
   * await sandbox.process.start({ cmd: 'python3 -m http.server 8000' })
   * const res = await fetch(`http://${sandbox.getHostname(8000)}/`)
   * ```
   */
  getHostname(port: number): string {
    return hostnameOf(this.id, this.domain, port)
  }

  /**
   * Runs a program with its arguments as given (no shell; `argv[0]` is looked up on PATH), with
   * raw bytes in and out as they come; resolves with how it ended. Never retried.
   *
   * ```ts
   * const { exitCode } = await sandbox.exec(['tar', '-c', '-C', '/data', '.'], { onStdout: (bytes) => out.write(bytes) })
   * ```
   */
  exec(argv: string[], opts?: ExecOptions): Promise<ExecResult> {
    return execRaw(this.ctx, argv, opts)
  }

  /** What a path in the sandbox is (as `user`, or `user` given), or undefined when nothing is there. */
  async stat(path: string, user?: SandboxUser): Promise<PathInfo | undefined> {
    const p = this.ctx.resolve(path)
    try {
      this.ctx.assertUsable()
      const { entry } = await this.ctx.envd.filesystem.stat({ path: p }, { headers: userHeader(user), signal: this.ctx.closedSignal })
      if (!entry) return undefined
      return { path: entry.path, type: entry.type === FileType.DIRECTORY ? 'dir' : entry.type === FileType.FILE ? 'file' : 'other', size: Number(entry.size) }
    } catch (err) {
      const e = this.ctx.error(err, p)
      if (e.code === 'file_not_found') return undefined
      throw e
    }
  }

  /**
   * Streams a file into the sandbox without holding it in memory (created or replaced, parent
   * directories created); resolves with its absolute path there.
   *
   * @param path - where in the sandbox (relative: under `cwd`, else `/home/user`)
   * @param source - a local file's path, bytes, or a stream (Node `Readable`, web `ReadableStream`, async iterable of bytes)
   */
  uploadFile(path: string, source: UploadSource, opts?: TransferOptions): Promise<string> {
    return uploadFrom(this.ctx, this.ctx.resolve(path), source, opts)
  }

  /**
   * Streams a file out of the sandbox without holding it in memory; resolves with its size in bytes.
   *
   * @param path - the file in the sandbox
   * @param dest - a local file's path (created or replaced; removed again if the download fails) or a Node `Writable`
   */
  downloadFile(path: string, dest: DownloadTarget, opts?: TransferOptions): Promise<number> {
    return downloadTo(this.ctx, this.ctx.resolve(path), dest, opts)
  }

  /** A readable stream of a file in the sandbox. Throws {@link FileNotFoundError} if it does not exist. */
  downloadStream(path: string, opts?: TransferOptions): Promise<Readable> {
    return openReadStream(this.ctx, this.ctx.resolve(path), opts)
  }
}
