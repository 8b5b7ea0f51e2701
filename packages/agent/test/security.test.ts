// What the agent refuses: running without its configuration, changing its token, file operations
// that would wedge it, and watches without bound.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { startAgent, type Agent } from './helpers.js';

const json = (body: Buffer) => JSON.parse(body.toString());

describe('an agent whose configuration cannot be used fails closed', () => {
  const cases: [string, Parameters<typeof startAgent>[1], RegExp][] = [
    ['missing', null, /configuration .*agent\.json is missing/],
    ['unreadable', (path) => mkdirSync(path), /cannot read its configuration .*agent\.json: EISDIR/],
    ['not JSON', '{"accessToken": "t",', /configuration .*agent\.json is invalid: .*JSON/],
    ['an env var name with =', JSON.stringify({ accessToken: 't', envVars: { 'A=B': 'x' } }), /is invalid: invalid env var name or value: A=B/],
    ['a wrong type', JSON.stringify({ accessToken: 't', defaultUser: 7 }), /is invalid: defaultUser must be a string/],
    ['no accessToken', JSON.stringify({ defaultUser: 'root' }), /is invalid: it has no accessToken/],
    ['an empty accessToken', JSON.stringify({ defaultUser: 'root', accessToken: '' }), /is invalid: it has no accessToken/],
  ];
  for (const [what, text, message] of cases) {
    it(`${what}: only GET /health answers; everything else is 503 naming the problem`, async () => {
      const agent = await startAgent({}, text);
      try {
        assert.equal((await agent.http({ path: '/health', token: false })).status, 204);
        const shadow = '/files?path=%2Fetc%2Fshadow&username=root';
        for (const r of [
          await agent.http({ path: shadow, token: false }),
          await agent.http({ path: shadow, headers: { 'x-access-token': '' } }),
          await agent.http({ path: '/envs', token: false }),
          await agent.http({ method: 'POST', path: '/init', token: false, headers: { 'content-type': 'application/json' }, body: '{"accessToken":"mine"}' }),
          await agent.http({ method: 'POST', path: '/files?path=%2Ftmp%2Fx', token: false, body: 'x' }),
          await agent.http({ method: 'POST', path: '/process.Process/List', token: false, headers: { 'content-type': 'application/json' }, body: '{}' }),
        ]) {
          assert.equal(r.status, 503, r.body.toString());
          assert.match(json(r.body).message, /refuses every request/);
          assert.match(json(r.body).message, message);
        }
        assert.match(agent.stderr(), /refusing every request but GET \/health/);
      } finally {
        await agent.stop();
      }
    });
  }

});

describe('POST /init cannot change the access token', () => {
  let agent: Agent;
  before(async () => {
    agent = await startAgent({ envVars: { KEPT: 'yes' } });
  });
  after(async () => {
    await agent?.stop();
  });
  const init = (body: unknown, token?: false) =>
    agent.http({ method: 'POST', path: '/init', token, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const envs = async () => json((await agent.http({ path: '/envs' })).body) as Record<string, string>;

  it('refuses to blank or replace it (403, nothing applied), and accepts the current one as a no-op', async () => {
    for (const accessToken of ['', 'another-token', agent.token + 'x', agent.token.slice(1)]) {
      const r = await init({ accessToken, envVars: { SNEAKED: 'in' }, defaultUser: 'nobody' });
      assert.equal(r.status, 403, `accessToken ${JSON.stringify(accessToken)}: ${r.body}`);
      assert.match(json(r.body).message, /accessToken cannot be changed/);
    }
    // Nothing of a refused request was applied, and the old token still opens the agent.
    const env = await envs();
    assert.equal(env.SNEAKED, undefined);
    assert.equal(env.KEPT, 'yes');
    assert.equal(env.HOME, '/root', 'the default user is still root');
    assert.equal((await agent.http({ path: '/envs', headers: { 'x-access-token': 'another-token' } })).status, 401);
    assert.equal((await agent.http({ path: '/envs', headers: { 'x-access-token': '' } })).status, 401);

    // E2B's orchestrator repeats the token it gave: accepted, the other fields applied.
    const same = await init({ accessToken: agent.token, envVars: { ADDED: '1' }, timestamp: '2026-01-01T00:00:00Z' });
    assert.equal(same.status, 204, same.body.toString());
    assert.equal((await envs()).ADDED, '1');
    const without = await init({ envVars: { ALSO: '2' }, accessToken: null });
    assert.equal(without.status, 204, without.body.toString());
    assert.equal((await envs()).ALSO, '2');
  });

  it('needs the token itself, and validates its other fields as before', async () => {
    assert.equal((await init({ accessToken: agent.token }, false)).status, 401);
    const bad = await init({ accessToken: agent.token, envVars: { 'A=B': 'x' } });
    assert.equal(bad.status, 400);
    assert.match(json(bad.body).message, /invalid env var name/);
    assert.equal((await init({ accessToken: 5 })).status, 400);
    assert.equal((await envs())['A=B'], undefined);
  });
});
