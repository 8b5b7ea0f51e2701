// What every command shares: the SDK's client (one per run), the CLI's own error type, and how any
// failure is said to the user: a message that tells what to do, never a stack trace.
import { AuthenticationError, ConnectionError, SandboxNotFoundError, SandlotClient, SandlotError } from 'sandlot'

/** A failure the CLI itself found (bad input), with its exit code (2: usage). */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message)
  }
}

/**
 * Reads and retries briefly across a server restart: 2 s unless SANDLOT_RETRY_TIMEOUT_MS says
 * otherwise, so that a server that is simply not running is said so at once.
 */
const CLI_RETRY_MS = 2_000

let shared: SandlotClient | undefined

/** The client, made at first use (a missing API key is an error of the commands that need one). */
export function client(): SandlotClient {
  shared ??= new SandlotClient({ retryTimeout: process.env.SANDLOT_RETRY_TIMEOUT_MS ? undefined : CLI_RETRY_MS })
  return shared
}

/** The message and exit code for any failure of a command. */
export function explain(err: unknown): { message: string; exitCode: number } {
  if (err instanceof CliError) return { message: err.message, exitCode: err.exitCode }
  if (err instanceof SandboxNotFoundError) {
    return { message: `Sandbox ${err.sandboxId} doesn't exist (any more), or is not running: it was killed, or its keep-alive ran out. "sandlot ls" lists the running ones.`, exitCode: 1 }
  }
  if (err instanceof AuthenticationError && err.status !== undefined) {
    return { message: `The server at ${client().apiUrl} refused the API key: check SANDLOT_API_KEY (on the server's machine, it is in $SANDLOT_HOME/api-key).`, exitCode: 1 }
  }
  // No key found: the SDK's words, less its option (the CLI has none).
  if (err instanceof AuthenticationError) return { message: err.message.replace('pass { apiKey }, ', ''), exitCode: 1 }
  if (err instanceof ConnectionError || err instanceof SandlotError) return { message: err.message, exitCode: 1 }
  const e = err as Error
  const detail = process.env.SANDLOT_DEBUG ? `\n${e?.stack}` : ' (SANDLOT_DEBUG=1 shows where)'
  return { message: `unexpected error: ${e?.message ?? String(err)}${detail}`, exitCode: 1 }
}
