// A test "internet" on this machine: a network namespace of the tests' own, reached from the host
// through a veth on 198.18.<n>.0/30 (the benchmarking range), behind which the documentation range
// 198.51.100.0/24 is routed (not attached: to a sandbox it is the internet, not a neighbour of the
// host). Its servers are test/fixtures/internet-servers.mjs. No host route may already cover either
// range; the setup refuses to run if one does.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

export const HOST_A = '198.51.100.10'
export const HOST_B = '198.51.100.20'
export const DNS = '198.51.100.53'
const NETNS = 'sandlot-test-internet'
const VETH = 'sltinet0'
const LINK = '198.18.77'

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString()

export interface Internet {
  stop(): Promise<void>
}

function teardown(): void {
  for (const args of [['link', 'del', VETH], ['netns', 'del', NETNS], ['route', 'del', '198.51.100.0/24']]) {
    try {
      ip(...args)
    } catch {
      // not there
    }
  }
}

export async function startInternet(): Promise<Internet> {
  teardown()
  const routes = JSON.parse(ip('-j', '-4', 'route', 'show')) as { dst: string }[]
  for (const r of routes) {
    if (r.dst.startsWith('198.51.100.') || r.dst.startsWith(`${LINK}.`)) throw new Error(`a host route already covers the test internet's ranges: ${r.dst}`)
  }
  ip('netns', 'add', NETNS)
  ip('link', 'add', VETH, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', NETNS)
  ip('addr', 'add', `${LINK}.1/30`, 'dev', VETH)
  ip('link', 'set', VETH, 'up')
  ip('route', 'add', '198.51.100.0/24', 'via', `${LINK}.2`)
  const inside = (...args: string[]) => ip('-n', NETNS, ...args)
  inside('link', 'set', 'lo', 'up')
  inside('addr', 'add', `${LINK}.2/30`, 'dev', 'eth0')
  inside('link', 'set', 'eth0', 'up')
  for (const a of [HOST_A, HOST_B, DNS]) inside('addr', 'add', `${a}/32`, 'dev', 'lo')
  inside('route', 'add', 'default', 'via', `${LINK}.1`)

  // One self-signed certificate for every name (the sandboxes' curl runs with -k: the test is about
  // which server answers, and under which SNI, not about trust).
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sandlot-inet-'))
  const cert = path.join(dir, 'cert.pem')
  const key = path.join(dir, 'key.pem')
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', '/CN=test', '-addext', 'subjectAltName=DNS:*.test,DNS:*.wild.test', '-keyout', key, '-out', cert], { stdio: 'ignore' })

  const servers: ChildProcess = spawn('ip', ['netns', 'exec', NETNS, process.execPath, path.resolve('test/fixtures/internet-servers.mjs'), cert, key], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the test internet did not start within 10 s')), 10_000)
    servers.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) {
        clearTimeout(timer)
        resolve()
      }
    })
    servers.once('exit', (code) => reject(new Error(`the test internet's servers exited with ${code}`)))
  })
  return {
    async stop() {
      servers.kill()
      teardown()
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
}
