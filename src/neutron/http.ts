// sg-controller's HTTP API in Neutron mode: the admin API's reads (groups, ports, health) plus the
// Neutron source's status, and no writes — Neutron is the source of truth, and a write here would be
// undone by the next resync.
import http from 'node:http';
import { adminServer } from '../controller/http.js';
import type { Controller } from '../controller/controller.js';
import type { NeutronSource } from './source.js';

export function neutronModeServer(ctl: Controller, source: NeutronSource): http.Server {
  // The admin API's own handler answers the reads; it never listens itself.
  const admin = adminServer(ctl);
  return http.createServer((req, res) => {
    const send = (status: number, value: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(value));
    };
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, { error: 'read-only: in Neutron mode, Neutron is the source of truth' });
    if (path === '/neutron') return send(200, source.status());
    if (path === '/healthz') {
      return send(200, { ok: true, connected: ctl.connected, outbox: ctl.store.outboxDepth(), published: ctl.relay.published, neutron: { brokerConnected: source.listener.connected, lastFullResync: source.reconciler.stats.lastFullResync, lastError: source.reconciler.stats.lastError } });
    }
    admin.emit('request', req, res);
  });
}
