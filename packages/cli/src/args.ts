// Options that take NAME=VALUE pairs: --metadata, --env, --build-arg.
import { CliError } from './client.js'

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

/**
 * Reads NAME=VALUE pairs, saying which flag was given what when one is wrong. With `fromEnv` (as
 * docker's --env and --build-arg), a bare NAME takes this shell's value of NAME; with
 * `variableNames`, names are environment variable names.
 */
export function parsePairs(pairs: string[], flag: string, opts: { fromEnv?: boolean; variableNames?: boolean } = {}): Record<string, string> {
  const out: Record<string, string> = {}
  for (const p of pairs) {
    const i = p.indexOf('=')
    const name = i < 0 ? p : p.slice(0, i)
    if (!name || (opts.variableNames && !NAME.test(name))) {
      throw new CliError(`${flag} takes NAME=VALUE${opts.variableNames ? ', NAME made of letters, digits and _ (not starting with a digit)' : ''}; got "${p}"`, 2)
    }
    if (i >= 0) out[name] = p.slice(i + 1)
    else if (opts.fromEnv && process.env[name] !== undefined) out[name] = process.env[name]!
    else throw new CliError(`${flag} takes NAME=VALUE; got "${p}"${opts.fromEnv ? ` (a bare NAME takes its value from this shell, where ${name} is not set)` : ''}`, 2)
  }
  return out
}

/** Collects a repeatable option's values (commander's reducer). */
export const collect = (value: string, previous: string[] = []) => [...previous, value]
