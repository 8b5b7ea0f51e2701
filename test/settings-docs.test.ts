// Every SANDLOT_* environment variable the code reads or sets is in docs/operations.md, the page that
// lists them all: a new setting without its documentation fails here.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import { root } from './sdk-env.js'

/** Names that look like settings but are not environment variables, and why. */
const NOT_SETTINGS: Record<string, string> = {
  SANDLOT_SCRIPT: "the heredoc delimiter of a Dockerfile's RUN script (packages/cli/src/dockerfile.ts)",
}

const SOURCE = /\.(ts|mts|mjs|js|c|sh|py)$/
const SKIP_DIRS = new Set(['node_modules', 'dist', 'gen', '.sandlot-test'])

function sources(dir: string): string[] {
  if (!fs.existsSync(dir)) return []
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const file = path.join(dir, e.name)
    if (e.isDirectory()) return SKIP_DIRS.has(e.name) ? [] : sources(file)
    return SOURCE.test(e.name) ? [file] : []
  })
}

/** Each SANDLOT_* name in the source, with a file it is in; constants named SANDLOT_* and wildcards (SANDLOT_DEFAULT_*) left out. */
function namesInSource(): Map<string, string> {
  const names = new Map<string, string>()
  for (const file of ['packages', 'scripts', 'test', 'bench'].flatMap((d) => sources(path.join(root, d)))) {
    const text = fs.readFileSync(file, 'utf8')
    const constants = new Set([...text.matchAll(/\b(?:const|let|var)\s+(SANDLOT_[A-Z0-9_]+)\b/g)].map((m) => m[1]))
    for (const [name] of text.matchAll(/\bSANDLOT_[A-Z0-9_]*[A-Z0-9]\b(?!\*)/g)) {
      if (!constants.has(name) && !(name in NOT_SETTINGS) && !names.has(name)) names.set(name, path.relative(root, file))
    }
  }
  return names
}

test('every SANDLOT_* variable in the source is documented in docs/operations.md', () => {
  const docs = fs.readFileSync(path.join(root, 'docs/operations.md'), 'utf8')
  const names = namesInSource()
  // The scan finds settings at all (the server's, the CLI's, the agent's, the tests').
  for (const known of ['SANDLOT_HOME', 'SANDLOT_API_URL', 'SANDLOT_AGENT_LISTEN_FD', 'SANDLOT_TEST_PORT', 'SANDLOT_DEFAULT_CPU_COUNT']) assert.ok(names.has(known), `the scan missed ${known}`)
  const missing = [...names].filter(([name]) => !new RegExp(`\\b${name}\\b`).test(docs)).map(([name, file]) => `${name} (${file})`)
  assert.deepEqual(missing, [], `not in docs/operations.md: ${missing.join(', ')}`)
})

test('every name the docs give as a setting is one the source knows (no stale names)', () => {
  const names = namesInSource()
  const documented = new Set(['README.md', 'docs/operations.md', 'docs/cli.md', 'docs/api.md'].flatMap((f) => [...fs.readFileSync(path.join(root, f), 'utf8').matchAll(/`(SANDLOT_[A-Z0-9_]*[A-Z0-9])(?:=[^`]*)?`/g)].map((m) => m[1]!)))
  const stale = [...documented].filter((name) => !names.has(name))
  assert.deepEqual(stale, [], `documented but not in the source: ${stale.join(', ')}`)
})
