// The SDK from CommonJS: create a sandbox, run a command, move a file in and out, clean up.
//
//   node examples/quickstart.cjs
//
// Needs a running Sandlot server (npm start); SANDLOT_API_URL and SANDLOT_API_KEY select another one.
const { Sandbox } = require('sandlot')

async function main() {
  const sandbox = await Sandbox.create({ metadata: { example: 'quickstart' } })
  try {
    const result = await sandbox.process.startAndWait({
      cmd: 'python3 -c "import platform; print(platform.python_version())"',
      onStdout: (m) => console.log(`[stdout] ${m.line}`),
    })
    console.log(`python3 exited with ${result.exitCode}`)

    await sandbox.filesystem.write('notes/todo.txt', 'write more tests\n')
    const entries = await sandbox.filesystem.list('notes')
    console.log(`notes/: ${entries.map((e) => e.name).join(', ')}`)
    console.log(`todo.txt says: ${(await sandbox.filesystem.read('notes/todo.txt')).trim()}`)
  } finally {
    await sandbox.kill()
  }
}

main().catch((err) => {
  console.error(`${err.name}: ${err.message}`)
  process.exit(1)
})
