// The id range that sandbox user namespaces map to: root's range in /etc/subuid and /etc/subgid.
// Templates are built owned by this range, so no sandbox ever needs a chown of its own.
import fs from 'node:fs'

export interface IdRange {
  hostId: number
  size: number
}

const DEFAULT: IdRange = { hostId: 100000, size: 65536 }

function readRange(file: string): IdRange | undefined {
  let text = ''
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch {
    return undefined
  }
  for (const line of text.split('\n')) {
    const [name, start, count] = line.trim().split(':')
    if ((name === 'root' || name === '0') && Number(count) >= 65536) return { hostId: Number(start), size: 65536 }
  }
  return undefined
}

/** Returns root's subordinate id range, adding the default one when root has none (mmdebstrap needs it). */
export function ensureIdRange(): IdRange {
  const ranges: IdRange[] = []
  for (const file of ['/etc/subuid', '/etc/subgid']) {
    let range = readRange(file)
    if (!range) {
      fs.appendFileSync(file, `root:${DEFAULT.hostId}:${DEFAULT.size}\n`)
      range = DEFAULT
    }
    ranges.push(range)
  }
  if (ranges[0]!.hostId !== ranges[1]!.hostId) {
    throw new Error(`root's ranges in /etc/subuid (${ranges[0]!.hostId}) and /etc/subgid (${ranges[1]!.hostId}) differ; make them equal`)
  }
  return ranges[0]!
}
