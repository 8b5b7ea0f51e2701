// What the fuzzer (fuzz.test.ts) sends, made from a seeded PRNG so a run is reproduced by its seed:
// values valid for a JSON schema, and mutations of them (wrong types, missing fields, huge and
// negative numbers, unicode, nulls, deep nesting), and hostile strings for paths and queries.

/** mulberry32: small, fast and the same on every platform. */
export function prng(seed: number) {
  let a = seed >>> 0
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const int = (n: number) => Math.floor(next() * n)
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!
  const chance = (p: number) => next() < p
  const bytes = (n: number) => {
    const b = Buffer.alloc(n)
    for (let i = 0; i < n; i++) b[i] = int(256)
    return b
  }
  return { next, int, pick, chance, bytes }
}
export type Rng = ReturnType<typeof prng>

export const NUMBERS = [0, -1, 1, 2 ** 31, -(2 ** 31), 2 ** 53, 1e308, -1e308, 1.5, 0.000001, Number.MAX_SAFE_INTEGER + 2, 65536, 4294967296, 99999999999999999999]
export const STRINGS = [
  '',
  ' ',
  '\u0000',
  'a\u0000b',
  '..',
  '../../../etc/passwd',
  '/',
  '%',
  '%zz',
  '%00',
  '%ff%fe',
  '\ud800',
  '\udfff\ud800',
  '😀'.repeat(50),
  'ǅ\u202e\u200b',
  '<script>',
  "'; DROP TABLE sandboxes; --",
  '${PORT}',
  'null',
  'true',
  '-1',
  '1e999',
  '__proto__',
  'constructor',
  'a'.repeat(300),
  'x'.repeat(70_000),
  '\r\nX-Injected: 1',
  'base',
  'base:latest',
  'e2b_0000000000000000000000000000000000000000',
]

function randomString(r: Rng): string {
  if (r.chance(0.6)) return r.pick(STRINGS)
  const n = r.int(r.chance(0.9) ? 40 : 5000)
  let s = ''
  for (let i = 0; i < n; i++) s += String.fromCharCode(r.chance(0.8) ? 32 + r.int(95) : r.int(0x10000))
  return s
}

/** A random JSON value, possibly deeply nested. */
export function randomJson(r: Rng, depth = 0): unknown {
  const k = r.int(depth > 3 ? 5 : 8)
  if (k === 0) return null
  if (k === 1) return r.chance(0.5)
  if (k === 2) return r.pick(NUMBERS)
  if (k === 3 || k === 4) return randomString(r)
  if (k === 5) return Array.from({ length: r.int(5) }, () => randomJson(r, depth + 1))
  if (k === 6 && r.chance(0.1)) return deepNest(r.pick([100, 1000]))
  return Object.fromEntries(Array.from({ length: r.int(5) }, () => [randomString(r).slice(0, 40), randomJson(r, depth + 1)]))
}

/** JSON text nested deeper than a JSON.stringify could make. */
export const deepJsonText = (n: number) => '{"a":['.repeat(n) + '1' + ']}'.repeat(n)

export function deepNest(n: number): unknown {
  let v: unknown = 1
  for (let i = 0; i < n; i++) v = i % 2 ? [v] : { a: v }
  return v
}

type Schema = { type?: string | string[]; properties?: Record<string, Schema>; required?: string[]; items?: Schema; enum?: unknown[]; minimum?: number; minLength?: number; additionalProperties?: boolean | Schema; $ref?: string }

