// The controller's admin API (JSON over HTTP or HTTPS, on TCP or a Unix socket): groups with their
// rules, ports with their host binding, security-group log resources. Every body goes through the
// one model validator (src/domain/validate.ts) before anything is stored, so what an agent would
// refuse is refused here with a 400.
//
// Who may call it: on TCP every request but `GET /healthz` carries the bearer token (compared in
// constant time); a Unix socket is guarded by its file mode, and by the token too when one is set.
// A browser cannot be made to call it: the `Host:` header must name this server (a DNS-rebinding
// page sends its own name) and bodies must be `application/json` (a cross-site form cannot send
// that without a CORS preflight, which this API never answers). No input answers 500: what the
// client got wrong is a 4xx.
import { createHash, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net, { isIP } from 'node:net';
import os from 'node:os';
import { validateGroup, validateId, validatePort, ValidationError } from '../domain/validate.js';
import type { Controller } from './controller.js';
import { StoreUnavailableError } from './records.js';
import { isLoopback } from './config.js';
import { ConfigError, listenError, parseTcpListen, TCP_LISTEN_FORM, urlAuthority } from '../settings.js';

const MAX_BODY = 1 << 20;

// A client gets this long for its request headers, and for the whole request (1 MiB at most), and a
// TLS client for its handshake; an idle keep-alive connection is closed after KEEP_ALIVE_MS, and any
// connection silent for IDLE_MS. Node's defaults (60 s for headers, checked every 30 s; 5 min per
// request; 2 min per handshake; no idle limit) let a few hundred slow sockets sit on the API for
// minutes each. The API's clients are scripts and operators: a request not in within seconds is not
// coming.
const HEADERS_TIMEOUT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 20_000;
const KEEP_ALIVE_MS = 5_000;
const IDLE_MS = 30_000;
const TIMEOUT_CHECK_MS = 1_000;

export interface AdminApiOptions {
  /** `host:port` or `unix:/path`. */
  listen: string;
  /** Required on TCP (the caller's configuration checks it); optional on a Unix socket. */
  token?: string;
  /** Serve HTTPS with this certificate and key (PEM). */
  tls?: { cert: Buffer; key: Buffer };
  /** `Host:` values accepted besides the listen address (and, on loopback, localhost's names). */
  allowedHosts?: string[];
  /** Unix socket file mode (default 0600). */
  socketMode?: number;
  /** What another source of truth adds (Neutron mode). */
  extension?: ApiExtension;
}

/** Routes another source of truth adds to the admin API, behind the same checks (src/neutron/http.ts). */
export interface ApiExtension {
  /** Merged into `GET /healthz`, which needs no token: it must name no group, port or host. */
  health?: () => Record<string, unknown>;
  /** More `GET` routes, by path. */
  reads?: Record<string, () => unknown>;
  /** Set: every write is refused with 405 and this reason (the state belongs to that source). */
  readOnly?: string;
}

export interface AdminApi {
  server: http.Server;
  /** `http(s)://host:port` or `unix:/path`. */
  url: string;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/** Compares hashes, so that neither the token's content nor its length leaks through timing. */
function tokenMatches(header: string | undefined, expected: Buffer): boolean {
  const m = /^Bearer ([\x21-\x7e]+)$/.exec(header ?? '');
  return !!m && timingSafeEqual(digest(m[1]!), expected);
}

async function body(req: http.IncomingMessage): Promise<unknown> {
  // application/json, optionally with a UTF-8 charset; nothing else (text/plain is what a cross-site
  // form or a no-preflight fetch would send).
  const type = (req.headers['content-type'] ?? '').toLowerCase().replace(/\s+/g, '');
  if (type !== 'application/json' && type !== 'application/json;charset=utf-8')
    throw new HttpError(415, 'Content-Type must be application/json');
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of req) {
    n += (c as Buffer).length;
    if (n > MAX_BODY) throw new HttpError(413, 'body too large', { connection: 'close' });
    chunks.push(c as Buffer);
  }
  let text: string;
  try {
    // Bytes that are not UTF-8 are refused, never stored as U+FFFD.
    text = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks));
  } catch {
    throw new HttpError(400, 'body is not UTF-8');
  }
  try {
    return JSON.parse(text || 'null');
  } catch {
    throw new HttpError(400, 'body is not JSON');
  }
}

function bodyObject(b: unknown): Record<string, unknown> {
  if (typeof b !== 'object' || b === null || Array.isArray(b)) throw new HttpError(400, 'body must be a JSON object');
  return b as Record<string, unknown>;
}

/** Whether a request carries a body (a method that takes none must not get one either). */
const hasBody = (req: http.IncomingMessage) =>
  req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;

