// Builds the SDK for both module systems: esbuild bundles dist/index.mjs and dist/index.cjs (the
// private @sandlot/envd-proto is bundled in; Connect, protobuf and undici stay dependencies), and tsc
// emits the declarations once, copied for require() under a {"type":"commonjs"} marker so
// TypeScript reads them as CommonJS there.
import { build } from 'esbuild'
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
const dist = path.join(here, 'dist')
fs.rmSync(dist, { recursive: true, force: true })

const common = {
  entryPoints: [path.join(here, 'src/index.ts')],
  bundle: true,
  platform: 'node',
  target: 'node20',
  external: ['@connectrpc/connect', '@connectrpc/connect-web', '@bufbuild/protobuf', '@bufbuild/protobuf/*', 'undici'],
  logLevel: 'warning',
}
await build({ ...common, format: 'esm', outfile: path.join(dist, 'index.mjs') })
// import.meta.url (lifeline.ts resolves undici from the SDK's own place) as CommonJS knows it.
await build({
  ...common,
  format: 'cjs',
  outfile: path.join(dist, 'index.cjs'),
  define: { 'import.meta.url': '__sandlotModuleUrl' },
  banner: { js: "const __sandlotModuleUrl = require('node:url').pathToFileURL(__filename).href;" },
})

execFileSync(process.execPath, [path.join(here, '../../node_modules/typescript/bin/tsc'), '-p', here], { stdio: 'inherit' })
const types = path.join(dist, 'types')
for (const f of fs.readdirSync(types)) {
  if (fs.readFileSync(path.join(types, f), 'utf8').includes('@sandlot/')) {
    throw new Error(`${f}: a public declaration refers to a private workspace package`)
  }
}
fs.cpSync(types, path.join(dist, 'cjs-types'), { recursive: true })
fs.writeFileSync(path.join(dist, 'cjs-types/package.json'), '{ "type": "commonjs" }\n')
