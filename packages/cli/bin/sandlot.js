#!/usr/bin/env node
// The `sandlot` command. A file in the source tree rather than dist/main.js itself: npm links a
// workspace's bin at `npm ci`, before anything is built, and skips a target that does not exist yet.
import '../dist/main.js'
