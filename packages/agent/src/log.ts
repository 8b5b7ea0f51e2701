/** Minimal stderr logger: the agent must stay small and start fast. */
export function logError(msg: string, err?: unknown): void {
  const detail = err instanceof Error ? (err.stack ?? err.message) : err === undefined ? '' : String(err);
  process.stderr.write(`[sandlot-agent] ${msg}${detail ? ': ' + detail : ''}\n`);
}

export function logInfo(msg: string): void {
  process.stderr.write(`[sandlot-agent] ${msg}\n`);
}
