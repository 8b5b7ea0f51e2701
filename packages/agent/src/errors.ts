import { Code, ConnectError } from '@connectrpc/connect';
import { NotRegularFileError } from './fsutil.js';
import { BadPathError } from './paths.js';

/** An error of the agent's plain HTTP endpoints (/files): its status and message go to the client. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Maps a filesystem (or argument) error to a ConnectError with a clear message. */
export function toConnectError(err: unknown, path?: string): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof BadPathError || err instanceof NotRegularFileError) return new ConnectError(err.message, Code.InvalidArgument);
  const e = err as NodeJS.ErrnoException;
  const p = path ?? e?.path ?? '';
  switch (e?.code) {
    case 'ENOENT':
      return new ConnectError(`path '${p}' does not exist`, Code.NotFound);
    case 'ENOTDIR':
      return new ConnectError(`a component of path '${p}' is not a directory`, Code.InvalidArgument);
    case 'EISDIR':
      return new ConnectError(`path '${p}' is a directory`, Code.InvalidArgument);
    case 'EEXIST':
      return new ConnectError(`path '${p}' already exists`, Code.AlreadyExists);
    case 'ENOTEMPTY':
      return new ConnectError(`directory '${p}' is not empty`, Code.FailedPrecondition);
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new ConnectError(`permission denied for '${p}'`, Code.PermissionDenied);
    case 'ENOSPC':
    case 'EDQUOT':
      return new ConnectError('not enough disk space', Code.ResourceExhausted);
    case 'ELOOP':
      return new ConnectError(`too many levels of symbolic links in '${p}'`, Code.InvalidArgument);
    case 'ENAMETOOLONG':
      return new ConnectError(`path '${p}' is too long`, Code.InvalidArgument);
    case 'EINVAL':
      return new ConnectError(`invalid argument for '${p}': ${e.message}`, Code.InvalidArgument);
  }
  if (typeof e?.code === 'string' && e.code.startsWith('ERR_INVALID_ARG')) {
    return new ConnectError(e.message, Code.InvalidArgument);
  }
  return new ConnectError(e?.message ?? String(err), Code.Internal);
}

/**
 * The error a stream ends with when its request's deadline (Connect-Timeout-Ms) passed, as E2B's envd
 * ends it: a client that leaves the deadline to the server (E2B's Python SDK) must see a timeout, not
 * a normal end. Undefined when the stream ended for another reason.
 */
export function deadlineError(signal: AbortSignal, alsoWhen = false): ConnectError | undefined {
  const byContext = signal.aborted && ConnectError.from(signal.reason).code === Code.DeadlineExceeded;
  if (!byContext && !alsoWhen) return undefined;
  return new ConnectError('the deadline (Connect-Timeout-Ms) passed', Code.DeadlineExceeded);
}
