// npm start: from a fresh clone, installs what is missing, builds, and runs sandlotd in the
// foreground on its defaults (the server builds the base template on its first start).
import { setup } from './setup.mjs'

setup()
await import('../packages/server/dist/main.js')