/** A value valid for the schema (as far as its keywords go), from `defs` for `$ref`s. */
export function exampleOf(schema: Schema | undefined, r: Rng, defs: Record<string, Schema> = {}, depth = 0): unknown {
  if (!schema || depth > 6) return {}
  if (schema.$ref) return exampleOf(defs[schema.$ref.split('/').at(-1)!], r, defs, depth + 1)
  if (schema.enum) return r.pick(schema.enum)
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== 'null') : schema.type
  switch (type) {
    case 'string':
      return 'fuzz'.padEnd(schema.minLength ?? 1, 'z')
    case 'integer':
    case 'number':
      return Math.max(schema.minimum ?? 1, 1)
    case 'boolean':
      return r.chance(0.5)
    case 'array':
      return [exampleOf(schema.items, r, defs, depth + 1)]
    default: {
      const out: Record<string, unknown> = {}
      for (const [k, s] of Object.entries(schema.properties ?? {})) if (schema.required?.includes(k) || r.chance(0.5)) out[k] = exampleOf(s, r, defs, depth + 1)
      if (!schema.properties && schema.additionalProperties && typeof schema.additionalProperties === 'object') out.fuzz = exampleOf(schema.additionalProperties, r, defs, depth + 1)
      return out
    }
  }
}

/** One to three mutations of a (valid) value: wrong types, dropped or extra fields, extremes. */
export function mutate(value: unknown, r: Rng): unknown {
  let v = structuredClone(value)
  for (let i = 1 + r.int(3); i > 0; i--) v = mutateOnce(v, r, 0)
  return v
}

function mutateOnce(v: unknown, r: Rng, depth: number): unknown {
  if (v && typeof v === 'object' && depth < 4 && r.chance(0.7)) {
    if (Array.isArray(v)) {
      if (!v.length || r.chance(0.2)) {
        if (r.chance(0.5)) return [...v, randomJson(r)]
        // A long array of the first item if it is small: measured once, not once per element (an
        // item can be a 70 KB string, and 20,000 stringifies of it stalled the fuzzer's own loop
        // for seconds, which its /health probe then took for the server's).
        const item = JSON.stringify(v[0] ?? 1).length < 64 ? v[0] : 1
        return Array.from({ length: r.pick([0, 1000, 20_000]) }, () => item)
      }
      const i = r.int(v.length)
      v[i] = mutateOnce(v[i], r, depth + 1)
      return v
    }
    const o = v as Record<string, unknown>
    const keys = Object.keys(o)
    const what = r.int(4)
    if (what === 0 && keys.length) delete o[r.pick(keys)]
    else if (what === 1) o[r.chance(0.5) ? randomString(r).slice(0, 50) : r.pick(['__proto__', 'constructor', 'metadata', 'template', 'templateID', 'timeout'])] = randomJson(r)
    else if (keys.length) {
      const k = r.pick(keys)
      o[k] = mutateOnce(o[k], r, depth + 1)
    }
    return o
  }
  // A leaf (or the whole): another type, an extreme, nothing.
  switch (r.int(8)) {
    case 0:
      return null
    case 1:
      return r.pick(NUMBERS)
    case 2:
      return randomString(r)
    case 3:
      return typeof v === 'number' ? -v : r.chance(0.5)
    case 4:
      return [v]
    case 5:
      return { v }
    case 6:
      return deepNest(r.pick([50, 500, 1000]))
    default:
      return randomJson(r)
  }
}

/** Percent-encoded as UTF-8 (a lone surrogate as the replacement character; raw invalid UTF-8 is sent as such elsewhere). */
export const enc = (s: string) => encodeURIComponent((s as string & { toWellFormed(): string }).toWellFormed())

/** A path parameter: unknown ids, traversal, encodings a decoder may choke on, long ones. */
export function pathParam(r: Rng): string {
  const raw = r.pick([
    () => 'i' + 'fuzz'.repeat(5),
    () => enc(randomString(r).slice(0, 200)),
    () => '%ff%fe%fd',
    () => '%c0%af',
    () => '%',
    () => '%2e%2e%2f%2e%2e',
    () => 'a'.repeat(r.pick([1, 128, 300, 5000])),
    () => String(r.pick(NUMBERS)),
    () => '0',
    () => 'base%00',
    () => '%E2%80%AE',
  ])
  return raw()
}

/** A query value. */
export function queryValue(r: Rng): string {
  return r.chance(0.5) ? enc(randomString(r).slice(0, 500)) : r.pick(['%ff', '%', '-1', '0', '1e999', 'NaN', '99999999999999999999', 'true', '', '%00', enc('{"a":1}')])
}
