// Typed errors. Every error the SDK throws is a SandlotError with a stable `code`; the subclasses
// are the cases a caller may want to handle, with messages that say what to do.
import { Code, ConnectError } from '@connectrpc/connect'
import { networkErrorCode } from './transport.js'

/** Base class of every error the SDK throws. */
export class SandlotError extends Error {
  /** A stable name for the kind of failure, e.g. `sandbox_not_found` (the server's `error_code` when it sent one). */
  readonly code: string
  /** The HTTP status of the server's answer, when the error came from one. */
  readonly status?: number

  /** @internal */
  constructor(message: string, code = 'sandlot_error', status?: number, options?: { cause?: unknown }) {
    super(message, options)
    this.name = new.target.name
    this.code = code
    this.status = status
  }
}

/** The sandbox does not exist (any more): it was killed, or destroyed after its last hold closed and its keepAlive ran out. */
export class SandboxNotFoundError extends SandlotError {
  /** The sandbox that was asked for. */
  readonly sandboxId: string

  /** @internal */
  constructor(sandboxId: string, message?: string, status?: number) {
    super(
      message ??
        `Sandbox "${sandboxId}" does not exist (any more): it was killed, or destroyed after its last handle closed and its keepAlive ran out. ` +
          'Call keepAlive(ms) before close() to keep a sandbox for a later reconnect.',
      'sandbox_not_found',
      status,
    )
    this.sandboxId = sandboxId
  }
}

/** An operation did not finish in the time it was given (a `timeout` option). */
export class TimeoutError extends SandlotError {
  /** @internal */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'timeout', undefined, options)
  }
}

/** The server refused the API key, or no key was found. */
export class AuthenticationError extends SandlotError {
  /** @internal */
  constructor(message: string, status?: number) {
    super(message, 'unauthenticated', status)
  }
}

/** An argument was refused, by the SDK or the server (e.g. a keepAlive longer than the server's limit). */
export class InvalidArgumentError extends SandlotError {
  /** @internal */
  constructor(message: string, code = 'invalid_argument', status?: number) {
    super(message, code, status)
  }
}

/** Something that was asked for does not exist (a process, a route, a path). */
export class NotFoundError extends SandlotError {
  /** @internal */
  constructor(message: string, code = 'not_found', status?: number) {
    super(message, code, status)
  }
}

/** A file or directory in the sandbox does not exist. */
export class FileNotFoundError extends NotFoundError {
  /** The path in the sandbox. */
  readonly path: string

  /** @internal */
  constructor(path: string, message?: string, status?: number) {
    super(message ?? `path '${path}' does not exist in the sandbox`, 'file_not_found', status)
    this.path = path
  }
}

/** The Sandlot server could not be reached (not running, wrong URL, network down). */
export class ConnectionError extends SandlotError {
  /** @internal */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'connection_failed', undefined, options)
  }
}

/** What the server's JSON error bodies look like (`docs/api.md`). */
export interface ServerErrorBody {
  code?: number
  message?: string
  error_code?: string
}

/** What a failing call was about, for errors that need it (a sandbox id, a path). */
export interface ErrorContext {
  sandboxId?: string
  path?: string
  apiUrl?: string
}

export const authHelp = (apiUrl?: string) =>
  `${apiUrl ? `The Sandlot server at ${apiUrl}` : 'The Sandlot server'} refused the API key. ` +
  'Pass { apiKey } or set SANDLOT_API_KEY to the key the server wrote to $SANDLOT_HOME/api-key (default /var/lib/sandlot/api-key) on its machine.'

/** Maps a non-2xx answer of the REST API or /files to a typed error. */
export function fromHttp(status: number, body: ServerErrorBody | undefined, text: string, ctx: ErrorContext = {}): SandlotError {
  const message = body?.message ?? (text.trim() || `HTTP ${status}`)
  const code = body?.error_code
  // The agent answers 401 for a user that does not exist in the sandbox.
  if (status === 401) return /invalid user/.test(message) ? unknownUser(message, ctx, status) : new AuthenticationError(authHelp(ctx.apiUrl), status)
  if (status === 403) return new SandlotError(message, 'permission_denied', status)
  if (code === 'sandbox_not_found' || status === 502) return new SandboxNotFoundError(ctx.sandboxId ?? '', ctx.sandboxId ? undefined : message, status)
  if (status === 404) return ctx.path ? new FileNotFoundError(ctx.path, message, status) : new NotFoundError(message, code ?? 'not_found', status)
  if (status === 400 || status === 422) return new InvalidArgumentError(message, code ?? 'invalid_argument', status)
  if (status === 408 || status === 504) return new TimeoutError(message)
  return new SandlotError(message, code ?? `http_${status}`, status)
}

/** Maps an error of a data-plane (Connect) call to a typed error. */
export function fromConnect(err: unknown, ctx: ErrorContext = {}): SandlotError {
  if (err instanceof SandlotError) return err
  if (!(err instanceof ConnectError)) {
    return new SandlotError(err instanceof Error ? err.message : String(err), 'unknown', undefined, { cause: err })
  }
  const message = err.rawMessage
  // fetch wraps a refused or broken connection (as "fetch failed"); that is the server, not the sandbox.
  if (isConnectionFailure(err)) return new ConnectionError(`Cannot reach the Sandlot server${ctx.apiUrl ? ` at ${ctx.apiUrl}` : ''} (${networkErrorCode(err)}). Is it running?`, { cause: err })
  switch (err.code) {
    case Code.NotFound:
      return ctx.path ? new FileNotFoundError(ctx.path, message) : new NotFoundError(message)
    case Code.AlreadyExists:
      return new InvalidArgumentError(message, 'already_exists')
    case Code.InvalidArgument:
    case Code.FailedPrecondition:
    case Code.OutOfRange:
      return new InvalidArgumentError(message)
    case Code.Unauthenticated:
      // The agent answers Unauthenticated for a user that does not exist in the sandbox.
      if (/invalid user/.test(message)) return unknownUser(message, ctx)
      return new AuthenticationError(authHelp(ctx.apiUrl))
    case Code.PermissionDenied:
      return new SandlotError(message, 'permission_denied')
    case Code.DeadlineExceeded:
      return new TimeoutError(message, { cause: err })
    case Code.Unavailable:
    case Code.Unimplemented:
      // The server answers 502 for a sandbox it does not know.
      return new SandboxNotFoundError(ctx.sandboxId ?? '')
    default:
      return new SandlotError(message, Code[err.code]?.toLowerCase() ?? 'unknown', undefined, { cause: err })
  }
}

function isConnectionFailure(err: ConnectError): boolean {
  const code = networkErrorCode(err)
  return !!code && /^(ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EPIPE|UND_ERR_SOCKET|UND_ERR_CONNECT_TIMEOUT)$/.test(code)
}

/** The agent's "invalid username: 'x'", said as what it means. */
function unknownUser(message: string, ctx: ErrorContext, status?: number): InvalidArgumentError {
  const name = /'([^']*)'/.exec(message)?.[1]
  return new InvalidArgumentError(
    `${name === undefined ? 'The user' : `User "${name}"`} does not exist in ${ctx.sandboxId ? `sandbox ${ctx.sandboxId}` : 'the sandbox'} (${message}); use "user", "root" or an account the template has.`,
    'unknown_user',
    status,
  )
}
