// Typed errors with a stable code; the API turns them into JSON bodies with the numeric HTTP status.
export class SandlotError extends Error {
  constructor(
    readonly status: number,
    readonly errorCode: string,
    message: string,
  ) {
    super(message)
    this.name = 'SandlotError'
  }
}

export const badRequest = (message: string) => new SandlotError(400, 'bad_request', message)
export const unauthorized = (message: string) => new SandlotError(401, 'unauthorized', message)
export const notFound = (message: string) => new SandlotError(404, 'not_found', message)
export const conflict = (message: string) => new SandlotError(409, 'conflict', message)
export const sandboxNotFound = (id: string) =>
  new SandlotError(404, 'sandbox_not_found', `Sandbox "${id}" doesn't exist or you don't have access to it`)
export const unavailable = (message: string) => new SandlotError(503, 'unavailable', message)
export const notImplemented = (message: string) => new SandlotError(501, 'not_implemented', message)
