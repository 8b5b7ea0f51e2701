import { readFileSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { logError } from './log.js';

export const ENVD_VERSION = '0.6.13';

export interface AgentConfig {
  /** Create-time env vars added to every process. */
  envVars: Record<string, string>;
  defaultUser: string;
  defaultWorkdir?: string;
  accessToken?: string;
}

/** A validated config object, or the fields of one that POST /init sends. */
export type ConfigInput = Partial<AgentConfig>;

export const socketPath = process.env.SANDLOT_AGENT_SOCKET || '/run/sandlot/agent.sock';
/**
 * The listening socket the daemon made and handed in (its fd), if any: the daemon reaches the agent
 * only through it, never through a path inside the sandbox. Without it (tests, a bare agent), the
 * agent listens on socketPath itself.
 */
export const listenFd = process.env.SANDLOT_AGENT_LISTEN_FD ? Number(process.env.SANDLOT_AGENT_LISTEN_FD) : undefined;
const configPath = process.env.SANDLOT_AGENT_CONFIG || '/run/sandlot/agent.json';

/** The live configuration; POST /init merges into it (never its access token). */
export const config: AgentConfig = { envVars: {}, defaultUser: 'user' };

/** Validates a (partial, untrusted) config object. Throws on bad types or env var names. */
export function parseConfig(raw: unknown): ConfigInput {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new Error('config must be a JSON object');
  const r = raw as Record<string, unknown>;
  const out: ConfigInput = {};
  if (r.envVars !== undefined && r.envVars !== null) {
    if (typeof r.envVars !== 'object' || Array.isArray(r.envVars)) throw new Error('envVars must be an object of strings');
    for (const [k, v] of Object.entries(r.envVars as Record<string, unknown>)) {
      if (typeof v !== 'string') throw new Error(`envVars.${k} must be a string`);
      if (!k || k.includes('=') || k.includes('\0') || v.includes('\0')) throw new Error(`invalid env var name or value: ${k}`);
    }
    out.envVars = r.envVars as Record<string, string>;
  }
  for (const key of ['defaultUser', 'defaultWorkdir', 'accessToken'] as const) {
    const v = r[key];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'string') throw new Error(`${key} must be a string`);
    out[key] = v;
  }
  return out;
}

/** Merges a parsed config into the live one; an empty defaultUser or accessToken is ignored. */
export function applyConfig(c: ConfigInput): void {
  if (c.envVars) Object.assign(config.envVars, c.envVars);
  if (c.defaultUser) config.defaultUser = c.defaultUser;
  if (c.defaultWorkdir !== undefined) config.defaultWorkdir = c.defaultWorkdir || undefined;
  if (c.accessToken) config.accessToken = c.accessToken;
}

let problem: string | undefined;

/**
 * Why the agent refuses every request but GET /health: its configuration file is missing,
 * unreadable or invalid, or gives no access token. Every Sandlot sandbox gets a token; an agent
 * that could not read its own never serves anyone (it would have to serve everyone).
 */
export function configProblem(): string | undefined {
  return problem;
}

/** Reads the configuration file once, at start; sets configProblem() when it cannot be used. */
export function loadConfigFile(): void {
  let text = '';
  try {
    text = readFileSync(configPath, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    problem = e.code === 'ENOENT' ? `its configuration ${configPath} is missing` : `cannot read its configuration ${configPath}: ${e.message}`;
  }
  if (problem === undefined) {
    try {
      const c = parseConfig(JSON.parse(text));
      if (!c.accessToken) throw new Error('it has no accessToken');
      applyConfig(c);
    } catch (err) {
      problem = `its configuration ${configPath} is invalid: ${(err as Error).message}`;
    }
  }
  if (problem !== undefined) logError(`refusing every request but GET /health: ${problem}`);
}

/**
 * Writes the live configuration back to its file (a new file renamed over it), so that an agent
 * started again after this one died (by the init, sandlot-exec --init) has what POST /init gave this one:
 * a pooled sandbox's env vars arrive that way.
 */
export async function saveConfig(): Promise<void> {
  const tmp = `${configPath}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(config), { mode: 0o600 });
  await rename(tmp, configPath);
}
