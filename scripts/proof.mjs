// npm run proof: the proof suites (test/proof: escape, abuse, bad input, auth, faults, soak) in their
// long variants (SANDLOT_LONG_TESTS=1: more fuzz requests, more fault rounds, the 10-minute soak).
// npm test runs their short variants with everything else.
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import { root } from './setup.mjs'

const files = process.argv.slice(2)
const suite = files.length ? files : fs.readdirSync(`${root}/test/proof`).filter((f) => f.endsWith('.test.ts')).map((f) => `test/proof/${f}`)
const child = spawn(process.execPath, [`${root}/scripts/test.mjs`, ...suite], { cwd: root, env: { ...process.env, SANDLOT_LONG_TESTS: '1' }, stdio: 'inherit' })
child.on('exit', (c, s) => process.exit(c ?? (s ? 1 : 0)))
