// A sandbox that outlives the process that made it: write a file, keep the sandbox alive for 2
// minutes after closing, then reconnect by id (from this or any other process) and read it back.
//
//   node examples/keep-alive.mjs
//
// Needs a running Sandlot server (npm start); SANDLOT_API_URL and SANDLOT_API_KEY select another one.
import { Sandbox } from 'sandlot'

const sandbox = await Sandbox.create({ template: 'base' })
await sandbox.filesystem.write('hello.txt', 'Hello World!')
const sandboxID = sandbox.id
await sandbox.keepAlive(2 * 60 * 1000)
await sandbox.close()
// … later, from anywhere …
const sandbox2 = await Sandbox.reconnect(sandboxID)
const content = await sandbox2.filesystem.read('hello.txt')
console.log(content)
await sandbox2.close()

console.error(`Sandbox ${sandboxID} stays alive for 2 minutes: reconnect with Sandbox.reconnect('${sandboxID}').`)
