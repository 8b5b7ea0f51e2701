// git inside a Sandlot sandbox through the official e2b SDK (its `sandbox.git` helpers run git
// commands): init, commit, status, branches, and clone/push/pull over a git daemon that runs on the
// sandbox's own loopback (no network needed).
import { Sandbox, type CommandHandle } from 'e2b'
import { create, until } from './e2b-env.js'
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'

describe('e2b SDK: git in the sandbox', () => {
  let s: Sandbox
  let daemon: CommandHandle | undefined
  before(async () => {
    s = await create()
  })
  after(async () => {
    await daemon?.kill().catch(() => false)
    await s?.kill()
  })

  const repo = '/home/user/work/project'

  test('init, configure the user, add and commit; status and branches describe the repository', async () => {
    await s.git.init(repo, { initialBranch: 'main' })
    await s.git.configureUser('Sandlot Test', 'test@sandlot.invalid')
    assert.equal(await s.git.getConfig('user.name'), 'Sandlot Test')
    await s.files.write(`${repo}/README.md`, '# project\n')
    await s.files.write(`${repo}/src/main.sh`, 'echo main\n')

    const dirty = await s.git.status(repo)
    assert.equal(dirty.isClean, false)
    assert.equal(dirty.currentBranch, 'main')
    assert.deepEqual(dirty.fileStatus.map((f) => [f.name, f.status]).sort(), [['README.md', 'untracked'], ['src/', 'untracked']])

    await s.git.add(repo)
    await s.git.commit(repo, 'first commit')
    const clean = await s.git.status(repo)
    assert.equal(clean.isClean, true)
    assert.deepEqual(clean.fileStatus, [])
    const log = await s.commands.run(`git -C ${repo} log --format='%s|%an|%ae'`)
    assert.equal(log.stdout, 'first commit|Sandlot Test|test@sandlot.invalid\n')

    await s.git.createBranch(repo, 'feature')
    assert.deepEqual(await s.git.branches(repo), { branches: ['feature', 'main'], currentBranch: 'feature' })
    await s.git.checkoutBranch(repo, 'main')
    assert.equal((await s.git.branches(repo)).currentBranch, 'main')
  })

  test('clone, push and pull over git:// from a git daemon on the sandbox loopback', async () => {
    // A bare repository served by git daemon on 127.0.0.1 inside the sandbox.
    await s.git.init('/home/user/srv/shared.git', { bare: true, initialBranch: 'main' })
    daemon = await s.commands.run(
      'git daemon --base-path=/home/user/srv --export-all --enable=receive-pack --reuseaddr --listen=127.0.0.1 --port=9418 /home/user/srv',
      { background: true, timeoutMs: 0 },
    )
    await until(
      async () => (await s.commands.run("(exec 3<>/dev/tcp/127.0.0.1/9418) 2>/dev/null && echo open || true")).stdout === 'open\n',
      5000,
      'git daemon to listen on 127.0.0.1:9418',
    )

    await s.git.remoteAdd(repo, 'origin', 'git://127.0.0.1/shared.git')
    assert.equal(await s.git.remoteGet(repo, 'origin'), 'git://127.0.0.1/shared.git')
    await s.git.push(repo, { remote: 'origin', branch: 'main' })

    await s.git.clone('git://127.0.0.1/shared.git', { path: '/home/user/work/clone' })
    assert.equal(await s.files.read('/home/user/work/clone/README.md'), '# project\n')
    assert.equal((await s.commands.run('git -C /home/user/work/clone log --format=%s')).stdout, 'first commit\n')
    const cloned = await s.git.status('/home/user/work/clone')
    assert.equal(cloned.currentBranch, 'main')
    assert.equal(cloned.upstream, 'origin/main')

    // A second commit from the clone travels back to the first repository.
    await s.files.write('/home/user/work/clone/CHANGES.md', 'second\n')
    await s.git.add('/home/user/work/clone')
    await s.git.commit('/home/user/work/clone', 'second commit')
    await s.git.push('/home/user/work/clone')
    await s.git.pull(repo, { remote: 'origin', branch: 'main' })
    assert.equal(await s.files.read(`${repo}/CHANGES.md`), 'second\n')
    assert.equal((await s.commands.run(`git -C ${repo} log --format=%s`)).stdout, 'second commit\nfirst commit\n')
  })
})
