// Templates: a cold build and the same build fully cached; create → first command from a template
// whose start command is a web server (answering when create returns) against base; and the disk N
// templates on the same base take (their own layers against the base they share).
import { execFileSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { apiKey, apiUrl, home, run } from '../test/helpers.js'
import { fmt, stats, summary } from './stats.js'

const N_CREATE = Number(process.env.BENCH_TEMPLATE_CREATE ?? 10)
const N_TEMPLATES = Number(process.env.BENCH_TEMPLATES ?? 5)

async function call(method: string, route: string, body?: unknown): Promise<any> {
  const headers = { 'x-api-key': apiKey(), ...(body !== undefined && { 'content-type': 'application/json' }) }
  const res = await fetch(`${apiUrl}${route}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) })
  const text = await res.text()
  if (res.status >= 400) throw new Error(`${method} ${route}: ${res.status} ${text}`)
  return text ? JSON.parse(text) : undefined
}

async function build(body: Record<string, unknown>): Promise<number> {
  const t0 = performance.now()
  const { templateId, buildId } = await call('POST', '/api/v1/templates', body)
  for (;;) {
    const s = await call('GET', `/api/v1/templates/${templateId}/builds/${buildId}?logsOffset=100000`)
    if (s.status === 'ready') return performance.now() - t0
    if (s.status === 'error') throw new Error(`build failed: ${JSON.stringify(s.reason)}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

// A context of 10 MiB in 200 files, uploaded once.
const ctx = fs.mkdtempSync(path.join(os.tmpdir(), 'sandlot-bench-ctx-'))
for (let i = 0; i < 200; i++) fs.writeFileSync(path.join(ctx, `f${i}.bin`), crypto.randomBytes(50 * 1024))
const archive = execFileSync('tar', ['-czf', '-', '-C', ctx, '.'], { maxBuffer: 1 << 26 })
const hash = crypto.createHash('sha256').update(archive).digest('hex')
await fetch(`${apiUrl}/api/v1/templates/files/${hash}`, { method: 'PUT', headers: { 'x-api-key': apiKey() }, body: archive })
fs.rmSync(ctx, { recursive: true })

const steps = [
  { type: 'RUN', args: ['mkdir -p ~/many && cd ~/many && for i in $(seq 2000); do echo $i > f$i; done'] },
  { type: 'ENV', args: ['APP_ENV', 'bench'] },
  { type: 'WORKDIR', args: ['/srv/app'] },
  { type: 'COPY', args: ['.', 'data/', '', ''], filesHash: hash },
  { type: 'RUN', args: ['python3 -c "import json; print(json.dumps({\\"ok\\": True}))" > status.json'] },
]
const name = `bench-${process.pid}`
const cold = await build({ name, steps, force: true, startCmd: 'python3 -m http.server 8000 --bind 127.0.0.1', readyCmd: 'curl -sf http://127.0.0.1:8000/ >/dev/null' })
const cached = await build({ name, steps, startCmd: 'python3 -m http.server 8000 --bind 127.0.0.1', readyCmd: 'curl -sf http://127.0.0.1:8000/ >/dev/null' })

async function createThenCommand(template: string, cmd: string): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < N_CREATE; i++) {
    const t0 = performance.now()
    const s = await call('POST', '/api/v1/sandboxes', { template, keepAliveMs: 60_000 })
    const r = await run(s.id, cmd)
    out.push(performance.now() - t0)
    if (r.exitCode !== 0) throw new Error(`${cmd} failed in a sandbox of ${template}: ${r.stderr}`)
    await call('DELETE', `/api/v1/sandboxes/${s.id}`)
  }
  return out
}
const fromBase = await createThenCommand('base', 'echo ok')
const fromTemplate = await createThenCommand(name, 'curl -sf http://127.0.0.1:8000/status.json')

// N templates on base, each with its own 1 MiB.
const du = (p: string) => Number(execFileSync('du', ['-sk', p]).toString().split('\t')[0]) / 1024
const layersBefore = du(path.join(home, 'layers'))
for (let i = 0; i < N_TEMPLATES; i++) {
  await build({ name: `${name}-n${i}`, steps: [{ type: 'RUN', args: [`head -c 1048576 /dev/urandom > ~/own-${process.pid}-${i}.bin`] }] })
}
const layersAdded = du(path.join(home, 'layers')) - layersBefore
const baseDir = path.join(path.dirname(home), 'templates', 'base')
const baseSize = du(fs.readdirSync(baseDir).map((h) => path.join(baseDir, h, 'rootfs')).find((r) => fs.existsSync(path.join(r, 'etc/os-release')))!)
for (let i = 0; i < N_TEMPLATES; i++) await call('DELETE', `/api/v1/templates/${name}-n${i}`)
await call('DELETE', `/api/v1/templates/${name}`)

console.log('\n| measure (templates, Sandlot REST) | result |\n|---|---|')
console.log(`| build, cold (5 steps: 2,000 files, ENV, WORKDIR, COPY 10 MiB in 200 files, RUN; then the start/ready check) (ms) | ${fmt(cold)} |`)
console.log(`| the same build, every layer cached (ms) | ${fmt(cached)} (${fmt((cached / cold) * 100)} % of cold) |`)
console.log(`| create → \`echo ok\` output, base (ms, n=${N_CREATE}) | ${summary(fromBase)} |`)
console.log(`| create → its start command's server answers, template with \`python3 -m http.server\` + ready check (ms, n=${N_CREATE}) | ${summary(fromTemplate)} |`)
console.log(`| disk: base rootfs (MiB) | ${fmt(baseSize)} |`)
console.log(`| disk: ${N_TEMPLATES} templates on base, each with 1 MiB of its own: their layers in all (MiB) | ${fmt(layersAdded)} (${fmt(layersAdded / N_TEMPLATES)} each; the base is shared, not copied) |`)
console.log(`| (p50: base ${fmt(stats(fromBase).p50)} ms, template ${fmt(stats(fromTemplate).p50)} ms) | |`)
