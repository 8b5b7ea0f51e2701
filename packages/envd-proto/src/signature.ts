// envd's signed /files URLs, shared by the agent (which checks them) and the server (which finds the
// sandbox a signed URL is for when it arrives without headers).
import { createHash } from 'node:crypto'

export type FilesOperation = 'read' | 'write'

/** "v1_" + base64(sha256("<path>:<op>:<user>:<token>[:<exp>]")) without '=' padding. */
export function filesSignature(path: string, op: FilesOperation, user: string, token: string, exp?: string): string {
  const raw = `${path}:${op}:${user}:${token}${exp ? ':' + exp : ''}`
  return 'v1_' + createHash('sha256').update(raw).digest('base64').replace(/=+$/, '')
}
