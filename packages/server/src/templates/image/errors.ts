// What can go wrong pulling an image, each with a stable code and a message that says what to do.
import { SandlotError } from '../../errors.js'

export type ImagePullReason =
  /** The reference is not one Docker would accept. */
  | 'invalid_reference'
  /** The registry has no such repository or tag (or hides a private one from anonymous pulls). */
  | 'not_found'
  /** The registry wants credentials, or refused the ones given. */
  | 'unauthorized'
  /** The registry could not be reached (refused, unknown host, timed out). */
  | 'unreachable'
  /** TLS failed: plain HTTP or an untrusted certificate on a registry not listed as insecure. */
  | 'tls'
  /** No image for this host's OS and architecture. */
  | 'platform'
  /** Compressed size over the server's limit. */
  | 'too_large'
  /** Something Sandlot does not take: schema 1 manifests, foreign layers, unknown media types. */
  | 'unsupported'
  /** The layers could not be unpacked (a bad archive, ids beyond the sandboxes' range, a full disk). */
  | 'unpack'
  /** Anything else the registry or the tools said. */
  | 'failed'

/** 502 when the registry is at fault or out of reach, else 400: the request named something unusable. */
const STATUS: Partial<Record<ImagePullReason, number>> = { unreachable: 502, tls: 502, failed: 502 }

export class ImagePullError extends SandlotError {
  constructor(
    readonly reason: ImagePullReason,
    message: string,
  ) {
    super(STATUS[reason] ?? 400, `image_${reason}`, message)
    this.name = 'ImagePullError'
  }
}
