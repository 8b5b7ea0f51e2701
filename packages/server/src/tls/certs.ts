// The certificate Sandlot serves https:// with. Either the user's own (SANDLOT_TLS_CERT and
// SANDLOT_TLS_KEY, for a real domain with wildcard DNS), or one from a local CA that Sandlot makes
// at first start in $SANDLOT_HOME/tls: ca.crt (to trust, e.g. NODE_EXTRA_CA_CERTS or a browser),
// ca.key (0600), and a server certificate for *.<domain host>, <domain host>, localhost, 127.0.0.1
// and ::1. Both are reused on restart; the server certificate is made again when the domain
// changes or it nears its end. Made with Debian's openssl CLI, read back with node:crypto.
//
// The CA is name-constrained to the domain host and loopback: whoever trusts it trusts it for
// those names only, so even its key, if stolen, cannot mint a certificate for any other site.
import { execFile } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

export interface TlsMaterial {
  key: Buffer
  cert: Buffer
  /** The local CA's certificate file (absent with a user-supplied certificate). */
  caFile?: string
  source: 'local-ca' | 'user'
}

const DAY_MS = 86_400_000
/** A certificate with less than this left is made again at start. */
const RENEW_BEFORE_MS = 30 * DAY_MS
const CA_DAYS = 3650
/** Browsers refuse server certificates valid for longer than 398 days. */
const LEAF_DAYS = 397

/** The host part of a domain setting ("sandlot.localhost:3000" → "sandlot.localhost"). */
export function domainHost(domain: string): string {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(domain)
  if (bracketed) return bracketed[1]!
  const colons = domain.split(':').length - 1
  return colons === 1 ? domain.slice(0, domain.indexOf(':')) : domain
}

const readIf = (file: string) => (fs.existsSync(file) ? fs.readFileSync(file) : undefined)

/** Reads the user's certificate and key; throws a message that says what is wrong. */
function userMaterial(certFile: string, keyFile: string, host: string, warn: (msg: string) => void): TlsMaterial {
  let cert: Buffer, key: Buffer
  try {
    cert = fs.readFileSync(certFile)
    key = fs.readFileSync(keyFile)
  } catch (err) {
    throw new Error(`SANDLOT_TLS_CERT / SANDLOT_TLS_KEY: cannot read ${(err as NodeJS.ErrnoException).path ?? ''}: ${(err as Error).message}`)
  }
  let x509: crypto.X509Certificate
  try {
    x509 = new crypto.X509Certificate(cert)
  } catch (err) {
    throw new Error(`SANDLOT_TLS_CERT ${certFile} is not a PEM certificate: ${(err as Error).message}`)
  }
  let matches: boolean
  try {
    matches = x509.checkPrivateKey(crypto.createPrivateKey(key))
  } catch (err) {
    throw new Error(`SANDLOT_TLS_KEY ${keyFile} is not a PEM private key: ${(err as Error).message}`)
  }
  if (!matches) throw new Error(`SANDLOT_TLS_KEY ${keyFile} is not the key of the certificate in SANDLOT_TLS_CERT ${certFile}`)
  if (!net.isIP(host) && !x509.checkHost(`8000-sandbox.${host}`)) {
    warn(`the certificate in ${certFile} does not cover *.${host}: https:// previews and envd URLs (<port>-<id>.${host}) will fail certificate checks`)
  }
  if (Date.parse(x509.validTo) < Date.now()) warn(`the certificate in ${certFile} expired on ${x509.validTo}`)
  return { cert, key, source: 'user' }
}

const opensslConfig = (host: string) => {
  const ip = net.isIP(host)
  // Name constraints in OpenSSL's syntax: the domain host (and every name under it), localhost, loopback.
  const hostConstraint = ip ? `permitted;IP:${host}/${ip === 4 ? '255.255.255.255' : 'FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF'}` : `permitted;DNS:${host}`
  const hostNames = ip ? `IP:${host}` : `DNS:*.${host},DNS:${host}`
  return `[req]
distinguished_name = dn
prompt = no
[dn]
O = Sandlot
CN = Sandlot
[ca_ext]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
nameConstraints = critical,${hostConstraint},permitted;DNS:localhost,permitted;IP:127.0.0.0/255.0.0.0,permitted;IP:0:0:0:0:0:0:0:1/FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF
[leaf_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = ${hostNames},DNS:localhost,IP:127.0.0.1,IP:0:0:0:0:0:0:0:1
`
}

/** "O=Sandlot\nOU=<host>\nCN=…": the CA records the host it is constrained to in its subject. */
const caSubject = (host: string) => `/O=Sandlot/OU=${host}/CN=Sandlot local CA (${os.hostname().replace(/[^A-Za-z0-9.-]/g, '') || 'host'})`

function usableCa(certPem: Buffer | undefined, keyPem: Buffer | undefined, host: string): boolean {
  if (!certPem || !keyPem) return false
  try {
    const ca = new crypto.X509Certificate(certPem)
    return ca.ca && ca.subject.split('\n').includes(`OU=${host}`) && Date.parse(ca.validTo) - Date.now() > RENEW_BEFORE_MS && ca.checkPrivateKey(crypto.createPrivateKey(keyPem))
  } catch {
    return false
  }
}

