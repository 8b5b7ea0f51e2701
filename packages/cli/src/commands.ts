// The CLI's sandbox commands on the SDK's lower layer (SandlotClient): create, ls, keep-alive,
// network, url, pause, resume, snapshot, fork, kill. Each prints for people, or JSON with --json.
import type { NetworkInfo, NetworkOptions, SandboxInfo } from 'sandlot'
import { CliError, client } from './client.js'
import { formatDuration } from './duration.js'
import { printJson, printTable, relativeTime } from './format.js'

const whenEnds = (s: SandboxInfo) =>
  s.endAt ? `it is kept alive until ${s.endAt.toISOString()} (${relativeTime(s.endAt)}); extend it with "sandlot keep-alive ${s.id} DURATION"` : 'it has no deadline'

/** Network settings as the commands take them. */
export type NetworkBody = Pick<NetworkOptions, 'allowInternetAccess' | 'allowOut' | 'denyOut'>

/** One line per setting, for people. */
function describeNetwork(n: NetworkInfo): string {
  const lines = [
    `internet: ${n.allowInternetAccess === false ? 'off (only allowed destinations are reachable)' : n.denyOut.length ? 'on, except denied destinations' : 'on'}`,
    `allowed out: ${n.allowOut.length ? n.allowOut.join(' ') : '-'}`,
    `denied out:  ${n.denyOut.length ? n.denyOut.join(' ') : '-'}`,
  ]
  return lines.map((l) => `  ${l}`).join('\n')
}

/**
 * The CLI exits right after creating, so nothing holds the sandbox: it lives for its keepAlive
 * (the server's limit unless --keep-alive says otherwise).
 */
export async function create(o: { template?: string; metadata: Record<string, string>; keepAliveMs?: number; network?: NetworkBody; json?: boolean }): Promise<void> {
  const s = await client().createSandbox({ template: o.template, metadata: o.metadata, keepAlive: o.keepAliveMs, network: o.network })
  if (o.json) return printJson(s)
  const kept = s.endAt ? Math.round((s.endAt.getTime() - s.startedAt.getTime()) / 1000) * 1000 : 0
  const span = kept > 0 ? ` for ${formatDuration(kept)}` : ''
  console.error(`Created sandbox from template "${s.template}"${span}: ${whenEnds(s)}.`)
  if (o.network) console.error(`Network:\n${describeNetwork(s.network)}`)
  console.log(s.id)
}

/** Replaces a sandbox's network settings (undefined: only shows them). */
export async function network(id: string, body: NetworkBody | undefined, json: boolean): Promise<void> {
  const s = body ? await client().updateNetwork(id, body) : await client().getSandbox(id)
  if (json) return printJson(s.network)
  console.log(`Sandbox ${id}${body ? ' now' : ''}:\n${describeNetwork(s.network)}`)
}

export async function keepAlive(id: string, ms: number, json: boolean, thenPause?: { keepMemory: boolean }): Promise<void> {
  const s = await client().keepAlive(id, ms, thenPause && { onTimeout: 'pause', keepMemory: thenPause.keepMemory })
  if (json) return printJson(s)
  const then = s.lifecycle.onTimeout === 'pause' ? `; then it is paused${s.lifecycle.keepMemory ? '' : ' (its files alone)'}, not destroyed` : ''
  console.error(`Sandbox ${id}: ${whenEnds(s)}${then}.`)
}

export async function pause(id: string, keepMemory: boolean, json: boolean): Promise<void> {
  const s = await client().pauseSandbox(id, { keepMemory })
  if (json) return printJson(s)
  const how = keepMemory ? 'its processes are stopped where they are and resume as they were' : 'its processes ended; its files are kept and it boots again on resume'
  console.error(`Paused sandbox ${id}: ${how}. "sandlot resume ${id}" runs it again.`)
}

export async function resume(id: string, keepAliveMs: number | undefined, json: boolean): Promise<void> {
  const before = await client().getSandbox(id)
  const s = await client().resumeSandbox(id, { keepAlive: keepAliveMs })
  if (json) return printJson(s)
  if (before.state === 'running') return console.error(`Sandbox ${id} was running already.`)
  const lost = before.paused?.memoryLost ? ' Its memory was lost while it was paused (its container was gone, as after a host restart): it booted again from its files.' : ''
  console.error(`Resumed sandbox ${id}: ${whenEnds(s)}.${lost}`)
}

export async function ls(json: boolean): Promise<void> {
  const list = await client().listSandboxes()
  if (json) return printJson(list)
  // ENDS: when the sandbox is destroyed if no client holds it then.
  const rows = [['ID', 'TEMPLATE', 'STATE', 'STARTED', 'ENDS', 'HOLDS', 'METADATA']]
  for (const s of list) {
    const meta = Object.entries(s.metadata).map(([k, v]) => `${k}=${v}`).join(',')
    const state = s.paused ? `paused ${relativeTime(s.paused.at)}${s.paused.keepMemory ? '' : ' (files)'}` : s.state
    const ends = s.paused ? '-' : s.endAt ? relativeTime(s.endAt) : s.holds ? 'when released' : '-'
    rows.push([s.id, s.template, state, relativeTime(s.startedAt), ends, String(s.holds), meta])
  }
  printTable(rows)
}

/**
 * The URL of a port preview: `<scheme>://<port>-<id>.<domain>`. The scheme is the one the CLI
 * reaches the server with (SANDLOT_API_URL), unless --https asks for https (Sandlot serves both on
 * its port; https needs its CA trusted, see the README).
 */
export async function url(id: string, portText: string, https: boolean, json: boolean): Promise<void> {
  const port = Number(portText)
  if (!/^\d+$/.test(portText) || port < 1 || port > 65535) throw new CliError('Usage: sandlot url <sandbox-id> <port> (a port number from 1 to 65535)', 2)
  const c = client()
  const s = await c.connect(id)
  const scheme = https || c.apiUrl.startsWith('https:') ? 'https' : 'http'
  const link = `${scheme}://${s.getHostname(port)}`
  if (json) return printJson({ url: link, trafficAccessToken: s.trafficAccessToken ?? null })
  if (s.trafficAccessToken) console.error(`Sandbox ${id} is private: send the header "e2b-traffic-access-token: ${s.trafficAccessToken}" with each request.`)
  console.log(link)
}

export async function snapshot(id: string, name: string | undefined, json: boolean): Promise<void> {
  const s = await client().snapshotSandbox(id, { name })
  if (json) return printJson(s)
  console.error(`Took a snapshot of sandbox ${id} (its files; it runs on): "sandlot create -t ${s.template}" makes copies of it.`)
  console.log(s.template)
}

export async function fork(id: string, count: number, keepAliveMs: number | undefined, json: boolean): Promise<number> {
  const results = await client().forkSandbox(id, { count, keepAlive: keepAliveMs })
  if (json) {
    printJson(results.map((r) => (r instanceof Error ? { error: { code: r.code, message: r.message } } : r)))
  } else {
    const made = results.filter((r): r is SandboxInfo => !(r instanceof Error))
    console.error(`Forked sandbox ${id} into ${made.length} of ${results.length}${made[0] ? `: ${whenEnds(made[0])}` : ''}.`)
    for (const r of results) {
      if (r instanceof Error) console.error(`a fork failed: ${r.message}`)
      else console.log(r.id)
    }
  }
  return results.some((r) => r instanceof Error) ? 1 : 0
}

export async function kill(id: string, json: boolean): Promise<void> {
  await client().killSandbox(id)
  if (json) return printJson({ id, killed: true })
  console.error(`Killed sandbox ${id}.`)
}
