// Pausing and resuming a sandbox, the two kinds E2B defines:
// - memory kept (the default): every process frozen where it is (the runtime's pause: the cgroup
//   freezer), CPU freed; resumed as it was (same PIDs, open files, sockets, servers) in milliseconds;
// - files only (keepMemory: false): its processes ended and all it held on the host freed (memory,
//   CPUs, network, mounts), its filesystem kept; resumed by booting it again from its files (a new
//   boot id; the template's start command is not run again, as on E2B).
// Both survive a daemon restart: a frozen container outlives the daemon like a running one, and a
// stopped one is only files. Each step is in the store before it happens (pausing, resuming), so a
// daemon that died midway finishes or undoes it at its next start (recover). A memory pause whose
// container is gone (the host restarted) resumes from its files, and says its memory was lost.
import type { Logger } from 'pino'
import type { EgressPolicy } from '../network/policy.js'
import type { RuntimeDriver } from '../runtime/driver.js'
import type { SandboxRow, Store } from '../store/db.js'

export interface PauseInfo {
  /** When it was paused (epoch ms). */
  at: number
  /** Its memory kept (processes frozen), or its files alone (processes ended). */
  memory: boolean
  /** Paused with its memory, which was lost before it resumed (its container was gone): it resumes from its files. */
  memoryLost?: boolean
  /**
   * While resuming: the deadline the resume gives it (null: none, its clients hold it). A daemon that
   * dies once the sandbox runs again but before it is stored as running leaves this for the next one
   * to apply: the deadline the client asked for, never the one from before the pause (which may have
   * passed, and would destroy it with its files).
   */
  resumeEndAt?: number | null
}

/** What happens at a sandbox's deadline, and whether a request wakes it (E2B's lifecycle). */
export interface Lifecycle {
  /** At its deadline, with no client holding it: killed (as without a lifecycle) or paused. */
  onTimeout: 'kill' | 'pause'
  /** A pause at the deadline keeps its memory (E2B's autoPauseMemory, default true). */
  keepMemory: boolean
  /** A request to it while paused with its memory (envd, a preview port) resumes it first. */
  autoResume: boolean
  /** The timeout it was created with (ms): an auto-resumed sandbox runs max(this, 300 s) on. */
  timeoutMs?: number
}

/** How long an auto-resumed sandbox runs at least (E2B: max(create timeout, 300 s)). */
export const AUTO_RESUME_MIN_MS = 300_000

/**
 * Whether a request to this paused sandbox should resume it (only a memory pause wakes: E2B). One
 * still pausing (E2B shows it as paused already) or resuming wakes too: the resume waits its turn.
 */
export const wakesOnRequest = (s: SandboxRow): boolean =>
  (s.state === 'paused' || s.state === 'pausing' || s.state === 'resuming') && !!s.lifecycle?.autoResume && !!s.pause?.memory && !s.pause.memoryLost

export interface ResumeOptions {
  /** false: boot from its files even if its memory was kept (E2B's connect with memory: false). */
  memory?: boolean
}

export class PauseControl {
  constructor(
    private readonly store: Store,
    private readonly driver: RuntimeDriver,
    private readonly log: Logger,
    /** What a sandbox that boots again is given: its token, current egress rules and env vars. */
    private readonly restartSpecOf: (s: SandboxRow) => { accessToken: string; egress?: EgressPolicy; envVars: Record<string, string> },
  ) {}

  /** Pauses a running sandbox; resolves with how it is paused once it is. */
  async pause(s: SandboxRow, memory: boolean): Promise<PauseInfo> {
    const pause: PauseInfo = { at: Date.now(), memory }
    this.store.setSandboxPause(s.id, 'pausing', pause)
    try {
      if (memory) await this.driver.freeze(s.id)
      else await this.driver.stop(s.id)
    } catch (err) {
      // Not paused after all: it runs on (a freeze that failed leaves it running).
      this.store.setSandboxPause(s.id, 'running', null)
      throw err
    }
    this.store.setSandboxPause(s.id, 'paused', pause)
    this.log.info({ sandboxId: s.id, memory }, 'sandbox paused')
    return pause
  }

  /**
   * Runs a paused sandbox again: thawed if its memory was kept (and still is), else booted from its
   * files, with `endAt` stored beside the resuming state (see PauseInfo.resumeEndAt). The caller
   * stores it as running. A frozen sandbox that cannot be thawed (its init died
   * meanwhile) boots from its files instead.
   */
  async resume(s: SandboxRow, endAt: number | null, opts: ResumeOptions = {}): Promise<{ memory: boolean }> {
    const { resumeEndAt: _, ...pause } = s.pause ?? { at: Date.now(), memory: false }
    this.store.setSandboxPause(s.id, 'resuming', { ...pause, resumeEndAt: endAt })
    try {
      if (pause.memory && !pause.memoryLost && opts.memory !== false) {
        const thawed = await this.driver.thaw(s.id).then(
          () => this.driver.alive(s.id),
          () => false,
        )
        if (thawed) return { memory: true }
        this.log.warn({ sandboxId: s.id }, 'a sandbox paused with its memory could not be thawed; booting it from its files')
      }
      await this.driver.stop(s.id)
      await this.driver.restart(s.id, this.restartSpecOf(s))
      return { memory: false }
    } catch (err) {
      // Still paused, from its files: the next resume boots it again.
      await this.driver.stop(s.id).catch(() => {})
      this.store.setSandboxPause(s.id, 'paused', { ...pause, memoryLost: pause.memory || undefined })
      throw err
    }
  }

  /**
   * At the daemon's start, for a sandbox stored as pausing, paused or resuming: finishes or undoes
   * what the previous daemon was doing, and checks that a memory pause still has its memory.
   * Resolves with its state now; one that runs again takes the deadline its resume stored
   * (PauseInfo.resumeEndAt), which the caller applies.
   */
  async recover(s: SandboxRow): Promise<'running' | 'paused'> {
    const runtime = await this.driver.state(s.id)
    const { resumeEndAt: _, ...pause } = s.pause ?? { at: Date.now(), memory: false }
    if (s.state === 'resuming' && runtime === 'running') {
      this.log.info({ sandboxId: s.id }, 'a resume the previous server began had finished')
      return 'running'
    }
    if (s.state === 'resuming' && runtime === 'paused') {
      await this.driver.thaw(s.id)
      return 'running'
    }
    if (pause.memory && !pause.memoryLost) {
      // pausing: the freeze may or may not have happened; either way it ends frozen.
      if (runtime === 'running') await this.driver.freeze(s.id)
      if (runtime === 'running' || runtime === 'paused') {
        this.store.setSandboxPause(s.id, 'paused', pause)
        return 'paused'
      }
      this.log.warn({ sandboxId: s.id }, 'a sandbox paused with its memory lost it (its container is gone, as after a host restart); it will resume from its files')
    }
    await this.driver.stop(s.id)
    this.store.setSandboxPause(s.id, 'paused', { ...pause, memoryLost: pause.memory || undefined })
    return 'paused'
  }
}
