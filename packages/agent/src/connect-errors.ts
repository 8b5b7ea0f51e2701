// connect-es answers a unary request whose body is not valid protobuf with `internal` (HTTP 500);
// envd (connect-go) answers `invalid_argument` (400), as connect-es itself does for bad JSON. The
// client's mistake is told as such, and nothing the agent does fails.
import type { ConnectRouter } from '@connectrpc/connect';
import type { UniversalServerResponse } from '@connectrpc/connect/protocol';

/** Wraps every handler of the router (call after its services are registered). */
export function badProtobufIsInvalidArgument(router: ConnectRouter): void {
  router.handlers.forEach((handler, i) => {
    router.handlers[i] = Object.assign(async (req: Parameters<typeof handler>[0]) => asInvalidArgument(await handler(req)), handler);
  });
}

async function asInvalidArgument(res: UniversalServerResponse): Promise<UniversalServerResponse> {
  if (res.status !== 500 || !res.body || res.header?.get('content-encoding')) return res;
  const chunks: Uint8Array[] = [];
  for await (const chunk of res.body) chunks.push(chunk);
  let body = Buffer.concat(chunks);
  let status = res.status;
  try {
    const error = JSON.parse(body.toString()) as { code?: string; message?: string };
    if (error.code === 'internal' && error.message?.startsWith('parse binary: ')) {
      status = 400;
      body = Buffer.from(JSON.stringify({ ...error, code: 'invalid_argument' }));
    }
  } catch {
    // not a Connect error body: passed on as it is
  }
  const header = new Headers(res.header);
  header.set('content-length', String(body.length));
  return { ...res, status, header, body: (async function* () { yield body; })() };
}
