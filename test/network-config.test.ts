// The network configuration's validation and normalisation (pure): E2B's rules and error texts
// (../shared/reference/e2b-protocol-next.md §1.2), Sandlot's limits, and the policy the
// enforcement gets.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { SandlotError } from '../packages/server/src/errors.js'
import {
  ALL_TRAFFIC,
  DOMAINS_REQUIRE_ALL_TRAFFIC,
  MAX_ENTRIES,
  checkIam,
  egressPolicyOf,
  parseE2BCreateNetwork,
  parseE2BNetworkUpdate,
  parseEgressLists,
  parseNativeNetwork,
  parseNativeNetworkUpdate,
} from '../packages/server/src/network/config.js'

/** Asserts `fn` throws a SandlotError with this status whose message equals (string) or matches (RegExp). */
function fails(fn: () => unknown, status: number, message: string | RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof SandlotError, `not a SandlotError: ${String(e)}`)
    assert.equal(e.status, status, e.message)
    if (typeof message === 'string') assert.equal(e.message, message)
    else assert.match(e.message, message)
    return true
  })
}

const lists = (allowOut?: unknown, denyOut?: unknown, internet: boolean | null = null) => parseEgressLists(allowOut, denyOut, internet)

describe('network config: denyOut', () => {
  test('takes IPv4 addresses and CIDRs; a bare address becomes /32', () => {
    assert.deepEqual(lists(undefined, ['8.8.8.8', '10.0.0.0/8', '1.2.3.4/32', ALL_TRAFFIC]).denyOut, ['8.8.8.8/32', '10.0.0.0/8', '1.2.3.4/32', '0.0.0.0/0'])
  })

  test('anything else: 400 "invalid denied CIDR <x>"', () => {
    fails(() => lists(undefined, ['example.com']), 400, 'invalid denied CIDR example.com (denyOut takes IP addresses and CIDRs only, not domains)')
    fails(() => lists(undefined, ['*.example.com']), 400, /^invalid denied CIDR \*\.example\.com /)
    for (const bad of ['1.2.3.4/33', '1.2.3.4/', '1.2.3.4/08', '1.2.3.4/-1', '256.1.1.1', '1.2.3', '1.2.3.4.5', '01.2.3.4', '1.2.3.4:80', ' 1.2.3.4', '', 'x/8', '1.2.3.4/8/8']) {
      fails(() => lists(undefined, [bad]), 400, new RegExp(`^invalid denied CIDR ${bad.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`))
    }
  })

  test('unspecified addresses are refused, except exactly 0.0.0.0/0', () => {
    fails(() => lists(undefined, ['0.0.0.0']), 400, 'invalid denied CIDR 0.0.0.0 (unspecified address; all traffic is 0.0.0.0/0)')
    fails(() => lists(undefined, ['0.0.0.0/8']), 400, /^invalid denied CIDR 0\.0\.0\.0\/8 /)
    fails(() => lists(undefined, ['0.0.0.0/32']), 400, /^invalid denied CIDR 0\.0\.0\.0\/32 /)
    assert.deepEqual(lists(undefined, ['0.0.0.0/0']).denyOut, ['0.0.0.0/0'])
  })

  test('IPv6 is refused with the reason (sandboxes have IPv4 only)', () => {
    fails(() => lists(undefined, ['::/0']), 400, 'invalid denied CIDR ::/0 (IPv6 is not supported: sandboxes have IPv4 only)')
    fails(() => lists(undefined, ['2001:db8::1']), 400, /^invalid denied CIDR 2001:db8::1 \(IPv6/)
    fails(() => lists(undefined, ['::ffff:1.2.3.4']), 400, /IPv6 is not supported/)
  })
})

describe('network config: allowOut', () => {
  test('takes IPv4 addresses, CIDRs and domain patterns; addresses become /32, domains lower-case', () => {
    const { allowOut } = lists(['1.1.1.1', '10.1.2.3/8', 'Example.COM', '*.PyPI.org', '*', 'a.com.', 'my_host.internal', 'localhost', 'xn--mnchen-3ya.de'], [ALL_TRAFFIC])
    assert.deepEqual(allowOut, ['1.1.1.1/32', '10.1.2.3/8', 'example.com', '*.pypi.org', '*', 'a.com', 'my_host.internal', 'localhost', 'xn--mnchen-3ya.de'])
  })

  test('names in other scripts become punycode (what SNI and Host carry)', () => {
    assert.deepEqual(lists(['München.de', '*.bücher.example'], [ALL_TRAFFIC]).allowOut, ['xn--mnchen-3ya.de', '*.xn--bcher-kva.example'])
  })

  test('anything else: 400 "invalid allowed address <x>"', () => {
    for (const bad of ['a..com', '-a.com', 'a-.com', '*.', '*.*.a.com', 'a.*.com', '**', 'a.com/8', 'a.com:443', 'http://a.com', 'a com', '1.2.3', '999.1.1.1', '1.2.3.4/33', '[::1]', 'a'.repeat(64) + '.com', '', '.', 'a.com..', 'ünïcödé dömäin', 'a\u0000.com']) {
      fails(() => lists([bad], [ALL_TRAFFIC]), 400, new RegExp(`^invalid allowed address ${bad.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`))
    }
  })

  test('unspecified addresses are refused, except exactly 0.0.0.0/0', () => {
    fails(() => lists(['0.0.0.0']), 400, 'invalid allowed address 0.0.0.0 (unspecified address; all traffic is 0.0.0.0/0)')
    fails(() => lists(['0.0.0.0/16']), 400, /^invalid allowed address 0\.0\.0\.0\/16 /)
    assert.deepEqual(lists([ALL_TRAFFIC]).allowOut, [ALL_TRAFFIC])
  })

  test('IPv6 is refused with the reason', () => {
    fails(() => lists(['::1']), 400, 'invalid allowed address ::1 (IPv6 is not supported: sandboxes have IPv4 only)')
    fails(() => lists(['2001:db8::/32']), 400, /IPv6 is not supported/)
  })

  test('domains need 0.0.0.0/0 in denyOut, with E2B\'s text', () => {
    fails(() => lists(['example.com']), 400, DOMAINS_REQUIRE_ALL_TRAFFIC)
    fails(() => lists(['1.1.1.1', '*'], ['10.0.0.0/8']), 400, DOMAINS_REQUIRE_ALL_TRAFFIC)
    assert.equal(
      DOMAINS_REQUIRE_ALL_TRAFFIC,
      "When specifying allowed domains in allow out, you must include 'ALL_TRAFFIC' in deny out to block all other traffic.",
    )
    // Only addresses: no such need.
    assert.deepEqual(lists(['1.1.1.1']), { allowOut: ['1.1.1.1/32'], denyOut: [] })
    // Internet access off denies all other traffic just the same.
    assert.deepEqual(lists(['example.com'], undefined, false), { allowOut: ['example.com'], denyOut: [] })
    fails(() => lists(['example.com'], undefined, true), 400, DOMAINS_REQUIRE_ALL_TRAFFIC)
  })

  test('E2B\'s order: denied entries are checked before allowed ones', () => {
    fails(() => lists(['not valid'], ['also not valid']), 400, /^invalid denied CIDR also not valid/)
  })
})

describe('network config: shapes and limits', () => {
  test('lists must be arrays of strings; null is "not given"', () => {
    fails(() => lists('1.1.1.1'), 400, 'allowOut must be an array of strings')
    fails(() => lists(undefined, { a: 1 }), 400, 'denyOut must be an array of strings')
    fails(() => lists(['1.1.1.1', 5]), 400, 'allowOut[1] must be a string')
    fails(() => lists([null]), 400, 'allowOut[0] must be a string')
    assert.deepEqual(lists(null, null), { allowOut: [], denyOut: [] })
  })

  test(`at most ${MAX_ENTRIES} entries per list, and 255 characters per entry`, () => {
    const many = Array.from({ length: MAX_ENTRIES + 1 }, (_, i) => `10.0.${i >> 8}.${i & 255}`)
    fails(() => lists(many), 400, `allowOut has ${MAX_ENTRIES + 1} entries: at most ${MAX_ENTRIES} are allowed`)
    fails(() => lists(undefined, many), 400, `denyOut has ${MAX_ENTRIES + 1} entries: at most ${MAX_ENTRIES} are allowed`)
    assert.equal(lists(many.slice(0, MAX_ENTRIES)).allowOut.length, MAX_ENTRIES)
    const long = `${'a'.repeat(60)}.`.repeat(5) + 'com'
    fails(() => lists([long], [ALL_TRAFFIC]), 400, /^invalid allowed address a{60}\.a{39}… \(longer than 255 characters\)$/)
    // A name of 253 characters is fine.
    const longest = [61, 63, 63, 63].map((n) => 'b'.repeat(n)).join('.')
    assert.equal(longest.length, 253)
    assert.deepEqual(lists([longest], [ALL_TRAFFIC]).allowOut, [longest])
    fails(() => lists([`c${longest}`], [ALL_TRAFFIC]), 400, /^invalid allowed address c/)
  })
})

describe('network config: E2B create', () => {
  test('nothing given: open, with the internet flag as given (or null)', () => {
    assert.deepEqual(parseE2BCreateNetwork(undefined, undefined), { network: { config: { allowOut: [], denyOut: [] }, allowInternetAccess: null }, ingress: {} })
    assert.deepEqual(parseE2BCreateNetwork(null, false).network, { config: { allowOut: [], denyOut: [] }, allowInternetAccess: false })
    assert.deepEqual(parseE2BCreateNetwork({}, true).network.allowInternetAccess, true)
    fails(() => parseE2BCreateNetwork({}, 'no'), 400, 'allow_internet_access must be true or false')
    fails(() => parseE2BCreateNetwork([], undefined), 400, 'network must be an object')
    fails(() => parseE2BCreateNetwork('x', undefined), 400, 'network must be an object')
  })

  test('allowOut, denyOut and the ingress fields (validated, handed on untouched)', () => {
    const r = parseE2BCreateNetwork(
      { allowOut: ['1.1.1.1', 'API.example.com'], denyOut: ['0.0.0.0/0'], allowPublicTraffic: false, maskRequestHost: 'localhost:${PORT}', httpsPorts: [3000, 3000, 8443] },
      undefined,
    )
    assert.deepEqual(r.network.config, { allowOut: ['1.1.1.1/32', 'api.example.com'], denyOut: ['0.0.0.0/0'] })
    assert.deepEqual(r.ingress, { allowPublicTraffic: false, maskRequestHost: 'localhost:${PORT}', httpsPorts: [3000, 8443] })
  })

  test('ingress fields of the wrong type or shape: 400', () => {
    fails(() => parseE2BCreateNetwork({ allowPublicTraffic: 'no' }, undefined), 400, 'network.allowPublicTraffic must be true or false')
    fails(() => parseE2BCreateNetwork({ maskRequestHost: 5 }, undefined), 400, /^network\.maskRequestHost must be a string/)
    fails(() => parseE2BCreateNetwork({ maskRequestHost: 'bücher.de' }, undefined), 400, "mask request host 'bücher.de' is not ASCII. Please use ASCII characters only.")
    fails(() => parseE2BCreateNetwork({ maskRequestHost: 'a b' }, undefined), 400, 'mask request host is not valid: a b')
    fails(() => parseE2BCreateNetwork({ maskRequestHost: 'a.com:x' }, undefined), 400, 'mask request host is not valid: a.com:x')
    fails(() => parseE2BCreateNetwork({ httpsPorts: 443 }, undefined), 400, 'network.httpsPorts must be an array of port numbers')
    fails(() => parseE2BCreateNetwork({ httpsPorts: [0] }, undefined), 400, 'network.httpsPorts: 0 is not a port number (1 to 65535)')
    fails(() => parseE2BCreateNetwork({ httpsPorts: [1.5] }, undefined), 400, /1\.5 is not a port number/)
    fails(() => parseE2BCreateNetwork({ httpsPorts: [49983] }, undefined), 400, 'network.httpsPorts: the envd port 49983 cannot be listed')
  })

  test('an unknown field is named, never ignored', () => {
    fails(() => parseE2BCreateNetwork({ allowIn: ['1.1.1.1'] }, undefined), 400, /^Unknown field network\.allowIn: this takes allowOut, denyOut, rules, egressProxy/)
  })

  test('egressProxy: E2B\'s 403 for a team without it', () => {
    fails(() => parseE2BCreateNetwork({ egressProxy: { address: 'proxy.example.com:1080' } }, undefined), 403, 'Egress proxy (network.egressProxy) is not enabled for this team.')
    fails(() => parseE2BCreateNetwork({ egressProxy: 'garbage' }, undefined), 403, 'Egress proxy (network.egressProxy) is not enabled for this team.')
    assert.deepEqual(parseE2BCreateNetwork({ egressProxy: null }, undefined).network.config, { allowOut: [], denyOut: [] })
  })

  test('rules: E2B\'s checks and texts; a header transform is refused (it needs TLS interception)', () => {
    const rules = (r: unknown) => parseE2BCreateNetwork({ rules: r }, undefined)
    fails(() => rules('x'), 400, 'network.rules must be an object of domain → list of rules')
    fails(() => rules(Object.fromEntries(Array.from({ length: 11 }, (_, i) => [`d${i}.com`, []]))), 400, 'Network rules can have at most 10 domains.')
    fails(() => rules({ '': [] }), 400, 'Rule domain must not be empty.')
    fails(() => rules({ [`${'a'.repeat(125)}.com`]: [] }), 400, /^Rule domain "a+…" exceeds maximum length of 128 characters\.$/)
    fails(() => rules({ '*': [] }), 400, 'Rule domain "*" is not a valid domain name.')
    fails(() => rules({ 'a b.com': [] }), 400, 'Rule domain "a b.com" is not a valid domain name.')
    fails(() => rules({ 'A.com': [], 'a.com': [] }), 400, 'Network rule domain keys must be unique ignoring case.')
    fails(() => rules({ 'a.com': {} }), 400, 'network.rules["a.com"] must be a list of rules')
    fails(() => rules({ 'a.com': [{}, {}] }), 400, 'Domain "a.com" can have at most 1 transform rule.')
    fails(() => rules({ 'a.com': ['x'] }), 400, /a rule must be an object/)
    fails(() => rules({ 'a.com': [{ drop: true }] }), 400, /^Unknown field in a rule of network\.rules\["a\.com"\]: drop/)
    const withHeaders = (headers: unknown) => rules({ 'a.com': [{ transform: { headers } }] })
    fails(() => withHeaders(Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`x-h${i}`, 'v']))), 400, 'Domain "a.com" can have at most 20 headers per rule.')
    fails(() => withHeaders({ 'bad name': 'v' }), 400, 'Header name "bad name" in rule for domain "a.com" must contain only valid HTTP token characters.')
    fails(() => withHeaders({ ['x'.repeat(65)]: 'v' }), 400, /^Header name "x+" in rule for domain "a\.com" exceeds maximum length of 64 characters\.$/)
    fails(() => withHeaders({ 'x-a': 'line\r\nbreak' }), 400, 'Value for header "x-a" in rule for domain "a.com" contains invalid characters.')
    fails(() => withHeaders({ 'x-a': 'v'.repeat(2049) }), 400, 'Value for header "x-a" in rule for domain "a.com" exceeds maximum length of 2048 characters.')
    fails(() => withHeaders({ 'x-a': 5 }), 400, 'Value for header "x-a" in rule for domain "a.com" must be a string.')
    // Well-formed, but it would never be applied: refused, saying why.
    fails(() => withHeaders({ Authorization: 'Bearer ${e2b.secrets.key}' }), 400, /^network\.rules\["a\.com"\]: header transforms need TLS interception .* which Sandlot does not do/)
    // Rules that transform nothing are kept (lower-case keys), as E2B stores them.
    assert.deepEqual(rules({ 'API.example.com': [{}], '*.b.com': [{ transform: { headers: {} } }], 'c.com': [{ transform: null }], 'd.com': [] }).network.config.rules, {
      'api.example.com': [{}],
      '*.b.com': [{}],
      'c.com': [{}],
      'd.com': [],
    })
    assert.deepEqual(rules({}).network.config.rules, {})
  })
})

