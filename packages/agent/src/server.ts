import type { IncomingMessage, ServerResponse } from 'node:http';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { Filesystem, Process } from '@sandlot/envd-proto';
import { hasValidToken, safeEqual } from './auth.js';
import { badProtobufIsInvalidArgument } from './connect-errors.js';
import { applyConfig, config, parseConfig, saveConfig, type ConfigInput } from './config.js';
import { handleDownload, handleUpload } from './files-http.js';
import { filesystemService } from './fs-service.js';
import { readJsonBody, sendError, sendJson } from './http-util.js';
import { selectUser } from './identity.js';
import { logError } from './log.js';
import { sandboxMetrics } from './metrics.js';
import { processService } from './process-service.js';
import { baseEnv } from './processes.js';

const CORS_HEADERS = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Allow-Methods': '*',
  'Access-Control-Allow-Headers': '*',
  'Access-Control-Expose-Headers': '*',
  'Access-Control-Max-Age': '7200',
};

/** The full request handler (envd HTTP + Connect RPC). Loaded lazily by main.ts after the socket listens. */
export function createHandler(): (req: IncomingMessage, res: ServerResponse) => void {
  const rpc = connectNodeAdapter({
    routes(router) {
      router.service(Filesystem, filesystemService);
      router.service(Process, processService);
      badProtobufIsInvalidArgument(router);
    },
    jsonOptions: { ignoreUnknownFields: true },
    readMaxBytes: 16 << 20,
    fallback(_req, res) {
      sendError(res as ServerResponse, 404, 'not found');
    },
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://agent');
    const path = url.pathname;
    const method = req.method ?? 'GET';
    for (const [k, v] of Object.entries(CORS_HEADERS)) res.setHeader(k, v);
    if (method === 'OPTIONS') {
      res.writeHead(204).end();
      return;
    }
    if (path === '/health') {
      if (method !== 'GET' && method !== 'HEAD') return sendError(res, 405, 'method not allowed');
      res.writeHead(204).end();
      return;
    }
    if (path === '/files') {
      if (method === 'GET' || method === 'HEAD') return handleDownload(req, res, url);
      if (method === 'POST') return handleUpload(req, res, url);
      return sendError(res, 405, 'method not allowed');
    }
    if (!hasValidToken(req)) {
      const message = req.headers['x-access-token'] ? 'invalid access token' : 'missing access token (X-Access-Token header)';
      if (path.startsWith('/filesystem.') || path.startsWith('/process.')) {
        const body = JSON.stringify({ code: 'unauthenticated', message });
        res.writeHead(401, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
        res.end(body);
        return;
      }
      return sendError(res, 401, message);
    }
    if (path === '/envs' && method === 'GET') {
      let env: Record<string, string>;
      try {
        env = baseEnv(selectUser(undefined));
      } catch {
        env = { ...config.envVars };
      }
      return sendJson(res, 200, env);
    }
    if (path === '/metrics' && method === 'GET') return sendJson(res, 200, await sandboxMetrics());
    if (path === '/init' && method === 'POST') {
      let init: ConfigInput;
      try {
        init = parseConfig(await readJsonBody(req));
      } catch (err) {
        return sendError(res, 400, `invalid init request: ${(err as Error).message}`);
      }
      // E2B's orchestrator sends the token it gave the sandbox: the same one is a no-op. Nothing
      // a token holder sends can blank or replace it (the sandbox's token is set once, at start).
      if (init.accessToken !== undefined && !safeEqual(init.accessToken, config.accessToken ?? '')) {
        return sendError(res, 403, "invalid init request: accessToken cannot be changed (it may only repeat the sandbox's current token)");
      }
      delete init.accessToken;
      applyConfig(init);
      // In force now whatever happens; kept on disk for a restarted agent unless the disk is full.
      await saveConfig().catch((err) => logError('cannot keep the configuration for a restarted agent', err));
      res.writeHead(204).end();
      return;
    }
    rpc(req, res);
  }

  return (req, res) => {
    handle(req, res).catch((err) => {
      logError(`request ${req.method} ${req.url} failed`, err);
      sendError(res, 500, 'internal error');
    });
  };
}
