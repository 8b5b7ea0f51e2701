// Which host CPUs each sandbox may run on. A sandbox limited to fewer CPUs than the host has is also
// given that many CPUs of its own (cpuset), the least used ones, so `nproc` and everything else that
// reads its affinity (sched_getaffinity: coreutils, OpenMP, Go's GOMAXPROCS, Rust's
// available_parallelism) counts its limit, not the host's; its CPU time stays bounded by the quota as
// before. A sandbox with as many CPUs as the host, or more, is not pinned.
import fs from 'node:fs'

/** "0-3,8,10-11" → [0, 1, 2, 3, 8, 10, 11]. */
export function parseCpuList(list: string): number[] {
  const out: number[] = []
  for (const part of list.trim().split(',').filter(Boolean)) {
    const [a, b] = part.split('-').map(Number)
    for (let c = a!; c <= (b ?? a!); c++) out.push(c)
  }
  return out
}

export class CpuSets {
  private readonly of = new Map<string, number[]>()
  private readonly load: Map<number, number>

  constructor(readonly hostCpus: number[] = parseCpuList(fs.readFileSync('/sys/devices/system/cpu/online', 'utf8'))) {
    this.load = new Map(hostCpus.map((c) => [c, 0]))
  }

  /** The CPUs for sandbox `id` with `count` CPUs ("1,3" as the OCI spec writes it), or undefined: not pinned. */
  take(id: string, count: number): string | undefined {
    this.release(id)
    if (count >= this.hostCpus.length) return undefined
    // Least used first; among equals the lower number, so the choice is stable.
    const chosen = [...this.hostCpus].sort((a, b) => this.load.get(a)! - this.load.get(b)! || a - b).slice(0, count).sort((a, b) => a - b)
    this.note(id, chosen)
    return chosen.join(',')
  }

  /** A sandbox that already runs (re-adopted after a restart) on `cpus`. */
  adopt(id: string, cpus: string): void {
    this.release(id)
    this.note(id, parseCpuList(cpus).filter((c) => this.load.has(c)))
  }

  release(id: string): void {
    for (const c of this.of.get(id) ?? []) this.load.set(c, this.load.get(c)! - 1)
    this.of.delete(id)
  }

  private note(id: string, cpus: number[]): void {
    this.of.set(id, cpus)
    for (const c of cpus) this.load.set(c, this.load.get(c)! + 1)
  }
}
