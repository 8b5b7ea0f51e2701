// Templates from OCI images (templates/image): pulled with skopeo from a local registry the test
// starts and fills with images it makes, unpacked with umoci owned by the templates' id range, with
// whiteouts applied, the config read, and a clear error (and nothing left behind) for each way a pull
// can fail, including layers that try to write outside the rootfs.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { pino } from 'pino'
import { ensureIdLayout, type IdRange } from '../packages/server/src/runtime/idmap.js'
import {
  ImagePullError,
  imagePullSettings,
  isInsecureRegistry,
  parseReference,
  pullImage,
  type PullRequest,
} from '../packages/server/src/templates/image/index.js'
import { choosePlatform, hostPlatform, parseImageConfig } from '../packages/server/src/templates/image/manifest.js'
import { makeImage, makeIndex, push, rawTar, startRegistry, type Registry } from './oci-registry.js'

const basePort = Number(process.env.SANDLOT_TEST_PORT ?? 3190) + 400
const work = path.resolve('.sandlot-test/oci-image')
const CREDS = { username: 'alice', password: 'pw-Zq81-never-in-ps' }

describe('image references and settings', () => {
  test('short names resolve as Docker resolves them', () => {
    const cases: [string, string][] = [
      ['python:3.12', 'docker.io/library/python:3.12'],
      ['python', 'docker.io/library/python:latest'],
      ['me/app', 'docker.io/me/app:latest'],
      ['index.docker.io/library/debian:12', 'docker.io/library/debian:12'],
      ['docker.io/python:3.12-slim', 'docker.io/library/python:3.12-slim'],
      ['ghcr.io/owner/repo/sub:v1.2', 'ghcr.io/owner/repo/sub:v1.2'],
      ['localhost/app', 'localhost/app:latest'],
      ['127.0.0.1:5000/team/app:tag', '127.0.0.1:5000/team/app:tag'],
      ['[::1]:5000/app', '[::1]:5000/app:latest'],
      [`alpine@sha256:${'a'.repeat(64)}`, `docker.io/library/alpine@sha256:${'a'.repeat(64)}`],
      [`alpine:3@sha256:${'b'.repeat(64)}`, `docker.io/library/alpine:3@sha256:${'b'.repeat(64)}`],
      ['my-registry.example.com:443/a__b/c-d.e', 'my-registry.example.com:443/a__b/c-d.e:latest'],
    ]
    for (const [input, canonical] of cases) assert.equal(parseReference(input).canonical, canonical, input)
    const p = parseReference('python:3.12')
    assert.deepEqual([p.registry, p.repository, p.tag, p.name], ['docker.io', 'library/python', '3.12', 'docker.io/library/python'])
  })

  test('malformed references are refused with the reason', () => {
    const bad: [string, RegExp][] = [
      ['', /empty/],
      ['Python:3', /must be lowercase/],
      ['python:', /not a valid tag/],
      ['python:-x', /not a valid tag/],
      ['a b', /whitespace/],
      ['python@sha256:abc', /not a digest/],
      [`python@md5:${'a'.repeat(32)}`, /only sha256/],
      ['a'.repeat(64), /image id/],
      ['ghcr.io/Owner/x', /must be lowercase/],
      ['foo//bar', /not a valid repository name/],
      ['-bad.example.com/x', /not a valid repository name|registry/],
      [`x/${'a'.repeat(260)}`, /longer than 255/],
    ]
    for (const [input, why] of bad) {
      assert.throws(() => parseReference(input), (err: unknown) => {
        assert.ok(err instanceof ImagePullError, input)
        assert.equal(err.reason, 'invalid_reference')
        assert.equal(err.status, 400)
        assert.match(err.message, why, input)
        return true
      })
    }
  })

  test('insecure registries: exact host:port or a CIDR of IP literals, nothing else', () => {
    const list = ['127.0.0.1:5000', 'registry.local', '10.0.0.0/8', 'fd00::/8']
    assert.ok(isInsecureRegistry('127.0.0.1:5000', list))
    assert.ok(!isInsecureRegistry('127.0.0.1:5001', list))
    assert.ok(isInsecureRegistry('REGISTRY.local', list))
    assert.ok(!isInsecureRegistry('registry.local:5000', list))
    assert.ok(isInsecureRegistry('10.1.2.3:443', list))
    assert.ok(isInsecureRegistry('[fd00::1]:5000', list))
    assert.ok(!isInsecureRegistry('docker.io', list))
    assert.ok(!isInsecureRegistry('11.0.0.1', list))
    const s = imagePullSettings({ SANDLOT_INSECURE_REGISTRIES: ' 127.0.0.1:5000, 10.0.0.0/8 ', SANDLOT_IMAGE_MAX_MB: '12', SANDLOT_IMAGE_MAX_UNPACKED_MB: '40' })
    assert.deepEqual(s, { insecureRegistries: ['127.0.0.1:5000', '10.0.0.0/8'], maxCompressedBytes: 12 * 2 ** 20, maxUnpackedBytes: 40 * 2 ** 20 })
    assert.deepEqual(imagePullSettings({}), { insecureRegistries: [], maxCompressedBytes: 4096 * 2 ** 20, maxUnpackedBytes: 16384 * 2 ** 20 })
    assert.throws(() => imagePullSettings({ SANDLOT_IMAGE_MAX_UNPACKED_MB: 'lots' }), /SANDLOT_IMAGE_MAX_UNPACKED_MB must be a positive integer/)
    assert.throws(() => imagePullSettings({ SANDLOT_INSECURE_REGISTRIES: 'http://x' }), /SANDLOT_INSECURE_REGISTRIES/)
    assert.throws(() => imagePullSettings({ SANDLOT_IMAGE_MAX_MB: '0' }), /SANDLOT_IMAGE_MAX_MB/)
  })

  test('the config: Env split at the first =, empty fields left out, platform checked', () => {
    const want = hostPlatform('x64')
    const cfg = Buffer.from(JSON.stringify({ os: 'linux', architecture: 'amd64', config: { Env: ['A=b=c', 'EMPTY=', 'BARE', 'A2=x'], WorkingDir: '', Cmd: ['sh'], Entrypoint: null } }))
    assert.deepEqual(parseImageConfig(cfg, want, 'r'), { env: { A: 'b=c', EMPTY: '', BARE: '', A2: 'x' }, workdir: undefined, user: undefined, entrypoint: undefined, cmd: ['sh'] })
    assert.deepEqual(parseImageConfig(Buffer.from('{"os":"linux","architecture":"amd64"}'), want, 'r').env, {})
    assert.throws(() => parseImageConfig(Buffer.from('{"os":"linux","architecture":"arm64"}'), want, 'r'), /linux\/arm64; this machine runs linux\/amd64/)
    const d = (arch: string, variant?: string) => ({ digest: `sha256:${arch.padEnd(64, '0')}`, size: 1, platform: { os: 'linux', architecture: arch, variant } })
    assert.equal(choosePlatform([d('arm'), d('arm64', 'v8'), d('amd64')], want, 'r').platform?.architecture, 'amd64')
    assert.equal(choosePlatform([d('arm64'), d('arm64', 'v8')], hostPlatform('arm64'), 'r').platform?.variant, 'v8')
    assert.throws(() => choosePlatform([d('arm64'), d('s390x')], want, 'r'), /no image for linux\/amd64.*offers linux\/arm64, linux\/s390x/)
  })
})

