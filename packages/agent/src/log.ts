import { writeSync } from 'node:fs';

/**
 * Minimal stderr logger: the agent must stay small and start fast. Its stderr is a file on the
 * sandbox's own disk, which the sandbox may fill: a failed write is dropped (never an error event
 * that would end the stream for good), and logging resumes once there is room again.
 */
function write(line: string): void {
  try {
    writeSync(2, line);
  } catch {
    /* no room for it */
  }
}

export function logError(msg: string, err?: unknown): void {
  const detail = err instanceof Error ? (err.stack ?? err.message) : err === undefined ? '' : String(err);
  write(`[sandlot-agent] ${msg}${detail ? ': ' + detail : ''}\n`);
}

export function logInfo(msg: string): void {
  write(`[sandlot-agent] ${msg}\n`);
}
