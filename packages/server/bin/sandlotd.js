#!/usr/bin/env node
// sandlotd: the Sandlot server, in the foreground. A file in the source tree rather than
// dist/main.js itself: npm links a workspace's bin at `npm ci`, before anything is built.
import '../dist/main.js'
