// The controller's admin API (JSON over HTTP): groups with their rules, ports with their host
// binding. Every body goes through the one model validator (src/domain/validate.ts) before anything
// is stored, so what an agent would refuse is refused here with a 400.
import http from 'node:http';
import { LIMITS } from '../domain/limits.js';
import { validateGroup, validatePort, ValidationError } from '../domain/validate.js';
import type { Controller } from './controller.js';

const MAX_BODY = 1 << 20;

class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

async function body(req: http.IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of req) {
    n += (c as Buffer).length;
    if (n > MAX_BODY) throw new HttpError(413, 'body too large');
    chunks.push(c as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8') || 'null');
  } catch {
    throw new HttpError(400, 'body is not JSON');
  }
}

function bodyObject(b: unknown): Record<string, unknown> {
  if (typeof b !== 'object' || b === null || Array.isArray(b)) throw new HttpError(400, 'body must be a JSON object');
  return b as Record<string, unknown>;
}

export function adminServer(ctl: Controller): http.Server {
  return http.createServer((req, res) => {
    const send = (status: number, value: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(value));
    };
    (async () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const [, kind, rawId, extra] = url.pathname.split('/');
      let id: string | undefined;
      try {
        id = rawId === undefined ? undefined : decodeURIComponent(rawId);
      } catch {
        throw new HttpError(400, 'bad percent-encoding in the path');
      }
      if (extra !== undefined) throw new HttpError(404, 'not found');
      // Outbox depth: changes stored but not yet confirmed by the broker (all controllers of the store).
      if (kind === 'healthz') return send(200, { ok: true, connected: ctl.connected, outbox: ctl.store.outboxDepth(), published: ctl.relay.published });
      if (kind === 'groups' && id === undefined && req.method === 'GET') return send(200, ctl.store.groups());
      if (kind === 'ports' && id === undefined && req.method === 'GET') return send(200, ctl.store.ports());
      if (!id || id.length > LIMITS.id) throw new HttpError(404, 'not found');
      if (req.method !== 'GET' && !ctl.connected) throw new HttpError(503, 'not connected to the broker; retry');
      if (kind === 'groups') {
        if (req.method === 'GET') return ctl.store.group(id) ? send(200, { ...ctl.store.group(id), members: ctl.store.membersOf(id) }) : send(404, { error: 'no such group' });
        if (req.method === 'PUT') {
          // The id comes from the path, so the body need not repeat it.
          const g = validateGroup({ ...bodyObject(await body(req)), id });
          return send(200, await ctl.putGroup(id, g.stateful, g.rules));
        }
        if (req.method === 'DELETE') return (await ctl.deleteGroup(id)) ? send(204, null) : send(404, { error: 'no such group' });
      }
      if (kind === 'ports') {
        if (req.method === 'GET') return ctl.store.port(id) ? send(200, ctl.store.port(id)) : send(404, { error: 'no such port' });
        if (req.method === 'PUT') {
          return send(200, await ctl.putPort(id, validatePort({ ...bodyObject(await body(req)), id })));
        }
        if (req.method === 'DELETE') return (await ctl.deletePort(id)) ? send(204, null) : send(404, { error: 'no such port' });
      }
      throw new HttpError(404, 'not found');
    })().catch((e: unknown) => {
      if (e instanceof HttpError) send(e.status, { error: e.message });
      else if (e instanceof ValidationError) send(400, { error: e.message });
      else send(500, { error: 'internal error' });
    });
  });
}
