// What the agent refuses: running without its configuration, changing its token, file operations
// that would wedge it, and watches without bound.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { describe, it } from 'node:test';
import { startAgent } from './helpers.js';

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
