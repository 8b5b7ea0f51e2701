// Bundles the code interpreter (with @jupyterlab/services and ws) into one ESM file,
// dist/code-interpreter.mjs, which every sandbox gets read-only at /opt/sandlot/code-interpreter.
import { build } from 'esbuild'
import { fileURLToPath } from 'node:url'

await build({
  absWorkingDir: fileURLToPath(new URL('.', import.meta.url)),
  entryPoints: ['src/main.ts'],
  outfile: 'dist/code-interpreter.mjs',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  minify: !process.env.NOMINIFY,
  legalComments: 'none',
  // ws's optional native helpers are not there; it works without them.
  external: ['bufferutil', 'utf-8-validate'],
  banner: { js: "import{createRequire as __sandlotCR}from'node:module';const require=__sandlotCR(import.meta.url);" },
  logLevel: 'warning',
})
