import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { loadConfigFile, socketPath } from './config.js';
import { logError, logInfo } from './log.js';
import { createAgentServer } from './server.js';

process.on('uncaughtException', (err) => logError('uncaught exception', err));
process.on('unhandledRejection', (err) => logError('unhandled rejection', err));
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));

loadConfigFile();
try {
  mkdirSync(dirname(socketPath), { recursive: true, mode: 0o700 });
} catch (err) {
  logError(`cannot create ${dirname(socketPath)}`, err);
}
rmSync(socketPath, { force: true });

const server = createAgentServer();
server.on('error', (err) => {
  logError(`cannot listen on ${socketPath}`, err);
  process.exit(1);
});
server.listen(socketPath, () => {
  try {
    chmodSync(socketPath, 0o600);
  } catch (err) {
    logError('chmod socket', err);
  }
  if (process.env.SANDLOT_AGENT_DEBUG) logInfo(`listening on ${socketPath} after ${process.uptime() * 1000} ms`);
});