function usableLeaf(certPem: Buffer | undefined, keyPem: Buffer | undefined, caPem: Buffer, host: string): boolean {
  if (!certPem || !keyPem) return false
  try {
    const leaf = new crypto.X509Certificate(certPem)
    const ca = new crypto.X509Certificate(caPem)
    const covers = net.isIP(host) ? leaf.checkIP(host) !== undefined : leaf.checkHost(`8000-sandbox.${host}`) !== undefined && leaf.checkHost(host) !== undefined
    return covers && leaf.verify(ca.publicKey) && Date.parse(leaf.validTo) - Date.now() > RENEW_BEFORE_MS && leaf.checkPrivateKey(crypto.createPrivateKey(keyPem))
  } catch {
    return false
  }
}

/** Writes a file through a temporary name, so a crash never leaves half a key or certificate. */
function writeAtomic(file: string, data: Buffer, mode: number): void {
  const tmp = `${file}.tmp-${process.pid}`
  fs.writeFileSync(tmp, data, { mode })
  fs.chmodSync(tmp, mode)
  fs.renameSync(tmp, file)
}

/** The local CA and server certificate in `dir`, made or remade as needed. */
async function localMaterial(dir: string, host: string, log: (msg: string) => void): Promise<TlsMaterial> {
  // Traversable, so ca.crt can be read by path; the keys are root's alone (0600).
  fs.mkdirSync(dir, { recursive: true, mode: 0o711 })
  fs.chmodSync(dir, 0o711)
  const files = { caCert: path.join(dir, 'ca.crt'), caKey: path.join(dir, 'ca.key'), cert: path.join(dir, 'server.crt'), key: path.join(dir, 'server.key') }
  const work = fs.mkdtempSync(path.join(dir, '.new-'))
  fs.chmodSync(work, 0o700)
  try {
    const cnf = path.join(work, 'openssl.cnf')
    fs.writeFileSync(cnf, opensslConfig(host))
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes']
    let caCert = readIf(files.caCert)
    let caKey = readIf(files.caKey)
    let newCa = false
    if (!usableCa(caCert, caKey, host)) {
      log(caCert ? `making a new local CA for ${host} (the one in ${dir} is for another domain or expiring): trust the new ${files.caCert}` : `making a local CA in ${files.caCert}`)
      await run('openssl', ['req', '-x509', '-new', ...ec, '-keyout', path.join(work, 'ca.key'), '-out', path.join(work, 'ca.crt'), '-days', String(CA_DAYS), '-subj', caSubject(host), '-config', cnf, '-extensions', 'ca_ext'])
      caKey = fs.readFileSync(path.join(work, 'ca.key'))
      caCert = fs.readFileSync(path.join(work, 'ca.crt'))
      writeAtomic(files.caKey, caKey, 0o600)
      writeAtomic(files.caCert, caCert, 0o644)
      newCa = true
    }
    let cert = readIf(files.cert)
    let key = readIf(files.key)
    if (newCa || !usableLeaf(cert, key, caCert!, host)) {
      await run('openssl', ['req', '-new', ...ec, '-keyout', path.join(work, 'server.key'), '-out', path.join(work, 'server.csr'), '-subj', `/O=Sandlot/CN=${host}`, '-config', cnf])
      await run('openssl', [
        'x509', '-req', '-in', path.join(work, 'server.csr'), '-CA', files.caCert, '-CAkey', files.caKey,
        '-set_serial', `0x${crypto.randomBytes(16).toString('hex')}`, '-days', String(LEAF_DAYS),
        '-extfile', cnf, '-extensions', 'leaf_ext', '-out', path.join(work, 'server.crt'),
      ])
      key = fs.readFileSync(path.join(work, 'server.key'))
      cert = fs.readFileSync(path.join(work, 'server.crt'))
      writeAtomic(files.key, key, 0o600)
      writeAtomic(files.cert, cert, 0o644)
    }
    return { cert: cert!, key: key!, caFile: files.caCert, source: 'local-ca' }
  } finally {
    fs.rmSync(work, { recursive: true, force: true })
  }
}

export interface TlsSettings {
  home: string
  domain: string
  tlsCertFile?: string
  tlsKeyFile?: string
}

/** The certificate to serve: the user's, else the local CA's (made if needed). */
export async function ensureTls(s: TlsSettings, log: { info: (msg: string) => void; warn: (msg: string) => void }): Promise<TlsMaterial> {
  const host = domainHost(s.domain)
  if (s.tlsCertFile || s.tlsKeyFile) {
    if (!s.tlsCertFile || !s.tlsKeyFile) throw new Error('SANDLOT_TLS_CERT and SANDLOT_TLS_KEY go together: set both (PEM files) or neither')
    return userMaterial(s.tlsCertFile, s.tlsKeyFile, host, log.warn)
  }
  return localMaterial(path.join(s.home, 'tls'), host, log.info)
}
