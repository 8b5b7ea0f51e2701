// The server's log: JSON lines for machines (the journal, a log shipper, SANDLOT_LOG_JSON=1), and on a
// terminal one readable line per event: time, level, message, then its fields inline as key=value
// (pino-pretty, in this thread, with a message format of our own). An error's stack is shown only
// when the log level is debug; otherwise the error is its message.
import { pino, type Logger } from 'pino'
import pretty from 'pino-pretty'

/** What pino puts on every line, and what the line's head already shows. */
const OWN_KEYS = new Set(['level', 'time', 'pid', 'hostname', 'msg'])

/** A value as key=value writes it: bare when it is one plain word, else quoted as JSON (newlines escaped). */
export function fieldValue(value: unknown): string {
  if (typeof value === 'string') return /^[^\s"=\\\x00-\x1f\x7f]+$/.test(value) ? value : JSON.stringify(value)
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) return String(value)
  return JSON.stringify(value) ?? String(value)
}

/** Whether the message already says this value: a string within it, a number as a word of it. */
function says(message: string, value: unknown): boolean {
  if (typeof value === 'string') return value.length > 0 && message.includes(value)
  if (typeof value !== 'number') return false
  // (A whole number may be written with decimals: 23 as "23.0".)
  const text = String(value).replace(/\./g, '\\.') + (Number.isInteger(value) ? '(\\.0+)?' : '')
  return new RegExp(`(^|[^\\w.])${text}([^\\w.]|$)`).test(message)
}

interface LoggedError {
  type?: string
  message?: string
  stack?: string
}

/**
 * The text after the level: the message (its line breaks escaped, so an event stays on one line),
 * then each field as key=value, leaving out a field whose value the message already says. `err` is
 * its message, and with `stacks` its stack on the lines after.
 */
export function formatEvent(log: Record<string, unknown>, stacks: boolean): string {
  const message = typeof log.msg === 'string' ? log.msg : ''
  const parts = [message.replace(/\r?\n/g, '\\n')]
  let stack = ''
  for (const [key, value] of Object.entries(log)) {
    if (OWN_KEYS.has(key) || value === undefined) continue
    if (key === 'err' && value && typeof value === 'object') {
      const err = value as LoggedError
      if (stacks && err.stack) stack = `\n    ${err.stack.replace(/\n/g, '\n    ')}`
      if (err.message && !message.includes(err.message)) parts.push(`err=${fieldValue(err.message)}`)
      continue
    }
    if (says(message, value)) continue
    parts.push(`${key}=${fieldValue(value)}`)
  }
  return parts.filter(Boolean).join(' ') + stack
}

/** JSON lines for machines; readable lines when a person watches the terminal (unless SANDLOT_LOG_JSON=1). */
export function createLogger(level: string, env: NodeJS.ProcessEnv = process.env): Logger {
  if (!process.stdout.isTTY || env.SANDLOT_LOG_JSON === '1') return pino({ level })
  const stacks = pino.levels.values[level]! <= pino.levels.values.debug!
  const stream = pretty({
    translateTime: 'SYS:HH:MM:ss',
    ignore: 'pid,hostname',
    hideObject: true,
    // Synchronous: what the server says just before it exits must reach the terminal.
    sync: true,
    messageFormat: (log) => formatEvent(log, stacks),
  })
  return pino({ level }, stream)
}
