// Bundles the agent into one ESM file (dist/agent.mjs); the native modules node-pty and fs-xattr stay
// external (mounted at runtime).
// Node builtins are turned into lazily evaluated `require()` shims so that modules loaded
// with dynamic import() (everything behind main.ts) do not load their builtins at startup.
import { build } from 'esbuild';
import { createRequire, builtinModules } from 'node:module';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const require = createRequire(import.meta.url);
const builtins = new Set(builtinModules);

/** @type {import('esbuild').Plugin} */
const lazyBuiltins = {
  name: 'lazy-builtins',
  setup(b) {
    b.onResolve({ filter: /^[a-z_:/0-9]+$/ }, (args) => {
      const name = args.path.replace(/^node:/, '');
      if (!builtins.has(name)) return undefined;
      return { path: name, namespace: 'builtin' };
    });
    b.onLoad({ filter: /.*/, namespace: 'builtin' }, (args) => {
      const mod = require(`node:${args.path}`);
      const names = Object.keys(mod).filter((k) => /^[A-Za-z_$][\w$]*$/.test(k) && k !== 'default');
      return {
        contents: `const m = __sandlotRequire(${JSON.stringify('node:' + args.path)});\nexport default m;\n` +
          (names.length ? `export const { ${names.join(', ')} } = m;\n` : ''),
        loader: 'js',
      };
    });
  },
};

await build({
  absWorkingDir: here,
  entryPoints: ['src/main.ts'],
  outfile: 'dist/agent.mjs',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: ['node-pty', 'fs-xattr'],
  minify: !process.env.NOMINIFY,
  legalComments: 'none',
  plugins: [lazyBuiltins],
  banner: { js: "globalThis.__sandlotT0=performance.now();import{createRequire as __sandlotCR}from'node:module';const __sandlotRequire=__sandlotCR(import.meta.url),require=__sandlotRequire;" },
  logLevel: 'warning',
});

// sandlot-exec (native/sandlot-exec.c): what the agent does between fork and exec (OOM mark, the
// listening socket closed, the user's ids and groups), beside the bundle on the agent's image.
// Static, so it runs in any image, whatever its libc.
import { execFileSync } from 'node:child_process';
try {
  execFileSync('cc', ['-static', '-s', '-O2', '-Wall', '-Wextra', '-Werror', '-o', 'dist/sandlot-exec', 'native/sandlot-exec.c'], { cwd: here, stdio: 'inherit' });
} catch (err) {
  throw new Error(`cannot compile packages/agent/native/sandlot-exec.c (${err.message}); install a C compiler and static libc: apt-get install gcc libc6-dev`);
}
