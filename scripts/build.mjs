// Builds every workspace in dependency order: envd protos, the SDK, the agent bundle, the server, the CLI.
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'

const run = (cmd, args) => execFileSync(cmd, args, { stdio: 'inherit' })
run('npm', ['run', '--silent', 'build', '-w', '@sandlot/envd-proto'])
run('npm', ['run', '--silent', 'build', '-w', 'sandlot'])
run('npm', ['run', '--silent', 'build', '-w', '@sandlot/agent'])
run('npx', ['tsc', '-p', 'packages/server'])
run('npx', ['tsc', '-p', 'packages/cli'])
fs.chmodSync('packages/cli/dist/main.js', 0o755)