describe('network config: E2B update (full replace)', () => {
  test('{} clears everything, the internet flag included', () => {
    assert.deepEqual(parseE2BNetworkUpdate({}), { config: { allowOut: [], denyOut: [] }, allowInternetAccess: null })
  })

  test('takes allowOut, denyOut, rules and allow_internet_access', () => {
    assert.deepEqual(parseE2BNetworkUpdate({ allowOut: ['Example.com'], denyOut: ['0.0.0.0/0'], rules: { 'example.com': [{}] }, allow_internet_access: true }), {
      config: { allowOut: ['example.com'], denyOut: ['0.0.0.0/0'], rules: { 'example.com': [{}] } },
      allowInternetAccess: true,
    })
    assert.deepEqual(parseE2BNetworkUpdate({ allowOut: ['pypi.org'], allow_internet_access: false }), { config: { allowOut: ['pypi.org'], denyOut: [] }, allowInternetAccess: false })
  })

  test('the same validation, with the update\'s field names', () => {
    fails(() => parseE2BNetworkUpdate(null), 400, 'The body must be a JSON object ({} clears every network rule)')
    fails(() => parseE2BNetworkUpdate([]), 400, /^The body must be a JSON object/)
    fails(() => parseE2BNetworkUpdate({ denyOut: ['a.com'] }), 400, /^invalid denied CIDR a\.com/)
    fails(() => parseE2BNetworkUpdate({ allowOut: ['a.com'] }), 400, DOMAINS_REQUIRE_ALL_TRAFFIC)
    fails(() => parseE2BNetworkUpdate({ egressProxy: { address: 'p:1080' } }), 403, 'Egress proxy (egressProxy) is not enabled for this team.')
    fails(() => parseE2BNetworkUpdate({ rules: { 'a.com': [{ transform: { headers: { 'x-a': 'b' } } }] } }), 400, /^rules\["a\.com"\]: header transforms need TLS interception/)
    fails(() => parseE2BNetworkUpdate({ maskRequestHost: 'a' }), 400, /^Unknown field maskRequestHost: this takes allowOut, denyOut, rules, egressProxy, allow_internet_access$/)
    fails(() => parseE2BNetworkUpdate({ allow_internet_access: 1 }), 400, 'allow_internet_access must be true or false')
  })
})

