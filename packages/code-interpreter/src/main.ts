// The code interpreter inside a sandbox, on the agent's node (/opt/sandlot): `supervise` (the
// template's start command) runs jupyter-server and `serve`, the execution server on port 49999,
// and restarts them when they end.
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { Contexts } from './contexts.js'
import { createServer } from './server.js'
import { supervise } from './supervisor.js'

const PORT = Number(process.env.SANDLOT_CODE_INTERPRETER_PORT ?? 49999)
const JUPYTER_PORT = Number(process.env.SANDLOT_JUPYTER_PORT ?? 8888)
const JUPYTER_URL = `http://127.0.0.1:${JUPYTER_PORT}`
const HOME = process.env.HOME && process.env.HOME !== '/' ? process.env.HOME : '/home/user'
const LOG_FILE = process.env.SANDLOT_CODE_INTERPRETER_LOG ?? '/tmp/code-interpreter.log'
/** The template's jupyter-server configuration (kernel WebSockets without Nagle's algorithm), where the template has it. */
const JUPYTER_CONFIG = '/opt/code-interpreter/jupyter_server_config.py'

/** This script on the agent's node: through /opt/sandlot's loader and libraries when it runs there. */
function selfCommand(mode: string): string[] {
  const script = fileURLToPath(import.meta.url)
  const root = path.dirname(path.dirname(script))
  const loader = path.join(root, 'lib/ld.so')
  if (fs.existsSync(loader)) return [loader, '--inhibit-cache', '--library-path', path.join(root, 'lib'), path.join(root, 'bin/node'), script, mode]
  return [process.execPath, script, mode]
}

async function waitForJupyter(): Promise<void> {
  for (;;) {
    const ok = await fetch(`${JUPYTER_URL}/api`).then((r) => r.ok, () => false)
    if (ok) return
    await new Promise((r) => setTimeout(r, 100))
  }
}

async function serve(): Promise<void> {
  await waitForJupyter()
  const contexts = new Contexts(JUPYTER_URL, HOME)
  // The default contexts exist before the server answers (its health is the template's ready check);
  // without a JavaScript kernel Python still works (and the next JavaScript request tries again).
  await Promise.all([
    contexts.defaultFor('python'),
    contexts.defaultFor('javascript').catch((err: Error) => console.error(`code interpreter: no default JavaScript context: ${err.message}`)),
  ])
  const server = createServer(contexts)
  server.listen(PORT, '0.0.0.0', () => console.log(`code interpreter listening on :${PORT}`))
}

const mode = process.argv[2]
if (mode === 'supervise') {
  await supervise({
    jupyter: [
      // Debian's jupyter-server package has this command (the `jupyter` one is jupyter-core's).
      'jupyter-server', '--no-browser', '--ip=127.0.0.1', `--port=${JUPYTER_PORT}`, '--port-retries=0',
      `--ServerApp.root_dir=${HOME}`, '--ServerApp.token=', '--ServerApp.password=', '--ServerApp.disable_check_xsrf=True',
      '--ServerApp.terminals_enabled=False',
      ...(fs.existsSync(JUPYTER_CONFIG) ? [`--config=${JUPYTER_CONFIG}`] : []),
    ],
    server: selfCommand('serve'),
    logFile: LOG_FILE,
  })
} else if (mode === 'serve') {
  await serve().catch((err: Error) => {
    console.error(`code interpreter: ${err.stack ?? err.message}`)
    process.exit(1)
  })
} else {
  console.error('usage: code-interpreter.mjs supervise | serve')
  process.exit(2)
}
