// Bundles the agent into one ESM file (dist/agent.mjs); node-pty stays external (mounted at runtime).
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
await build({
  absWorkingDir: here,
  entryPoints: ['src/main.ts'],
  outfile: 'dist/agent.mjs',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: ['node-pty'],
  minify: true,
  legalComments: 'none',
  banner: { js: "import{createRequire as __sandlotCR}from'node:module';const require=__sandlotCR(import.meta.url);" },
  logLevel: 'warning',
});
