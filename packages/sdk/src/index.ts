/**
 * The TypeScript SDK of Sandlot: create sandboxes, hold them open, keep them alive, and use their
 * files, processes and terminals. Start at {@link Sandbox}; the package's README
 * (packages/sdk/README.md) explains lifetimes, configuration and big files.
 *
 * @packageDocumentation
 */
export { Sandbox } from './sandbox.js'
export type { ForkOptions, LifecycleOptions, ListOptions, SnapshotInfo, NetworkInfo, NetworkOptions, OpenOptions, PausedInfo, PauseOptions, SandboxInfo, SandboxOptions } from './sandbox.js'
export type { CodeContext, CodeContextOptions, CodeLanguage, Execution, ExecutionError, Notebook, Result, RunCodeOptions } from './code.js'
export type { ConnectionOptions } from './config.js'
export type { LogEntry, LogLevel, LogsOptions, LogsPage, MetricsOptions, SandboxMetric } from './history.js'
export { SandlotClient } from './client.js'
export type { ApiRequestOptions, CreateSandboxOptions, StreamBody } from './client.js'
export { SandboxConnection } from './connection.js'
export type { PathInfo } from './connection.js'
export type { ExecOptions, ExecResult, RunningExec } from './exec.js'
export type { SandboxUser } from './envd.js'
export { Filesystem } from './filesystem.js'
export type { FileInfo } from './filesystem.js'
export { DirWatcher } from './watcher.js'
export type { FilesystemEvent, FilesystemOperation, WatchOptions } from './watcher.js'
export { Process, ProcessManager } from './process.js'
export type { ProcessMessage, ProcessOptions, ProcessOutput, ProcessOutputSoFar } from './process.js'
export { Terminal, TerminalManager } from './terminal.js'
export type { TerminalOptions, TerminalOutput, TerminalSize } from './terminal.js'
export type { DownloadTarget, TransferOptions, UploadSource } from './files-transfer.js'
export {
  AuthenticationError,
  ConnectionError,
  FileNotFoundError,
  InvalidArgumentError,
  NotFoundError,
  SandboxNotFoundError,
  SandlotError,
  TimeoutError,
} from './errors.js'
