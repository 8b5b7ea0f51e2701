// How much an image takes once unpacked, counted before umoci writes anything. A compressed size
// says nothing of it (a gzip of zeros is a thousand times smaller than what it unpacks to), so an
// image within SANDLOT_IMAGE_MAX_MB could otherwise fill the host's disk. Each layer blob of the
// downloaded layout is decompressed as a stream (zlib for gzip; Debian's zstd for zstd, as Node 20
// has none) and its bytes counted, stopping at the limit. A layer's tar stream is an upper bound of
// what it writes (headers and padding included).
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import zlib from 'node:zlib'
import { ImagePullError } from './errors.js'
import type { Descriptor } from './manifest.js'

export async function checkUnpackedSize(layout: string, layers: Descriptor[], ref: string, maxBytes: number, signal?: AbortSignal): Promise<number> {
  let total = 0
  const tooLarge = () =>
    new ImagePullError('too_large', `${ref} unpacks to more than this server's limit of ${Math.round(maxBytes / 2 ** 20)} MiB (SANDLOT_IMAGE_MAX_UNPACKED_MB); use a smaller image or ask the operator to raise the limit`)
  const counter = () =>
    new Writable({
      write(chunk: Buffer, _enc, done) {
        total += chunk.length
        done(total > maxBytes ? tooLarge() : null)
      },
    })
  for (const layer of layers) {
    const [algorithm, hex] = layer.digest.split(':')
    const blob = path.join(layout, 'blobs', algorithm!, hex!)
    const type = layer.mediaType ?? ''
    if (type.endsWith('+zstd')) {
      await countZstd(blob, counter(), signal)
    } else {
      const source = fs.createReadStream(blob)
      const counted = /gzip$/.test(type) ? pipeline(source, zlib.createGunzip(), counter(), { signal }) : pipeline(source, counter(), { signal })
      await counted.catch((err: Error) => {
        if (err instanceof ImagePullError || err.name === 'AbortError') throw err
        throw new ImagePullError('unpack', `a layer of ${ref} (${layer.digest}) is not valid ${type.split('.').pop()}: ${err.message}`)
      })
    }
  }
  return total
}

async function countZstd(blob: string, sink: Writable, signal?: AbortSignal): Promise<void> {
  const child = spawn('zstd', ['-dc', '--', blob], { stdio: ['ignore', 'pipe', 'pipe'], signal })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)))
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', resolve)
  })
  try {
    await pipeline(child.stdout, sink)
  } catch (err) {
    child.kill('SIGKILL')
    throw err
  }
  const code = await exited.catch((err: NodeJS.ErrnoException) => {
    throw err.code === 'ENOENT' ? new ImagePullError('unsupported', 'zstd layers need the zstd tool (apt-get install zstd)') : err
  })
  if (code !== 0) throw new ImagePullError('unpack', `a zstd layer (${path.basename(blob)}) cannot be decompressed: ${stderr.trim()}`)
}