describe('pulling images from a registry', () => {
  let open: Registry
  let secured: Registry
  let ids: IdRange
  const layout = path.join(work, 'layout')
  const victim = path.join(work, 'victim')
  const insecureRegistries = [`127.0.0.1:${basePort + 1}`, `127.0.0.1:${basePort + 2}`]
  const logLines: string[] = []
  const log = pino({ level: 'info' }, { write: (s: string) => void logLines.push(JSON.parse(s).msg) })
  let n = 0
  const destOf = () => path.join(work, 'templates', `t${++n}`, 'rootfs')
  const pull = (req: Partial<PullRequest> & { ref: string }, dest = destOf()) => pullImage({ insecureRegistries, ...req }, dest, ids, log)
  /** What a failed pull left in the directory its rootfs would have gone to. */
  const leftovers = (dest: string) => (fs.existsSync(path.dirname(dest)) ? fs.readdirSync(path.dirname(dest)) : [])
  const ownerOf = (file: string) => {
    const st = fs.lstatSync(file)
    return `${st.uid - ids.hostId}:${st.gid - ids.hostId}`
  }
  async function rejects(p: Promise<unknown>, reason: string, message: RegExp): Promise<ImagePullError> {
    const err = await p.then(() => assert.fail(`expected a ${reason} error`), (e: unknown) => e)
    assert.ok(err instanceof ImagePullError, String(err))
    assert.equal(err.reason, reason, err.message)
    assert.match(err.message, message)
    return err
  }

  before(async () => {
    fs.rmSync(work, { recursive: true, force: true })
    fs.mkdirSync(victim, { recursive: true, mode: 0o755 })
    fs.chmodSync(work, 0o755)
    ids = ensureIdLayout().template
    ;[open, secured] = await Promise.all([
      startRegistry({ port: basePort + 1, dir: path.join(work, 'registry-open') }),
      startRegistry({ port: basePort + 2, dir: path.join(work, 'registry-auth'), auth: CREDS }),
    ])

    // A tiny rootfs of busybox-static, then a layer that deletes a file (whiteout) and one that
    // replaces a directory (opaque whiteout), as docker and buildah write them.
    const root = path.join(work, 'busybox-root')
    for (const d of ['bin', 'etc', 'home/user', 'opt/data/sub', 'usr/local/bin', 'dev']) fs.mkdirSync(path.join(root, d), { recursive: true })
    fs.copyFileSync('/bin/busybox', path.join(root, 'bin/busybox'))
    fs.symlinkSync('busybox', path.join(root, 'bin/sh'))
    fs.writeFileSync(path.join(root, 'etc/removed'), 'to be whited out\n')
    fs.writeFileSync(path.join(root, 'etc/kept'), 'kept\n')
    fs.writeFileSync(path.join(root, 'opt/data/old'), 'old\n')
    fs.writeFileSync(path.join(root, 'opt/data/sub/deeper'), 'old\n')
    fs.writeFileSync(path.join(root, 'home/user/notes'), 'mine\n')
    fs.chownSync(path.join(root, 'home/user'), 1000, 1000)
    fs.chownSync(path.join(root, 'home/user/notes'), 1000, 1000)
    fs.copyFileSync('/bin/busybox', path.join(root, 'usr/local/bin/suid'))
    fs.chmodSync(path.join(root, 'usr/local/bin/suid'), 0o4755)
    execFileSync('mknod', [path.join(root, 'dev/null'), 'c', '1', '3'])
    const whiteouts = rawTar([
      { name: 'etc/.wh.removed' },
      { name: 'opt/data/.wh..wh..opq' },
      { name: 'opt/data/new', data: 'new\n' },
    ])
    const spec = {
      layers: [{ dir: root }, { tar: whiteouts }],
      env: ['PATH=/usr/local/bin:/bin', 'GREETING=hello=world', 'EMPTY='],
      workdir: '/home/user',
      user: '1000:1000',
      entrypoint: ['/bin/sh', '-c'],
      cmd: ['echo hi'],
    }
    makeImage(layout, 'busybox', spec)
    push(layout, 'busybox', open, 'tests/busybox:1')
    push(layout, 'busybox', secured, 'private/busybox:1', CREDS)

    // The same layers, declared for arm64; an index offering only arm64, and one offering both.
    makeImage(layout, 'arm64', { ...spec, architecture: 'arm64' })
    push(layout, 'arm64', open, 'tests/arm-only:1')
    makeIndex(layout, 'arm-index', [{ tag: 'arm64', platform: 'linux/arm64' }])
    push(layout, 'arm-index', open, 'tests/arm-index:1')
    makeIndex(layout, 'multi', [{ tag: 'arm64', platform: 'linux/arm64' }, { tag: 'busybox', platform: `linux/${hostPlatform().architecture}` }])
    push(layout, 'multi', open, 'tests/multi:1')

    // 48 MiB of zeros: a few dozen KiB compressed, within any compressed limit.
    makeImage(layout, 'zeros', { layers: [{ tar: rawTar([{ name: 'zeros', data: '\0'.repeat(48 * 2 ** 20) }]) }] })
    push(layout, 'zeros', open, 'tests/zeros:1')

    // A file owned by an id no sandbox has.
    makeImage(layout, 'high-uid', { layers: [{ tar: rawTar([{ name: 'etc/' , type: 'dir' }, { name: 'etc/far', uid: 70000, gid: 70000 }]) }] })
    push(layout, 'high-uid', open, 'tests/high-uid:1')

    // Layers that try to write outside the rootfs: ../ and absolute names, a symlink to / and one to
    // the host's victim directory written through by the next layer, a hard link to a host file.
    const outside = path.relative('/', victim)
    const up = '../'.repeat(12)
    makeImage(layout, 'escape', {
      layers: [
        { tar: rawTar([
          { name: 'etc/', type: 'dir' },
          { name: 'etc/hostname', data: 'inside\n' },
          { name: 'to-root', type: 'symlink', linkname: '/' },
          { name: 'to-victim', type: 'symlink', linkname: `${up}${outside}` },
          { name: `${up}${outside}/dotdot`, data: 'x' },
          { name: `/${outside}/absolute`, data: 'x' },
          { name: 'hostname-link', type: 'hardlink', linkname: `${up}etc/hostname` },
        ]) },
        { tar: rawTar([
          { name: `to-root/${outside}/through-root-link`, data: 'x' },
          { name: 'to-victim/through-victim-link', data: 'x' },
        ]) },
      ],
    })
    push(layout, 'escape', open, 'tests/escape:1')
    // A hard link to a host file the rootfs does not have: refused.
    makeImage(layout, 'hardlink-out', { layers: [{ tar: rawTar([{ name: 'shadow', type: 'hardlink', linkname: `${up}etc/shadow` }]) }] })
    push(layout, 'hardlink-out', open, 'tests/hardlink-out:1')
  })

  after(async () => {
    await Promise.all([open?.stop(), secured?.stop()])
  })

  test('a busybox image: whiteouts applied, owners mapped onto the range, setuid kept, config read', async () => {
    const dest = destOf()
    logLines.length = 0
    const image = await pull({ ref: `${open.host}/tests/busybox:1` }, dest)
    assert.deepEqual(image.env, { PATH: '/usr/local/bin:/bin', GREETING: 'hello=world', EMPTY: '' })
    assert.equal(image.workdir, '/home/user')
    assert.equal(image.user, '1000:1000')
    assert.deepEqual(image.entrypoint, ['/bin/sh', '-c'])
    assert.deepEqual(image.cmd, ['echo hi'])
    assert.equal(image.reference, `${open.host}/tests/busybox:1`)
    const inspected = JSON.parse(execFileSync('skopeo', ['inspect', '--tls-verify=false', `docker://${open.host}/tests/busybox:1`], { encoding: 'utf8' }))
    assert.equal(image.digest, inspected.Digest, 'the digest is the manifest digest the registry serves')

    // Whiteouts: the file is gone, the opaque directory holds only the new layer's entries.
    assert.ok(!fs.existsSync(path.join(dest, 'etc/removed')))
    assert.equal(fs.readFileSync(path.join(dest, 'etc/kept'), 'utf8'), 'kept\n')
    assert.deepEqual(fs.readdirSync(path.join(dest, 'opt/data')), ['new'])
    const all = fs.readdirSync(dest, { recursive: true }).map(String)
    assert.deepEqual(all.filter((f) => path.basename(f).startsWith('.wh.')), [], 'no whiteout file is left as a file')
    // Owners: the image's ids on the templates' range; setuid intact.
    assert.equal(ownerOf(dest), '0:0')
    assert.equal(ownerOf(path.join(dest, 'bin/busybox')), '0:0')
    assert.equal(ownerOf(path.join(dest, 'home/user')), '1000:1000')
    assert.equal(ownerOf(path.join(dest, 'home/user/notes')), '1000:1000')
    assert.equal(fs.statSync(path.join(dest, 'usr/local/bin/suid')).mode & 0o7777, 0o4755)
    assert.ok(fs.lstatSync(path.join(dest, 'bin/sh')).isSymbolicLink())
    // The device node did not become a device.
    const dev = fs.lstatSync(path.join(dest, 'dev/null'))
    assert.ok(!dev.isCharacterDevice() && dev.size === 0)
    // Nothing but the rootfs is left beside it: no scratch, no layout.
    assert.deepEqual(leftovers(dest), ['rootfs'])
    assert.ok(logLines.some((l) => /^pulling .*tests\/busybox:1 \(sha256:/.test(l)), 'the pull is logged')
    assert.ok(logLines.some((l) => /Copying blob/.test(l)), "skopeo's progress is logged")
  })

  test('a reference pinned by digest, and an index: this platform is chosen', async () => {
    const first = await pull({ ref: `${open.host}/tests/busybox:1` })
    const pinned = await pull({ ref: `${open.host}/tests/busybox@${first.digest}` })
    assert.equal(pinned.digest, first.digest)
    const multi = await pull({ ref: `${open.host}/tests/multi:1` })
    assert.equal(multi.digest, first.digest, 'the index entry for this platform is the busybox manifest')
    await rejects(pull({ ref: `${open.host}/tests/busybox@sha256:${'0'.repeat(64)}` }), 'not_found', /has no image/)
  })

  test('username and password: right ones pull, wrong or missing ones are told apart, and never show in ps', async () => {
    const ref = `${secured.host}/private/busybox:1`
    // Every process's command line, read while the pulls run.
    const seen = new Set<string>()
    const sample = setInterval(() => {
      for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
        try {
          seen.add(fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8'))
        } catch {
          // gone
        }
      }
    }, 2)
    try {
      const dest = destOf()
      const image = await pull({ ref, ...CREDS }, dest)
      assert.equal(image.user, '1000:1000')
      assert.ok(fs.existsSync(path.join(dest, 'bin/busybox')))
      assert.deepEqual(leftovers(dest), ['rootfs'], 'the auth file is gone')
      const refused = destOf()
      await rejects(pull({ ref, username: CREDS.username, password: 'wrong' }, refused), 'unauthorized', /refused the username and password/)
      assert.deepEqual(leftovers(refused), [], 'the auth file is gone')
    } finally {
      clearInterval(sample)
    }
    assert.ok([...seen].some((c) => c.includes('skopeo')), 'the sampler saw skopeo run')
    assert.deepEqual([...seen].filter((c) => c.includes(CREDS.password)), [], 'the password is on no command line')
    await rejects(pull({ ref }), 'unauthorized', /wants a username and password/)
    await rejects(pull({ ref, password: 'x' }), 'unauthorized', /without a username/)
  })

  test("the host's own registry logins are never lent to a pull", async () => {
    // Root's docker login and containers' auth file, both holding working credentials.
    const home = path.join(work, 'root-home')
    const auth = JSON.stringify({ auths: { [secured.host]: { auth: Buffer.from(`${CREDS.username}:${CREDS.password}`).toString('base64') } } })
    fs.mkdirSync(path.join(home, '.docker'), { recursive: true })
    fs.writeFileSync(path.join(home, '.docker/config.json'), auth)
    fs.writeFileSync(path.join(home, 'auth.json'), auth)
    const saved = { HOME: process.env.HOME, REGISTRY_AUTH_FILE: process.env.REGISTRY_AUTH_FILE }
    Object.assign(process.env, { HOME: home, REGISTRY_AUTH_FILE: path.join(home, 'auth.json') })
    try {
      // (skopeo itself would use them: proof the files are good.)
      execFileSync('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${secured.host}/private/busybox:1`], { stdio: 'ignore' })
      await rejects(pull({ ref: `${secured.host}/private/busybox:1` }), 'unauthorized', /wants a username and password/)
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k]
        else process.env[k] = v
      }
    }
  })

  test('TLS is verified unless the registry is listed as insecure', async () => {
    await rejects(pull({ ref: `${open.host}/tests/busybox:1`, insecureRegistries: [] }), 'tls', /HTTP response to HTTPS client.*SANDLOT_INSECURE_REGISTRIES/s)
    await rejects(pull({ ref: `${secured.host}/private/busybox:1`, ...CREDS, insecureRegistries: [open.host] }), 'tls', /certificate.*SANDLOT_INSECURE_REGISTRIES/s)
    // A CIDR entry covers both.
    const image = await pull({ ref: `${secured.host}/private/busybox:1`, ...CREDS, insecureRegistries: ['127.0.0.0/8'] })
    assert.equal(image.workdir, '/home/user')
  })

  test('unknown image, unknown tag, registry down, malformed reference: clear errors, nothing left', async () => {
    for (const [ref, reason, message] of [
      [`${open.host}/tests/nothing:1`, 'not_found', /has no image .*tests\/nothing:1.*manifest unknown/],
      [`${open.host}/tests/busybox:no-such-tag`, 'not_found', /has no image .*busybox:no-such-tag/],
      [`127.0.0.1:${basePort + 9}/tests/busybox:1`, 'unreachable', /cannot reach the registry 127\.0\.0\.1:\d+ .*connection refused/],
      ['Tests/Busybox', 'invalid_reference', /not a valid image reference/],
    ] as const) {
      const dest = destOf()
      const err = await rejects(pull({ ref, insecureRegistries: [...insecureRegistries, `127.0.0.1:${basePort + 9}`] }, dest), reason, message)
      assert.equal(err.status, reason === 'unreachable' ? 502 : 400)
      assert.deepEqual(leftovers(dest), [], ref)
    }
  })

  test('an image for another architecture is refused before anything is downloaded', async () => {
    for (const [ref, message] of [
      [`${open.host}/tests/arm-only:1`, /is an image for linux\/arm64; this machine runs linux\//],
      [`${open.host}/tests/arm-index:1`, /has no image for linux\/.* it offers linux\/arm64/],
    ] as const) {
      const dest = destOf()
      await rejects(pull({ ref }, dest), 'platform', message)
      assert.deepEqual(leftovers(dest), [], 'not even the download directory was made')
    }
  })

  test('an image over the size limit is refused before anything is downloaded', async () => {
    const dest = destOf()
    await rejects(pull({ ref: `${open.host}/tests/busybox:1`, maxCompressedBytes: 64 * 1024 }, dest), 'too_large', /MiB compressed, more than this server's limit of 0\.1 MiB \(SANDLOT_IMAGE_MAX_MB\)/)
    assert.deepEqual(leftovers(dest), [])
  })

  test('an image that unpacks to more than the limit is refused before anything is unpacked', async () => {
    const dest = destOf()
    await rejects(pull({ ref: `${open.host}/tests/zeros:1`, maxUnpackedBytes: 32 * 2 ** 20 }, dest), 'too_large', /unpacks to more than this server's limit of 32 MiB \(SANDLOT_IMAGE_MAX_UNPACKED_MB\)/)
    assert.deepEqual(leftovers(dest), [], 'nothing was unpacked')
    const fits = destOf()
    await pull({ ref: `${open.host}/tests/zeros:1`, maxUnpackedBytes: 64 * 2 ** 20 }, fits)
    assert.equal(fs.statSync(path.join(fits, 'zeros')).size, 48 * 2 ** 20)
    assert.ok(logLines.some((l) => /tests\/zeros:1 unpacks to 48\.0 MiB/.test(l)), 'the unpacked size is logged')
  })

  test('layers that reach outside the rootfs stay inside it, or are refused', async () => {
    const dest = destOf()
    await pull({ ref: `${open.host}/tests/escape:1` }, dest)
    assert.deepEqual(fs.readdirSync(victim), [], 'nothing was written outside the rootfs')
    const inside = path.join(dest, path.relative('/', victim))
    assert.deepEqual(fs.readdirSync(inside).sort(), ['absolute', 'dotdot', 'through-root-link', 'through-victim-link'])
    assert.equal(fs.readlinkSync(path.join(dest, 'to-root')), '/', 'the symlink is kept as the image has it, for the sandbox to resolve')
    const link = fs.statSync(path.join(dest, 'hostname-link'))
    assert.equal(link.ino, fs.statSync(path.join(dest, 'etc/hostname')).ino, 'the hard link is to the rootfs\'s own file')
    assert.notEqual(link.ino, fs.statSync('/etc/hostname').ino)
    assert.deepEqual(leftovers(dest), ['rootfs'])

    const refused = destOf()
    await rejects(pull({ ref: `${open.host}/tests/hardlink-out:1` }, refused), 'unpack', /unpacking .*hardlink-out:1 failed: .*shadow: link/)
    assert.deepEqual(leftovers(refused), [], 'a failed unpack leaves nothing behind')
    assert.equal(fs.statSync('/etc/shadow').nlink, 1)
  })

  test('a file owned by an id beyond the range is a clear error', async () => {
    const dest = destOf()
    await rejects(pull({ ref: `${open.host}/tests/high-uid:1` }, dest), 'unpack', /\(etc\/far\) owned by a user or group id above 65535/)
    assert.deepEqual(leftovers(dest), [])
  })

  test('a cancelled pull stops and leaves nothing behind', async () => {
    const dest = destOf()
    const ac = new AbortController()
    const p = pull({ ref: `${open.host}/tests/busybox:1`, signal: ac.signal }, dest)
    setTimeout(() => ac.abort(), 30)
    await rejects(p, 'failed', /cancelled/)
    assert.deepEqual(leftovers(dest), [])
  })

  test('a Debian rootfs (the base template, when built) round-trips: owners, setuid sudo, whiteouts on top', async (t) => {
    const baseDir = path.resolve('.sandlot-test/templates/base')
    const built = fs.existsSync(baseDir) ? fs.readdirSync(baseDir).map((h) => path.join(baseDir, h, 'rootfs')).find((r) => fs.existsSync(path.join(r, 'etc/os-release'))) : undefined
    if (!built) return t.skip('no base template built under .sandlot-test/templates')
    // Archive it with the template's host ids mapped back to the image's (0…65535).
    const hostIds = execFileSync('find', [built, '-printf', '%U\\n%G\\n'], { encoding: 'utf8' }).split('\n').filter(Boolean)
    const map = path.join(work, 'id-map')
    fs.writeFileSync(map, [...new Set(hostIds)].map((h) => `+${h} +${Number(h) - ids.hostId}`).join('\n') + '\n')
    const dir = path.join(work, 'debian-layer')
    fs.mkdirSync(dir, { recursive: true })
    const tarFile = path.join(dir, 'rootfs.tar')
    execFileSync('tar', ['--numeric-owner', `--owner-map=${map}`, `--group-map=${map}`, '-C', built, '-cf', tarFile, '.'])
    makeImage(layout, 'debian', {
      layers: [{ file: tarFile }, { tar: rawTar([{ name: 'usr/bin/.wh.nano' }, { name: 'etc/apt/.wh..wh..opq' }, { name: 'etc/apt/only', data: 'x' }]) }],
      env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      cmd: ['bash'],
    })
    fs.rmSync(tarFile)
    push(layout, 'debian', open, 'tests/debian:12')
    const dest = destOf()
    const image = await pull({ ref: `${open.host}/tests/debian:12` }, dest)
    assert.deepEqual(image.cmd, ['bash'])
    assert.match(fs.readFileSync(path.join(dest, 'etc/os-release'), 'utf8'), /bookworm/)
    assert.equal(fs.statSync(path.join(dest, 'usr/bin/sudo')).mode & 0o7777, 0o4755)
    assert.equal(ownerOf(path.join(dest, 'usr/bin/sudo')), '0:0')
    assert.equal(ownerOf(path.join(dest, 'home/user')), '1000:1000')
    assert.equal(ownerOf(path.join(dest, 'etc/shadow')), ownerOf(path.join(built, 'etc/shadow')))
    assert.ok(!fs.existsSync(path.join(dest, 'usr/bin/nano')))
    assert.deepEqual(fs.readdirSync(path.join(dest, 'etc/apt')), ['only'])
    assert.ok(fs.existsSync(path.join(dest, 'usr/bin/python3')))
  })
})
