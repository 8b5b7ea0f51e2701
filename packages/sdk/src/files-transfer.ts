// File content over envd's /files (GET streams a file out, POST with an octet-stream body streams
// one in), on the SDK's one HTTP stack (transport.ts). Streams both ways keep backpressure end to end, so a file of any size
// moves through a bounded buffer rather than through memory whole.
import fs from 'node:fs'
import { Readable, type Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { ConnectionError, fromHttp, InvalidArgumentError, SandlotError, type ServerErrorBody } from './errors.js'
import { userHeader, type SandboxContext, type SandboxUser } from './envd.js'
import { httpRequest, networkErrorCode, type HttpResponse } from './transport.js'

/**
 * What {@link Sandbox.uploadFile} sends: a path of a local file (read as a stream), bytes, or a
 * stream (a Node `Readable`, a web `ReadableStream`, or any async iterable of bytes).
 */
export type UploadSource = string | Uint8Array | Readable | ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>

/** Where {@link Sandbox.downloadFile} writes: a path of a local file (created or truncated) or a Node `Writable`. */
export type DownloadTarget = string | Writable

/** Options of file transfers. */
export interface TransferOptions {
  /** The sandbox user the file is read or written as (owner of new files). Default `user`. */
  user?: SandboxUser
  /** Aborts the transfer. */
  signal?: AbortSignal
}

/** An answer of /files whose status was 2xx: its headers, and its body as a stream. */
interface FilesResponse {
  headers: Record<string, string | string[] | undefined>
  body: Readable
}

/** Sends one /files request; resolves with the response once its headers arrived, or throws a typed error for a non-2xx one. */
async function filesRequest(
  ctx: SandboxContext,
  method: 'GET' | 'POST',
  sandboxPath: string,
  opts: TransferOptions & { body?: Uint8Array | Readable } = {},
): Promise<FilesResponse> {
  ctx.assertUsable()
  const url = new URL(`${ctx.envd.apiUrl}/files`)
  url.searchParams.set('path', sandboxPath)
  url.searchParams.set('username', opts.user ?? 'user')
  const headers: Record<string, string> = { ...ctx.envd.routingHeaders(), ...userHeader(opts.user) }
  if (method === 'POST') headers['content-type'] = 'application/octet-stream'
  if (opts.body instanceof Uint8Array) headers['content-length'] = String(opts.body.byteLength)
  const signal = opts.signal ? AbortSignal.any([opts.signal, ctx.closedSignal]) : ctx.closedSignal
  // A failing source aborts the request; say it was the source, not the network.
  let sourceFailed: Error | undefined
  if (opts.body instanceof Readable) opts.body.once('error', (err) => (sourceFailed = err))
  let res: HttpResponse
  try {
    // undici streams a Readable body with backpressure, and the answer's body as one.
    res = await httpRequest(url, { method, headers, body: opts.body, signal })
  } catch (e) {
    const err = e as Error
    if (sourceFailed) throw new SandlotError(`Reading the upload's source failed: ${sourceFailed.message}`, 'upload_source_failed', undefined, { cause: sourceFailed })
    if (opts.signal?.aborted || ctx.closedSignal.aborted) throw ctx.error(err)
    throw new ConnectionError(`Cannot reach the Sandlot server at ${ctx.envd.apiUrl} (${networkErrorCode(err) ?? err.message}).`, { cause: err })
  }
  const status = res.statusCode
  if (status >= 200 && status < 300) return { headers: res.headers, body: res.body }
  const text = await readAll(res.body, sandboxPath).then((b) => b.toString('utf8').slice(0, 4096), () => '')
  let body: ServerErrorBody | undefined
  try {
    body = JSON.parse(text) as ServerErrorBody
  } catch {
    body = undefined
  }
  throw fromHttp(status, body, text, ctx.errorContext({ path: sandboxPath }))
}

/**
 * The most `filesystem.read()`/`readBytes()` hold in memory: past it (a string of 512 MiB is past
 * what V8 can make at all), a clear error that points at the streams, never a crash.
 */
export const MAX_READ_BYTES = 256 * 1024 * 1024

const tooLarge = (sandboxPath: string, size: string) =>
  new SandlotError(
    `${sandboxPath} is ${size}: filesystem.read() and readBytes() hold a whole file in memory, up to ${MAX_READ_BYTES / 2 ** 20} MiB. Stream it instead with sandbox.downloadFile(path, localPath) or sandbox.downloadStream(path)`,
    'file_too_large',
  )

async function readAll(stream: Readable, sandboxPath: string): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of stream) {
    size += (chunk as Buffer).length
    if (size > MAX_READ_BYTES) {
      stream.destroy()
      throw tooLarge(sandboxPath, `over ${MAX_READ_BYTES / 2 ** 20} MiB`)
    }
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks)
}

