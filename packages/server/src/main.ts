#!/usr/bin/env node
// sandlotd entry point: runs the server in the foreground until SIGINT/SIGTERM.
import { startServer } from './index.js'

const server = await startServer().catch((err: Error) => {
  console.error(`sandlotd: ${err.message}`)
  process.exit(1)
})
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    // Sandboxes keep running: a restarted daemon re-adopts them.
    void server.close().finally(() => process.exit(0))
  })
}
