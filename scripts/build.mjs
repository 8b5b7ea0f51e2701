// Builds every workspace in dependency order: envd protos, the SDK, the agent and code interpreter bundles, the server, the CLI.
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'

const run = (cmd, args) => execFileSync(cmd, args, { stdio: 'inherit' })
run('npm', ['run', '--silent', 'build', '-w', '@sandlot/envd-proto'])
run('npm', ['run', '--silent', 'build', '-w', 'sandlot'])
run('npm', ['run', '--silent', 'build', '-w', '@sandlot/agent'])
run('npm', ['run', '--silent', 'build', '-w', '@sandlot/code-interpreter'])
run('npx', ['tsc', '-p', 'packages/server'])
// sandlot-idmap: user namespaces owned by a sandbox's own uid and idmapped mounts, which neither
// Debian 12's util-linux nor runc 1.1 can make (packages/server/native/sandlot-idmap.c).
try {
  run('cc', ['-O2', '-Wall', '-Wextra', '-Werror', '-o', 'packages/server/dist/sandlot-idmap', 'packages/server/native/sandlot-idmap.c'])
} catch (err) {
  throw new Error(`cannot compile packages/server/native/sandlot-idmap.c (${err.message}); install a C compiler: apt-get install gcc libc6-dev`)
}
// The CLI ships dist/ as it is (npm pack): nothing of an earlier build may linger in it.
fs.rmSync('packages/cli/dist', { recursive: true, force: true })
run('npx', ['tsc', '-p', 'packages/cli'])
fs.chmodSync('packages/cli/dist/main.js', 0o755)
