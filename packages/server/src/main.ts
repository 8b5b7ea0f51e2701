#!/usr/bin/env node
// sandlotd entry point: runs the server in the foreground until SIGINT/SIGTERM.
import { loadConfig, startServer } from './index.js'
import { createLogger } from './log.js'

const server = await (async () => {
  const config = loadConfig()
  const log = createLogger(config.logLevel)
  // Node's own warnings (deprecations and the like) become log lines, not free text between them.
  process.removeAllListeners('warning')
  process.on('warning', (w: Error & { code?: string }) => log.warn({ code: w.code }, `${w.name}: ${w.message}`))
  return startServer(config, log)
})().catch((err: Error) => {
  console.error(`sandlotd: ${err.message}`)
  process.exit(1)
})
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    // Sandboxes keep running: a restarted daemon re-adopts them.
    void server.close().finally(() => process.exit(0))
  })
}