/** Reads a whole file into memory (for small files; use {@link downloadTo} for big ones). @internal */
export async function readFileBytes(ctx: SandboxContext, sandboxPath: string, opts?: TransferOptions): Promise<Uint8Array> {
  const res = await filesRequest(ctx, 'GET', sandboxPath, opts)
  // Refused before a byte is read when the agent says how big it is.
  const declared = Number(res.headers['content-length'])
  if (Number.isFinite(declared) && declared > MAX_READ_BYTES) {
    res.body.destroy()
    throw tooLarge(sandboxPath, `${declared} bytes`)
  }
  const buf = await readAll(res.body, sandboxPath).catch((err) => {
    if (err instanceof SandlotError && err.code === 'file_too_large') throw err
    throw ctx.error(err, sandboxPath)
  })
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength)
}

/** A readable stream of a file's content. @internal */
export async function openReadStream(ctx: SandboxContext, sandboxPath: string, opts?: TransferOptions): Promise<Readable> {
  return (await filesRequest(ctx, 'GET', sandboxPath, opts)).body
}

/** Streams a file out of the sandbox into a local file or a Writable; resolves with the number of bytes. @internal */
export async function downloadTo(ctx: SandboxContext, sandboxPath: string, dest: DownloadTarget, opts?: TransferOptions): Promise<number> {
  const res = await filesRequest(ctx, 'GET', sandboxPath, opts)
  let bytes = 0
  const count = async function* (source: AsyncIterable<Buffer>) {
    for await (const chunk of source) {
      bytes += chunk.length
      yield chunk
    }
  }
  const out = typeof dest === 'string' ? fs.createWriteStream(dest) : dest
  try {
    await pipeline(res.body, count, out)
  } catch (err) {
    // Leave no half-written local file behind.
    if (typeof dest === 'string') await fs.promises.rm(dest, { force: true }).catch(() => {})
    throw ctx.error(err, sandboxPath)
  }
  return bytes
}

/** Streams `source` into a file in the sandbox (created or replaced; parent directories created); resolves with its absolute path. @internal */
export async function uploadFrom(ctx: SandboxContext, sandboxPath: string, source: UploadSource, opts?: TransferOptions): Promise<string> {
  let body: Uint8Array | Readable
  if (typeof source === 'string') {
    // Open it first, so a missing local file is reported as such rather than as a failed upload.
    const fh = await fs.promises.open(source, 'r').catch((err: Error) => {
      throw new InvalidArgumentError(`Cannot read the local file "${source}" to upload: ${err.message}`)
    })
    body = fh.createReadStream({ highWaterMark: 256 * 1024 })
  } else if (source instanceof Uint8Array || source instanceof Readable) body = source
  else body = Readable.from(source as AsyncIterable<Uint8Array>, { objectMode: false })
  const res = await filesRequest(ctx, 'POST', sandboxPath, { ...opts, body })
  const written = JSON.parse((await readAll(res.body, sandboxPath)).toString('utf8') || '[]') as { path: string }[]
  return written[0]?.path ?? sandboxPath
}
