// The controller's admin API (JSON over HTTP): groups with their rules, ports with their host
// binding. Every body is validated with the protocol's schemas before anything is stored.
import http from 'node:http';
import Ajv from 'ajv';
import { isIP } from 'node:net';
import { isCidr, portSchema, ruleSchema, LIMITS } from '../protocol/schema.js';
import { toPort, type WirePort } from '../protocol/messages.js';
import type { SecurityGroupRule } from '../model.js';
import type { Controller } from './controller.js';

const ajv = new Ajv({ strict: true, allowUnionTypes: true });
ajv.addFormat('cidr', isCidr);
ajv.addFormat('ip', (s: string) => isIP(s) !== 0);
const validateGroup = ajv.compile({
  type: 'object',
  additionalProperties: false,
  required: ['rules'],
  properties: { stateful: { type: 'boolean' }, rules: { type: 'array', maxItems: LIMITS.rulesPerGroup, items: ruleSchema } },
});
// The id comes from the path, so the body need not repeat it.
const validatePort = ajv.compile({ ...portSchema, required: portSchema.required.filter((r) => r !== 'id') });
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

export function adminServer(ctl: Controller): http.Server {
  return http.createServer((req, res) => {
    const send = (status: number, value: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(value));
    };
    (async () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const [, kind, rawId, extra] = url.pathname.split('/');
      const id = rawId === undefined ? undefined : decodeURIComponent(rawId);
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
          const b = await body(req);
          if (!validateGroup(b)) throw new HttpError(400, `invalid group: ${ajv.errorsText(validateGroup.errors)}`);
          const g = b as { stateful?: boolean; rules: SecurityGroupRule[] };
          for (const r of g.rules) if (r.remoteIpPrefix && r.remoteGroupId) throw new HttpError(400, `rule ${r.id}: remoteIpPrefix and remoteGroupId are exclusive`);
          return send(200, await ctl.putGroup(id, g.stateful ?? true, g.rules));
        }
        if (req.method === 'DELETE') return (await ctl.deleteGroup(id)) ? send(204, null) : send(404, { error: 'no such group' });
      }
      if (kind === 'ports') {
        if (req.method === 'GET') return ctl.store.port(id) ? send(200, ctl.store.port(id)) : send(404, { error: 'no such port' });
        if (req.method === 'PUT') {
          const b = await body(req);
          if (!validatePort(b)) throw new HttpError(400, `invalid port: ${ajv.errorsText(validatePort.errors)}`);
          return send(200, await ctl.putPort(id, toPort({ ...(b as WirePort), id })));
        }
        if (req.method === 'DELETE') return (await ctl.deletePort(id)) ? send(204, null) : send(404, { error: 'no such port' });
      }
      throw new HttpError(404, 'not found');
    })().catch((e: unknown) => {
      if (e instanceof HttpError) send(e.status, { error: e.message });
      else send(500, { error: 'internal error' });
    });
  });
}
