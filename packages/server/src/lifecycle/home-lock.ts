// One server per SANDLOT_HOME: two would each take the other's sandboxes for leftovers, rebuild the
// same network tables and share one database. The lock is a file naming the holder's pid and its
// start time (so a pid reused after a crash is not mistaken for a live server); a stale one, whose
// process is gone, is taken over.
import fs from 'node:fs'
import path from 'node:path'

/** A process's start time (clock ticks since boot); undefined once it is gone or a zombie. */
export function processStartTime(pid: number | string): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after the command name, which is in parentheses and may contain spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    if (fields[0] === 'Z' || fields[0] === 'X') return undefined
    return fields[19]
  } catch {
    return undefined
  }
}

export interface HomeLock {
  release(): void
}

export function lockHome(home: string): HomeLock {
  const file = path.join(home, 'server.lock')
  const mine = `${process.pid} ${processStartTime(process.pid) ?? ''}\n`
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(file, mine, { flag: 'wx', mode: 0o600 })
      return {
        // Only a lock that is still this server's; one already gone is no error at shutdown.
        release: () => {
          try {
            if (fs.readFileSync(file, 'utf8') === mine) fs.rmSync(file, { force: true })
          } catch {
            // removed meanwhile
          }
        },
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    }
    const [pid, started] = fs.readFileSync(file, 'utf8').trim().split(' ')
    if (pid && Number(pid) !== process.pid && started && processStartTime(pid) === started) {
      throw new Error(`Another Sandlot server (pid ${pid}) is using SANDLOT_HOME=${home}: stop it first, or give this server a SANDLOT_HOME of its own`)
    }
    // Its holder is gone: take it over.
    fs.rmSync(file, { force: true })
  }
  throw new Error(`cannot lock ${file}: another server is starting on the same SANDLOT_HOME`)
}