function pathId(raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new HttpError(400, 'malformed percent-encoding in the path');
  }
}

function handler(ctl: Controller, o: AdminApiOptions, hostAllowed: (host: string | undefined) => boolean): http.RequestListener {
  const expected = o.token === undefined ? undefined : digest(o.token);
  return (req, res) => {
    const send = (status: number, value: unknown, headers: Record<string, string> = {}) => {
      if (res.headersSent) return void res.end();
      res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers });
      res.end(value === null ? undefined : JSON.stringify(value));
    };
    (async () => {
      if (!hostAllowed(req.headers.host)) throw new HttpError(421, 'unexpected Host header');
      // Origin-form only: an absolute target would name a host of its own, past the Host check.
      if (!req.url?.startsWith('/')) throw new HttpError(400, 'request target must be a path');
      let url: URL;
      try {
        url = new URL(req.url ?? '/', 'http://x');
      } catch {
        throw new HttpError(400, 'malformed request target');
      }
      const [, kind, rawId, extra] = url.pathname.split('/');
      const id = pathId(rawId);
      if (extra !== undefined) throw new HttpError(404, 'not found');
      // Outbox depth: changes stored but not yet confirmed by the broker (all controllers of the store);
      // which store, and whether it can take changes (etcd: quorum). Open to monitoring without the
      // token, as are the metrics: they name no group, port or host.
      if (kind === 'healthz' && id === undefined && req.method === 'GET') {
        const store = ctl.store.health();
        const published = ctl.relay.published;
        const extra = o.extension?.health?.();
        const outbox = ctl.store.outboxDepth();
        return send(200, { ok: store.quorum, connected: ctl.connected, leader: ctl.isLeader, outbox, published, store, ...extra });
      }
      if (kind === 'metrics' && id === undefined && req.method === 'GET') {
        const text = await ctl.metrics.registry.metrics();
        if (res.headersSent) return void res.end();
        res.writeHead(200, { 'content-type': ctl.metrics.registry.contentType, 'cache-control': 'no-store' });
        return void res.end(text);
      }
      if (expected && !tokenMatches(req.headers.authorization, expected))
        throw new HttpError(401, 'a valid bearer token is required', { 'www-authenticate': 'Bearer' });
      const read = o.extension?.reads?.[url.pathname];
      if (read && req.method === 'GET') return send(200, read());
      if (o.extension?.readOnly && req.method !== 'GET') throw new HttpError(405, o.extension.readOnly, { allow: 'GET' });
      if (req.method !== 'PUT' && hasBody(req)) throw new HttpError(400, `${req.method} takes no body`);
      if (kind === 'groups' && id === undefined && req.method === 'GET') return send(200, ctl.store.groups());
      if (kind === 'ports' && id === undefined && req.method === 'GET') return send(200, ctl.store.ports());
      if (kind === 'logs' && id === undefined && req.method === 'GET') return send(200, ctl.store.logResources());
      if ((kind !== 'groups' && kind !== 'ports' && kind !== 'logs') || !id) throw new HttpError(404, 'not found');
      validateId('id', id);
      if (req.method !== 'GET' && req.method !== 'PUT' && req.method !== 'DELETE')
        throw new HttpError(405, 'method not allowed', { allow: 'GET, PUT, DELETE' });
      if (req.method !== 'GET' && !ctl.connected) throw new HttpError(503, 'not connected to the broker; retry');
      if (kind === 'groups') {
        if (req.method === 'GET')
          return ctl.store.group(id)
            ? send(200, { ...ctl.store.group(id), members: ctl.store.membersOf(id) })
            : send(404, { error: 'no such group' });
        if (req.method === 'PUT') {
          // The id comes from the path, so the body need not repeat it.
          const g = validateGroup({ ...bodyObject(await body(req)), id });
          return send(200, await ctl.putGroup(id, g.stateful, g.rules));
        }
        return (await ctl.deleteGroup(id)) ? send(204, null) : send(404, { error: 'no such group' });
      }
      if (kind === 'logs') {
        if (req.method === 'GET') {
          const r = ctl.store.logResource(id);
          return r ? send(200, r) : send(404, { error: 'no such log' });
        }
        if (req.method === 'PUT') return send(200, await ctl.putLog({ ...bodyObject(await body(req)), id }));
        return (await ctl.deleteLog(id)) ? send(204, null) : send(404, { error: 'no such log' });
      }
      if (req.method === 'GET') return ctl.store.port(id) ? send(200, ctl.store.port(id)) : send(404, { error: 'no such port' });
      if (req.method === 'PUT') {
        const p = validatePort({ ...bodyObject(await body(req)), id });
        return send(200, await ctl.putPort(id, p));
      }
      return (await ctl.deletePort(id)) ? send(204, null) : send(404, { error: 'no such port' });
    })().catch((e: unknown) => {
      if (e instanceof HttpError) return send(e.status, { error: e.message }, e.headers);
      if (e instanceof ValidationError) return send(400, { error: e.message });
      if (e instanceof StoreUnavailableError) return send(503, { error: `store unavailable: ${e.message}` }, { 'retry-after': '1' });
      // The client went away mid-body: nobody is left to answer.
      if ((e as { code?: string }).code === 'ECONNRESET' || req.destroyed) return void res.destroy();
      ctl.logger?.error({ err: e, method: req.method, url: req.url?.slice(0, 300) }, 'admin API request failed');
      send(500, { error: 'internal error' });
    });
  };
}

