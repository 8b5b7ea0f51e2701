// `sandlot cp SRC ID:PATH` and `sandlot cp ID:PATH DEST`, as docker cp writes them. Files go over
// the SDK's streamed uploads and downloads; directories as a tar stream through exec (tar in the
// sandbox, node-tar here), chunk by chunk with backpressure, never whole in memory. What comes out
// of a sandbox is untrusted: node-tar keeps every entry inside the destination.
import { once } from 'node:events'
import fs from 'node:fs'
import path from 'node:path'
import type { SandboxConnection } from 'sandlot'
import * as tar from 'tar'
import { CliError, client } from './client.js'
import { printJson } from './format.js'

interface Remote {
  id: string
  path: string
}

/** `ID:PATH` is in a sandbox; a path starting with / or . is local whatever it holds (as docker). */
function remoteOf(arg: string): Remote | undefined {
  if (arg.startsWith('/') || arg.startsWith('.')) return undefined
  const m = /^([^/:]+):(.*)$/.exec(arg)
  return m ? { id: m[1]!, path: m[2] || '.' } : undefined
}

const USAGE = 'Usage: sandlot cp LOCAL ID:PATH | sandlot cp ID:PATH LOCAL (files or directories)'

/** What a copy did (printed as JSON with --json). */
interface Copied {
  from: string
  to: string
  type: 'file' | 'directory'
  /** Regular files copied, and their bytes. */
  files: number
  bytes: number
}

export async function cp(src: string, dest: string, opts: { user: string; json: boolean }): Promise<void> {
  const from = remoteOf(src)
  const to = remoteOf(dest)
  if (!!from === !!to) throw new CliError(`${USAGE}: exactly one side is in a sandbox`, 2)
  const done = to ? await upload(src, to, opts.user) : await download(from!, dest, opts.user)
  if (opts.json) return printJson(done)
  if (done.type === 'file') console.error(`Copied ${done.from} to ${done.to} (${done.bytes} bytes).`)
  else console.error(`Copied ${done.from}/ to ${done.to}/ (${done.files} files, ${done.bytes} bytes).`)
}

const addFile = (tally: { files: number; bytes: number }, size: number) => {
  tally.files++
  tally.bytes += size
}

/** The error of a tar in the sandbox that failed. */
function tarFailed(what: string, code: number, stderr: string): CliError {
  const why = stderr.trim() || `exit code ${code}`
  return new CliError(`${what} failed: ${/tar: not found|No such file or directory.*tar/.test(why) ? 'the sandbox has no tar, which copying a directory needs' : why}`)
}

async function upload(local: string, to: Remote, user: string): Promise<Copied> {
  const st = await fs.promises.stat(local).catch(() => {
    throw new CliError(`${local}: no such file or directory here`)
  })
  const sandbox = await client().connect(to.id)
  const there = await sandbox.stat(to.path, user)
  const into = there?.type === 'dir' || to.path.endsWith('/')
  const target = into ? path.posix.join(there?.path ?? to.path, path.basename(path.resolve(local))) : to.path
  if (st.isFile()) {
    const written = await sandbox.uploadFile(target, local, { user })
    return { from: local, to: `${to.id}:${written}`, type: 'file', files: 1, bytes: st.size }
  }
  if (!st.isDirectory()) throw new CliError(`${local} is neither a file nor a directory`)
  if (there && there.type !== 'dir') throw new CliError(`${to.id}:${to.path} exists and is not a directory`)
  // tar -x as the user; no owners from here (they mean nothing in the sandbox).
  let stderr = ''
  const sent = { files: 0, bytes: 0 }
  const count = (_: string, e: fs.Stats | tar.ReadEntry) => {
    if ('isFile' in e && e.isFile()) addFile(sent, e.size)
    return true
  }
  const end = await sandbox.exec(['sh', '-c', 'mkdir -p -- "$1" && cd -- "$1" && exec tar -x -f - --no-same-owner', 'sh', target], {
    user,
    stdin: tar.c({ cwd: local, portable: true, filter: count }, ['.']) as AsyncIterable<Uint8Array>,
    onStderr: (b) => void (stderr += Buffer.from(b).toString()),
  })
  if (end.exitCode !== 0) throw tarFailed(`Copying into ${to.id}:${target}`, end.exitCode, stderr)
  return { from: local, to: `${to.id}:${target}`, type: 'directory', ...sent }
}

async function download(from: Remote, local: string, user: string): Promise<Copied> {
  const sandbox: SandboxConnection = await client().connect(from.id)
  const there = await sandbox.stat(from.path, user)
  if (!there) throw new CliError(`${from.id}:${from.path} does not exist`)
  const here = await fs.promises.stat(local).catch(() => undefined)
  const target = here?.isDirectory() ? path.join(local, path.posix.basename(there.path)) : local
  if (there.type === 'file') {
    const bytes = await sandbox.downloadFile(there.path, target, { user })
    return { from: `${from.id}:${there.path}`, to: target, type: 'file', files: 1, bytes }
  }
  if (there.type !== 'dir') throw new CliError(`${from.id}:${from.path} is neither a file nor a directory`)
  const existing = await fs.promises.stat(target).catch(() => undefined)
  if (existing && !existing.isDirectory()) throw new CliError(`${target} exists and is not a directory`)
  await fs.promises.mkdir(target, { recursive: true })
  // No owners, no absolute paths or "..": entries land inside target, as this user.
  const got = { files: 0, bytes: 0 }
  const unpack = tar.x({
    cwd: target,
    preserveOwner: false,
    strict: true,
    onReadEntry: (e) => {
      if (e.type === 'File') addFile(got, e.size)
    },
  })
  const done = new Promise<void>((resolve, reject) => {
    unpack.on('close', resolve)
    unpack.on('error', reject)
  })
  let stderr = ''
  const end = await sandbox.exec(['tar', '-c', '-f', '-', '-C', there.path, '.'], {
    user,
    onStdout: (chunk) => {
      if (!unpack.write(Buffer.from(chunk))) return once(unpack, 'drain').then(() => {})
    },
    onStderr: (b) => void (stderr += Buffer.from(b).toString()),
  })
  unpack.end()
  await done.catch((err: Error) => {
    throw new CliError(`Unpacking ${from.id}:${there.path} into ${target} failed: ${err.message}`)
  })
  if (end.exitCode !== 0) throw tarFailed(`Reading ${from.id}:${there.path}`, end.exitCode, stderr)
  return { from: `${from.id}:${there.path}`, to: target, type: 'directory', ...got }
}
