import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Code, ConnectError } from '@connectrpc/connect';
import { Signal } from '@sandlot/envd-proto';
import { basicAuth, collect, startAgent, type Agent, code } from './helpers.js';

let agent: Agent;
before(async () => {
  agent = await startAgent({ envVars: { FROM_CONFIG: 'cfg' } });
});
after(async () => {
  await agent?.stop();
});

// Not a login shell: on the host, -l would read the host user's own profile (and whatever it runs).
const bash = (cmd: string) => ({ cmd: '/bin/bash', args: ['-c', cmd], envs: {} as Record<string, string> });


/** Waits for the first `start` event of a stream and returns its pid and the iterator. */
async function started(stream: AsyncIterable<{ event?: { event: { case: string | undefined; value?: unknown } } }>) {
  const it = stream[Symbol.asyncIterator]();
  const first = await it.next();
  assert.equal(first.value?.event?.event.case, 'start');
  const pid = (first.value!.event!.event.value as { pid: number }).pid;
  return { pid, rest: { [Symbol.asyncIterator]: () => it } };
}

describe('process.Process', () => {
  it('runs a command: start, stdout, stderr, exit code', async () => {
    const r = await collect(agent.process.start({ process: bash('echo hello; echo oops >&2; exit 3'), stdin: false }));
    assert.ok(r.pid > 0);
    assert.equal(r.kinds[0], 'start');
    assert.equal(r.kinds.at(-1), 'end');
    assert.equal(r.stdout, 'hello\n');
    assert.equal(r.stderr, 'oops\n');
    assert.deepEqual(r.end, { exitCode: 3, exited: true, status: 'exit status 3', error: 'exit status 3' });
  });

  it('sets env (base + config envVars + request envs) and cwd', async () => {
    const p = { cmd: '/bin/bash', args: ['-c', 'echo "$FROM_CONFIG $FOO $USER $HOME $PATH"; pwd'], envs: { FOO: 'bar' }, cwd: '/tmp' };
    const r = await collect(agent.process.start({ process: p, stdin: false }));
    const [env, cwd] = r.stdout.trim().split('\n');
    assert.equal(env, 'cfg bar root /root /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
    assert.equal(cwd, '/tmp');
  });

  it('works with binary protobuf too', async () => {
    const { process } = agent.client({ binary: true });
    const r = await collect(process.start({ process: bash('printf "\\x00\\xff"'), stdin: false }));
    assert.equal(r.end?.exitCode, 0);
  });

  it('rejects a missing cwd and an unknown user', async () => {
    assert.equal(await code(collect(agent.process.start({ process: { ...bash('true'), cwd: '/does/not/exist' } }))), Code.InvalidArgument);
    const { process } = agent.client({ headers: { authorization: basicAuth('no-such-user') } });
    assert.equal(await code(collect(process.start({ process: bash('true') }))), Code.Unauthenticated);
    assert.equal(await code(collect(agent.process.start({ process: { cmd: '', args: [], envs: {} } }))), Code.InvalidArgument);
  });

  it('selects the user from Basic auth', async () => {
    const { process } = agent.client({ headers: { authorization: basicAuth('nobody') } });
    const r = await collect(process.start({ process: { ...bash('id -un; echo $HOME'), cwd: '/' }, stdin: false }));
    assert.equal(r.stdout.split('\n')[0], 'nobody');
  });

  it('feeds stdin and closes it', async () => {
    const { pid, rest } = await started(agent.process.start({ process: bash('cat; echo done') }));
    await agent.process.sendInput({ process: { selector: { case: 'pid', value: pid } }, input: { input: { case: 'stdin', value: Buffer.from('abc\n') } } });
    await agent.process.closeStdin({ process: { selector: { case: 'pid', value: pid } } });
    const r = await collect(rest);
    assert.equal(r.stdout, 'abc\ndone\n');
    assert.equal(r.end?.exitCode, 0);
  });

  it('stdin:false gives /dev/null and input is refused', async () => {
    const { pid, rest } = await started(agent.process.start({ process: bash('sleep 0.3; cat; echo eof'), stdin: false }));
    const c = await code(agent.process.sendInput({ process: { selector: { case: 'pid', value: pid } }, input: { input: { case: 'stdin', value: Buffer.from('x') } } }));
    assert.equal(c, Code.FailedPrecondition);
    const r = await collect(rest);
    assert.equal(r.stdout, 'eof\n');
  });

  it('kills a process with SIGKILL; lists and connects to running processes', async () => {
    const { pid, rest } = await started(agent.process.start({ process: bash('echo ready; sleep 30'), tag: 'sleeper' }));
    const list = await agent.process.list({});
    const info = list.processes.find((p) => p.pid === pid);
    assert.ok(info, 'listed');
    assert.equal(info.tag, 'sleeper');
    assert.equal(info.config?.cmd, '/bin/bash');

    const connected = agent.process.connect({ process: { selector: { case: 'tag', value: 'sleeper' } } });
    const c = await started(connected);
    assert.equal(c.pid, pid);

    await agent.process.sendSignal({ process: { selector: { case: 'pid', value: pid } }, signal: Signal.SIGKILL });
    const [r1, r2] = await Promise.all([collect(rest), collect(c.rest)]);
    assert.deepEqual(r1.end, { exitCode: -1, exited: false, status: 'signal: killed', error: 'signal: killed' });
    assert.equal(r2.end?.status, 'signal: killed');
    assert.ok(!(await agent.process.list({})).processes.some((p) => p.pid === pid));

    // recently exited: start + end
    const again = await collect(agent.process.connect({ process: { selector: { case: 'pid', value: pid } } }));
    assert.deepEqual(again.kinds, ['start', 'end']);
    assert.equal(await code(agent.process.sendSignal({ process: { selector: { case: 'pid', value: 999999 } }, signal: Signal.SIGKILL })), Code.NotFound);
    assert.equal(await code(collect(agent.process.connect({ process: { selector: { case: 'pid', value: 999999 } } }))), Code.NotFound);
  });

  it('SIGTERM reports "signal: terminated"', async () => {
    const { pid, rest } = await started(agent.process.start({ process: { cmd: '/bin/sleep', args: ['30'], envs: {} } }));
    await agent.process.sendSignal({ process: { selector: { case: 'pid', value: pid } }, signal: Signal.SIGTERM });
    const r = await collect(rest);
    assert.equal(r.end?.status, 'signal: terminated');
  });

  it('the process outlives its stream; Connect-Timeout-Ms is its lifetime', async () => {
    const ac = new AbortController();
    const { pid } = await started(agent.process.start({ process: bash('sleep 0.4; echo later') }, { signal: ac.signal }));
    ac.abort();
    await new Promise((r) => setTimeout(r, 100));
    assert.ok((await agent.process.list({})).processes.some((p) => p.pid === pid), 'still running after disconnect');
    const r = await collect(agent.process.connect({ process: { selector: { case: 'pid', value: pid } } }));
    assert.equal(r.stdout, 'later\n');
    assert.equal(r.end?.exitCode, 0);

    const t0 = Date.now();
    const s = agent.process.start({ process: bash('sleep 20') }, { timeoutMs: 500 });
    const { pid: pid2, rest } = await started(s);
    // The client's deadline and the agent's kill fall on the same instant: on a loaded host the end
    // event (signal: killed) may arrive before the client's own timer fires. Either way it ends then.
    const outcome = await collect(rest).then(
      (r) => r.end?.status,
      (err) => ConnectError.from(err).code,
    );
    assert.ok(outcome === Code.DeadlineExceeded || outcome === 'signal: killed', `ended with ${outcome}`);
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(Date.now() - t0 < 5000);
    assert.ok(!(await agent.process.list({})).processes.some((p) => p.pid === pid2), 'killed at the deadline');
  });

  it('a deadline left to the server (Connect-Timeout-Ms, no client timer) ends the stream with deadline_exceeded, as envd', async () => {
    const t0 = Date.now();
    const s = agent.process.start({ process: bash('sleep 20') }, { headers: { 'connect-timeout-ms': '600' } });
    const { pid, rest } = await started(s);
    const outcome = await collect(rest).then(
      (r) => `ended cleanly: ${r.end?.status}`,
      (err) => ConnectError.from(err).code,
    );
    assert.equal(outcome, Code.DeadlineExceeded);
    assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, 'the process is gone when the client hears of the deadline');
    assert.ok(Date.now() - t0 < 5000);
  });

  it('a process is gone (reaped) by the time its client hears its deadline passed, even with many started at once', async () => {
    // Each request's deadline timer is set before its spawn, the process's own after it; with 20
    // spawned one after another, the later ones' request timers fire tens of ms before their
    // processes' timers. The stream must still end only once its process is gone, not a zombie.
    const outcomes = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const { pid, rest } = await started(agent.process.start({ process: bash('sleep 20') }, { headers: { 'connect-timeout-ms': '800' } }));
        const code = await collect(rest).then(
          (r) => `ended cleanly: ${r.end?.status}`,
          (err) => ConnectError.from(err).code,
        );
        let alive = true;
        try {
          process.kill(pid, 0);
        } catch {
          alive = false;
        }
        return { code, alive };
      }),
    );
    assert.deepEqual(outcomes.filter((o) => o.code !== Code.DeadlineExceeded || o.alive), [], 'each ended with deadline_exceeded, its process gone');
  });

  it('sends keepalives when asked', async () => {
    const { process } = agent.client({ headers: { 'keepalive-ping-interval': '0.1' } });
    const r = await collect(process.start({ process: bash('sleep 0.45'), stdin: false }));
    assert.ok(r.kinds.filter((k) => k === 'keepalive').length >= 2, r.kinds.join(','));
  });

  it('streams large output completely', async () => {
    const r = await collect(agent.process.start({ process: bash('head -c 3000000 /dev/zero | tr "\\0" a'), stdin: false }));
    assert.equal(r.stdout.length, 3_000_000);
  });

  it('runs a PTY: output, input, resize', async () => {
    const { pid, rest } = await started(
      agent.process.start({
        process: { cmd: '/bin/bash', args: ['--noprofile', '--norc', '-i'], envs: { TERM: 'xterm-256color', PS1: '$ ' } },
        pty: { size: { cols: 80, rows: 24 } },
      }),
    );
    const sel = { selector: { case: 'pid' as const, value: pid } };
    await agent.process.update({ process: sel, pty: { size: { cols: 123, rows: 45 } } });
    await agent.process.sendInput({ process: sel, input: { input: { case: 'pty', value: Buffer.from('stty size; echo "tty:$(tty)"; exit 7\n') } } });
    const r = await collect(rest);
    assert.match(r.pty, /45 123/);
    assert.match(r.pty, /tty:\/dev\/pts\//);
    assert.equal(r.end?.exitCode, 7);
    assert.equal(await code(agent.process.update({ process: sel, pty: { size: { cols: 1, rows: 1 } } })), Code.NotFound);
  });

  it('runs PTY and plain processes as the selected user without root groups', async () => {
    const { process } = agent.client({ headers: { authorization: basicAuth('nobody') } });
    const plain = await collect(process.start({ process: { cmd: '/bin/sh', args: ['-c', 'id -un; id -G'], envs: {}, cwd: '/' }, stdin: false }));
    const [name, groups] = plain.stdout.trim().split('\n');
    assert.equal(name, 'nobody');
    assert.ok(!groups.split(' ').includes('0'), `groups: ${groups}`);
    const pty = await collect(
      process.start({ process: { cmd: '/bin/sh', args: ['-c', 'echo "u=$(id -un) g=$(id -G)"'], envs: {}, cwd: '/' }, pty: { size: { cols: 80, rows: 24 } } }),
    );
    const m = /u=(\S+) g=([\d ]+)/.exec(pty.pty);
    assert.ok(m, pty.pty);
    assert.equal(m[1], 'nobody');
    assert.ok(!m[2].trim().split(' ').includes('0'), `pty groups: ${m[2]}`);
  });

  it('StreamInput feeds stdin in order', async () => {
    const { pid, rest } = await started(agent.process.start({ process: bash('head -c 6') }));
    async function* input() {
      yield { event: { case: 'start' as const, value: { process: { selector: { case: 'pid' as const, value: pid } } } } };
      for (const s of ['ab', 'cd', 'ef']) yield { event: { case: 'data' as const, value: { input: { input: { case: 'stdin' as const, value: Buffer.from(s) } } } } };
    }
    await agent.process.streamInput(input());
    const r = await collect(rest);
    assert.equal(r.stdout, 'abcdef');
  });
});