describe('network config: Sandlot\'s own shape', () => {
  test('{ allowInternetAccess?, allowOut?, denyOut? }', () => {
    assert.deepEqual(parseNativeNetwork(undefined), { config: { allowOut: [], denyOut: [] }, allowInternetAccess: null })
    assert.deepEqual(parseNativeNetwork(null), { config: { allowOut: [], denyOut: [] }, allowInternetAccess: null })
    assert.deepEqual(parseNativeNetwork({ allowInternetAccess: false, allowOut: ['PyPI.org', '1.1.1.1'] }), {
      config: { allowOut: ['pypi.org', '1.1.1.1/32'], denyOut: [] },
      allowInternetAccess: false,
    })
    fails(() => parseNativeNetwork({ rules: {} }), 400, 'Unknown field network.rules: this takes allowInternetAccess, allowOut, denyOut, allowPublicTraffic, maskRequestHost')
    fails(() => parseNativeNetwork('x'), 400, /^network must be a JSON object/)
    fails(() => parseNativeNetwork({ denyOut: ['a.com'] }), 400, /^invalid denied CIDR a\.com/)
    fails(() => parseNativeNetwork({ allowOut: 'a.com' }), 400, 'network.allowOut must be an array of strings')
    fails(() => parseNativeNetwork({ allowInternetAccess: 'yes' }), 400, 'network.allowInternetAccess must be true or false')
  })

  test('an update\'s body: the same fields at the top; it must be an object ({} clears all)', () => {
    assert.deepEqual(parseNativeNetworkUpdate({}), { config: { allowOut: [], denyOut: [] }, allowInternetAccess: null })
    assert.deepEqual(parseNativeNetworkUpdate({ denyOut: ['10.0.0.0/8'] }).config.denyOut, ['10.0.0.0/8'])
    for (const body of [undefined, null, 'x', [], 5]) fails(() => parseNativeNetworkUpdate(body), 400, /^The body must be a JSON object/)
    fails(() => parseNativeNetworkUpdate({ allowInternetAccess: 'yes' }), 400, 'allowInternetAccess must be true or false')
    fails(() => parseNativeNetworkUpdate({ rules: {} }), 400, 'Unknown field rules: this takes allowInternetAccess, allowOut, denyOut')
  })
})

