import { filesSignature } from '@sandlot/envd-proto/signature';
import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { config } from './config.js';

export function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** True if the request carries the sandbox's X-Access-Token. Without a configured token, nothing is. */
export function hasValidToken(req: IncomingMessage): boolean {
  const token = config.accessToken;
  if (!token) return false;
  const got = req.headers['x-access-token'];
  return typeof got === 'string' && safeEqual(got, token);
}

export type SignatureResult = { ok: true } | { ok: false; message: string };

/** Validates /files access for a request without a valid token. */
export function checkFilesAccess(req: IncomingMessage, url: URL, op: 'read' | 'write'): SignatureResult {
  if (hasValidToken(req)) return { ok: true };
  const token = config.accessToken;
  if (!token) return { ok: false, message: 'the agent has no access token' };
  const signature = url.searchParams.get('signature');
  if (!signature) return { ok: false, message: 'missing access token or signature' };
  const path = url.searchParams.get('path') ?? '';
  const user = url.searchParams.get('username') ?? '';
  const exp = url.searchParams.get('signature_expiration') ?? undefined;
  if (!safeEqual(signature, filesSignature(path, op, user, token, exp))) {
    return { ok: false, message: 'invalid signature' };
  }
  if (exp !== undefined) {
    const n = Number(exp);
    if (!Number.isFinite(n)) return { ok: false, message: 'invalid signature expiration' };
    if (n < Date.now() / 1000) return { ok: false, message: 'signature is already expired' };
  }
  return { ok: true };
}