/** Host header values this server answers to (DNS-rebinding defence); undefined: no check (a Unix
 *  socket, which no web page can reach). */
function allowedHostNames(host: string, port: number, extra: string[]): Set<string> {
  const names = new Set(extra.map((h) => h.toLowerCase()));
  const hostPort = (h: string) => `${isIP(h) === 6 ? `[${h}]` : h}:${port}`;
  const add = (h: string) => names.add(hostPort(h).toLowerCase());
  add(host);
  if (isLoopback(host)) for (const h of ['localhost', '127.0.0.1', '::1']) add(h);
  // A wildcard listener answers on every local address.
  if (host === '0.0.0.0' || host === '::') {
    for (const list of Object.values(os.networkInterfaces())) for (const a of list ?? []) add(a.address);
    for (const h of ['localhost', os.hostname()]) add(h);
  }
  return names;
}

/** Removes a Unix socket file left by a process that is gone (nothing accepts on it). */
async function clearStaleSocket(file: string): Promise<void> {
  if (!fs.existsSync(file)) return;
  if (!fs.statSync(file).isSocket()) throw new ConfigError(`http.listen unix:${file}: exists and is not a socket`);
  const live = await new Promise<boolean>((resolve) => {
    const c = net.connect(file, () => {
      c.destroy();
      resolve(true);
    });
    c.on('error', () => resolve(false));
  });
  if (live) throw new ConfigError(`http.listen unix:${file}: another process listens on it`);
  fs.unlinkSync(file);
}

export async function startAdminApi(ctl: Controller, o: AdminApiOptions): Promise<AdminApi> {
  // Any `unix:` address is a socket: one without a path is refused, never taken for TCP.
  const unixPath = o.listen.startsWith('unix:') ? o.listen.slice('unix:'.length) : undefined;
  if (unixPath === '') throw new ConfigError('http.listen unix: names no socket path (unix:/path)');
  let allowed: Set<string> | undefined;
  const hostAllowed = (h: string | undefined) => !allowed || (h !== undefined && allowed.has(h.toLowerCase()));
  const onRequest = handler(ctl, o, hostAllowed);
  const limits: http.ServerOptions = {
    headersTimeout: HEADERS_TIMEOUT_MS,
    requestTimeout: REQUEST_TIMEOUT_MS,
    keepAliveTimeout: KEEP_ALIVE_MS,
    connectionsCheckingInterval: TIMEOUT_CHECK_MS,
  };
  const server = o.tls
    ? https.createServer({ ...limits, cert: o.tls.cert, key: o.tls.key, handshakeTimeout: HEADERS_TIMEOUT_MS }, onRequest)
    : http.createServer(limits, onRequest);
  // With no 'timeout' listener, a socket idle this long is destroyed.
  server.setTimeout(IDLE_MS);
  const scheme = o.tls ? 'https' : 'http';
  if (unixPath !== undefined) {
    await clearStaleSocket(unixPath);
    // Created with no access for anyone but the owner, then opened as configured: never wider in between.
    const umask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', (e) => reject(listenError('http.listen', o.listen, e)));
        server.listen(unixPath, () => resolve());
      });
    } finally {
      process.umask(umask);
    }
    fs.chmodSync(unixPath, o.socketMode ?? 0o600);
    return { server, url: `unix:${unixPath}` };
  }
  const at = parseTcpListen(o.listen);
  if (!at) throw new ConfigError(`http.listen must be ${TCP_LISTEN_FORM} or unix:/path, not ${JSON.stringify(o.listen)}`);
  const { host, port } = at;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(listenError('http.listen', o.listen, e)));
    server.listen(port, host, () => resolve());
  });
  const bound = (server.address() as net.AddressInfo).port;
  allowed = allowedHostNames(host, bound, o.allowedHosts ?? []);
  return { server, url: `${scheme}://${urlAuthority({ host, port: bound })}` };
}
