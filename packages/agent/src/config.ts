import { readFileSync } from 'node:fs';
import { logError } from './log.js';

export const ENVD_VERSION = '0.6.13';

export interface AgentConfig {
  /** Create-time env vars added to every process. */
  envVars: Record<string, string>;
  defaultUser: string;
  defaultWorkdir?: string;
  accessToken?: string;
}

export const socketPath = process.env.SANDLOT_AGENT_SOCKET || '/run/sandlot/agent.sock';
/**
 * The listening socket the daemon made and handed in (its fd), if any: the daemon reaches the agent
 * only through it, never through a path inside the sandbox. Without it (tests, a bare agent), the
 * agent listens on socketPath itself.
 */
export const listenFd = process.env.SANDLOT_AGENT_LISTEN_FD ? Number(process.env.SANDLOT_AGENT_LISTEN_FD) : undefined;
const configPath = process.env.SANDLOT_AGENT_CONFIG || '/run/sandlot/agent.json';

/** The live configuration; mutated by POST /init. */
export const config: AgentConfig = { envVars: {}, defaultUser: 'user' };

/** Merges a (partial, untrusted) config object into the live config. Throws on bad types. */
export function applyConfig(raw: unknown): void {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new Error('config must be a JSON object');
  const r = raw as Record<string, unknown>;
  if (r.envVars !== undefined && r.envVars !== null) {
    if (typeof r.envVars !== 'object' || Array.isArray(r.envVars)) throw new Error('envVars must be an object of strings');
    for (const [k, v] of Object.entries(r.envVars as Record<string, unknown>)) {
      if (typeof v !== 'string') throw new Error(`envVars.${k} must be a string`);
      if (!k || k.includes('=') || k.includes('\0') || v.includes('\0')) throw new Error(`invalid env var name or value: ${k}`);
    }
  }
  for (const key of ['defaultUser', 'defaultWorkdir', 'accessToken'] as const) {
    if (r[key] !== undefined && r[key] !== null && typeof r[key] !== 'string') throw new Error(`${key} must be a string`);
  }
  if (r.envVars) Object.assign(config.envVars, r.envVars as Record<string, string>);
  if (typeof r.defaultUser === 'string' && r.defaultUser) config.defaultUser = r.defaultUser;
  if (typeof r.defaultWorkdir === 'string') config.defaultWorkdir = r.defaultWorkdir || undefined;
  if (typeof r.accessToken === 'string') config.accessToken = r.accessToken || undefined;
}

export function loadConfigFile(): void {
  let text: string;
  try {
    text = readFileSync(configPath, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') logError(`cannot read ${configPath}`, err);
    return;
  }
  try {
    applyConfig(JSON.parse(text));
  } catch (err) {
    logError(`ignoring invalid config ${configPath}`, err);
  }
}
