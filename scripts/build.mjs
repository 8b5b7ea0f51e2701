// Builds the workspaces in dependency order: envd protos, the SDK, the agent and code interpreter
// bundles, the server, the CLI. `node scripts/build.mjs` builds them all; with names
// (`node scripts/build.mjs sdk cli`), those alone (scripts/setup.mjs picks what changed).
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const run = (cmd, args) => execFileSync(cmd, args, { stdio: 'inherit', cwd: root })
const npmBuild = (pkg) => () => run('npm', ['run', '--silent', 'build', '-w', pkg])

/**
 * Each workspace: its folder, the workspaces whose builds it uses (a rebuild of one rebuilds it),
 * what its build makes (missing: it is built), and how.
 */
export const WORKSPACES = [
  { name: 'envd-proto', dir: 'packages/envd-proto', uses: [], outputs: ['dist/index.js'], build: npmBuild('@sandlot/envd-proto') },
  { name: 'sdk', dir: 'packages/sdk', uses: ['envd-proto'], outputs: ['dist/index.mjs', 'dist/index.cjs'], build: npmBuild('sandlot') },
  { name: 'agent', dir: 'packages/agent', uses: ['envd-proto'], outputs: ['dist/agent.mjs', 'dist/sandlot-exec'], build: npmBuild('@sandlot/agent') },
  { name: 'code-interpreter', dir: 'packages/code-interpreter', uses: [], outputs: ['dist/code-interpreter.mjs'], build: npmBuild('@sandlot/code-interpreter') },
  {
    name: 'server',
    dir: 'packages/server',
    uses: ['envd-proto'],
    outputs: ['dist/main.js', 'dist/sandlot-idmap'],
    build: () => {
      run('npx', ['tsc', '-p', 'packages/server'])
      // sandlot-idmap: user namespaces owned by a sandbox's own uid and idmapped mounts, which neither
      // Debian 12's util-linux nor runc 1.1 can make (packages/server/native/sandlot-idmap.c).
      try {
        run('cc', ['-O2', '-Wall', '-Wextra', '-Werror', '-o', 'packages/server/dist/sandlot-idmap', 'packages/server/native/sandlot-idmap.c'])
      } catch (err) {
        throw new Error(`cannot compile packages/server/native/sandlot-idmap.c (${err.message}); install a C compiler: apt-get install gcc libc6-dev`)
      }
    },
  },
  {
    name: 'cli',
    dir: 'packages/cli',
    uses: ['sdk'],
    outputs: ['dist/main.js'],
    build: () => {
      // The CLI ships dist/ as it is (npm pack): nothing of an earlier build may linger in it.
      fs.rmSync(path.join(root, 'packages/cli/dist'), { recursive: true, force: true })
      run('npx', ['tsc', '-p', 'packages/cli'])
      fs.chmodSync(path.join(root, 'packages/cli/dist/main.js'), 0o755)
    },
  },
]

/** Builds the named workspaces (all by default), in the order above. */
export function buildWorkspaces(names = WORKSPACES.map((w) => w.name)) {
  const unknown = names.filter((n) => !WORKSPACES.some((w) => w.name === n))
  if (unknown.length) throw new Error(`no workspace ${unknown.join(', ')} (there are ${WORKSPACES.map((w) => w.name).join(', ')})`)
  for (const w of WORKSPACES) if (names.includes(w.name)) w.build()
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  buildWorkspaces(process.argv.length > 2 ? process.argv.slice(2) : undefined)
}