describe('network config: iam', () => {
  test("E2B's checks; a token is refused (only header transforms use one)", () => {
    checkIam(undefined)
    checkIam({})
    checkIam({ tokens: {} })
    fails(() => checkIam('x'), 400, 'iam must be an object ({ tokens })')
    fails(() => checkIam({ tokens: [] }), 400, /^iam\.tokens must be an object/)
    fails(() => checkIam({ tokens: Object.fromEntries(Array.from({ length: 6 }, (_, i) => [`t${i}`, { audience: 'a', tokenType: 'JWT-SVID' }])) }), 400, 'iam.tokens can have at most 5 tokens')
    fails(() => checkIam({ tokens: { aws: { audience: 'a', tokenType: 'X' } } }), 400, 'iam.tokens["aws"].tokenType must be "JWT-SVID"')
    fails(() => checkIam({ tokens: { aws: { tokenType: 'JWT-SVID' } } }), 400, 'iam.tokens["aws"].audience is required')
    fails(() => checkIam({ tokens: { aws: { audience: 'sts.amazonaws.com', tokenType: 'JWT-SVID' } } }), 400, /^iam\.tokens: workload identity tokens are only used in network header transforms/)
  })
})

describe('network config: the egress policy', () => {
  test('CIDRs as network addresses, domains as they are, each once', () => {
    const config = { allowOut: ['10.1.2.3/8', '1.1.1.1/32', '1.1.1.1/32', 'example.com', '*.a.com', '192.168.7.9/20'], denyOut: ['0.0.0.0/0', '8.8.8.8/32'] }
    assert.deepEqual(egressPolicyOf(config, null), {
      allowOut: ['10.0.0.0/8', '1.1.1.1/32', 'example.com', '*.a.com', '192.168.0.0/20'],
      denyOut: ['0.0.0.0/0', '8.8.8.8/32'],
    })
    assert.deepEqual(egressPolicyOf(config, true).denyOut, ['0.0.0.0/0', '8.8.8.8/32'])
    assert.deepEqual(egressPolicyOf({ allowOut: ['255.255.255.255/1', '1.2.3.4/0', '1.2.3.4/31'], denyOut: [] }, null).allowOut, ['128.0.0.0/1', '0.0.0.0/0', '1.2.3.4/31'])
  })

  test('allowInternetAccess false replaces denyOut with all traffic; allowOut stays (and wins)', () => {
    assert.deepEqual(egressPolicyOf({ allowOut: ['1.1.1.1/32', 'pypi.org'], denyOut: ['8.8.8.8/32'] }, false), { allowOut: ['1.1.1.1/32', 'pypi.org'], denyOut: ['0.0.0.0/0'] })
    assert.deepEqual(egressPolicyOf({ allowOut: [], denyOut: [] }, false), { allowOut: [], denyOut: ['0.0.0.0/0'] })
  })

  test('no config: everything allowed', () => {
    assert.deepEqual(egressPolicyOf({ allowOut: [], denyOut: [] }, null), { allowOut: [], denyOut: [] })
  })

  test('a stored entry that is not valid fails closed', () => {
    assert.deepEqual(egressPolicyOf({ allowOut: ['not valid'], denyOut: ['not valid either'] }, null), { allowOut: [], denyOut: ['0.0.0.0/0'] })
  })

  test('what the parser accepts, the policy carries', () => {
    const parsed = parseE2BCreateNetwork({ allowOut: ['1.2.3.4', 'Example.com'], denyOut: ['0.0.0.0/0', '10.9.8.7/16'] }, undefined).network
    assert.deepEqual(egressPolicyOf(parsed.config, parsed.allowInternetAccess), { allowOut: ['1.2.3.4/32', 'example.com'], denyOut: ['0.0.0.0/0', '10.9.0.0/16'] })
  })
})
