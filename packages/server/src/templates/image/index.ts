// Templates from OCI images in a registry: what the build pipeline calls (pull.ts has the steps).
export { ImagePullError, type ImagePullReason } from './errors.js'
export type { ImageConfig, Platform } from './manifest.js'
export { DEFAULT_MAX_IMAGE_MB, imagePullSettings, pullImage, type PulledImage, type PullRequest } from './pull.js'
export { isInsecureRegistry, parseInsecureRegistries, parseReference, type ImageReference } from './reference.js'
