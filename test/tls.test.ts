// The certificate Sandlot serves https:// with (packages/server/src/tls/certs.ts): a local CA made
// once and reused, a server certificate remade when the domain changes, the CA's name constraints
// enforced by Node's TLS, keys root's alone, and a user's own certificate checked at start.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import tls from 'node:tls'
import { after, describe, test } from 'node:test'
import { domainHost, ensureTls } from '../packages/server/src/tls/certs.js'

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'sandlot-tls-'))
after(() => fs.rmSync(scratch, { recursive: true, force: true }))
const quiet = { info: () => {}, warn: () => {} }

/** Whether a TLS client that trusts only `ca` accepts `cert` for `servername`. */
async function accepted(ca: Buffer, material: { key: Buffer; cert: Buffer }, servername: string): Promise<boolean> {
  const server = tls.createServer({ key: material.key, cert: material.cert }, (s) => s.end())
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as { port: number }).port
  try {
    return await new Promise<boolean>((resolve) => {
      const c = tls.connect({ host: '127.0.0.1', port, servername, ca }, () => {
        c.end()
        resolve(true)
      })
      c.on('error', () => resolve(false))
    })
  } finally {
    server.close()
  }
}

describe('the local CA', () => {
  test('made once, reused on restart, the leaf remade for a new domain; keys 0600', async () => {
    const home = path.join(scratch, 'home')
    const first = await ensureTls({ home, domain: 'sandlot.localhost:3000' }, quiet)
    assert.equal(first.source, 'local-ca')
    assert.equal(first.caFile, path.join(home, 'tls', 'ca.crt'))
    for (const key of ['ca.key', 'server.key']) assert.equal(fs.statSync(path.join(home, 'tls', key)).mode & 0o777, 0o600, key)
    assert.equal(fs.statSync(path.join(home, 'tls', 'ca.crt')).mode & 0o777, 0o644)
    const ca = fs.readFileSync(first.caFile!)
    const leaf = new crypto.X509Certificate(first.cert)
    assert.ok(leaf.checkHost('8000-iabc.sandlot.localhost'))
    assert.ok(leaf.checkHost('localhost'))
    assert.ok(leaf.checkIP('127.0.0.1'))
    assert.ok(leaf.verify(new crypto.X509Certificate(ca).publicKey))

    // A restart (even on another port) reuses both.
    const again = await ensureTls({ home, domain: 'sandlot.localhost:3999' }, quiet)
    assert.ok(again.cert.equals(first.cert))
    assert.ok(fs.readFileSync(again.caFile!).equals(ca))

    // Node's TLS accepts the leaf for names under the domain, and the CA for nothing else.
    assert.ok(await accepted(ca, first, '8000-iabc.sandlot.localhost'))
    assert.ok(await accepted(ca, first, 'localhost'))
    assert.equal(await accepted(ca, first, 'example.com'), false)

    // A new domain: a new CA (its constraints name the domain) and a new leaf for it.
    const moved = await ensureTls({ home, domain: 'box.example.test:8443' }, quiet)
    assert.ok(!moved.cert.equals(first.cert))
    assert.ok(new crypto.X509Certificate(moved.cert).checkHost('8000-iabc.box.example.test'))
    const newCa = fs.readFileSync(moved.caFile!)
    assert.ok(!newCa.equals(ca))
    // Even a certificate the CA signs for a name outside its constraints is refused by clients.
    const rogueKey = path.join(scratch, 'rogue.key')
    const rogueCsr = path.join(scratch, 'rogue.csr')
    const rogueCrt = path.join(scratch, 'rogue.crt')
    const ext = path.join(scratch, 'rogue.ext')
    fs.writeFileSync(ext, 'subjectAltName = DNS:bank.example.com\n')
    execFileSync('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', rogueKey, '-out', rogueCsr, '-subj', '/CN=bank.example.com'], { stdio: 'ignore' })
    execFileSync('openssl', ['x509', '-req', '-in', rogueCsr, '-CA', moved.caFile!, '-CAkey', path.join(home, 'tls', 'ca.key'), '-set_serial', '7', '-days', '1', '-extfile', ext, '-out', rogueCrt], { stdio: 'ignore' })
    assert.equal(await accepted(newCa, { key: fs.readFileSync(rogueKey), cert: fs.readFileSync(rogueCrt) }, 'bank.example.com'), false)
  })

  test('a damaged server certificate is made again', async () => {
    const home = path.join(scratch, 'damaged')
    const first = await ensureTls({ home, domain: 'sandlot.localhost:3000' }, quiet)
    fs.writeFileSync(path.join(home, 'tls', 'server.crt'), 'not a certificate')
    const again = await ensureTls({ home, domain: 'sandlot.localhost:3000' }, quiet)
    assert.ok(new crypto.X509Certificate(again.cert).checkHost('sandlot.localhost'))
    assert.ok(fs.readFileSync(again.caFile!).equals(fs.readFileSync(first.caFile!)), 'the CA is kept')
  })
})

describe("the user's certificate", () => {
  test('used as given; a missing half, an unreadable file or a key of another certificate stops the start', async () => {
    const home = path.join(scratch, 'user')
    const made = await ensureTls({ home: path.join(scratch, 'other'), domain: 'sandbox.example.test' }, quiet)
    const cert = path.join(scratch, 'u.crt')
    const key = path.join(scratch, 'u.key')
    fs.writeFileSync(cert, made.cert)
    fs.writeFileSync(key, made.key)
    const warnings: string[] = []
    const used = await ensureTls({ home, domain: 'sandbox.example.test', tlsCertFile: cert, tlsKeyFile: key }, { info: () => {}, warn: (m) => warnings.push(m) })
    assert.equal(used.source, 'user')
    assert.equal(used.caFile, undefined)
    assert.deepEqual(warnings, [])
    assert.ok(!fs.existsSync(path.join(home, 'tls')), 'no local CA is made')
    // A certificate that does not cover the domain is used, with a warning.
    await ensureTls({ home, domain: 'elsewhere.test', tlsCertFile: cert, tlsKeyFile: key }, { info: () => {}, warn: (m) => warnings.push(m) })
    assert.match(warnings.join('\n'), /does not cover \*\.elsewhere\.test/)

    await assert.rejects(ensureTls({ home, domain: 'x.test', tlsCertFile: cert }, quiet), /go together/)
    await assert.rejects(ensureTls({ home, domain: 'x.test', tlsCertFile: cert, tlsKeyFile: path.join(scratch, 'nope.key') }, quiet), /cannot read/)
    const otherKey = path.join(scratch, 'other.key')
    fs.writeFileSync(otherKey, crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }))
    await assert.rejects(ensureTls({ home, domain: 'x.test', tlsCertFile: cert, tlsKeyFile: otherKey }, quiet), /is not the key of the certificate/)
    await assert.rejects(ensureTls({ home, domain: 'x.test', tlsCertFile: key, tlsKeyFile: key }, quiet), /is not a PEM certificate/)
  })

  test('domainHost takes the host out of a domain setting', () => {
    assert.equal(domainHost('sandlot.localhost:3000'), 'sandlot.localhost')
    assert.equal(domainHost('sandbox.example.com'), 'sandbox.example.com')
    assert.equal(domainHost('[::1]:3000'), '::1')
    assert.equal(domainHost('192.0.2.1:443'), '192.0.2.1')
  })
})
