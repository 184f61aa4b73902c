// sg-controller's HTTP API in Neutron mode: the admin API's reads (groups, ports, health) plus the
// Neutron source's status, and no writes — Neutron is the source of truth, and a write here would be
// undone by the next resync. Served by the admin API itself (src/controller/http.ts), behind its
// token, Host and TLS checks.
import type { ApiExtension } from '../controller/http.js';
import type { NeutronSource } from './source.js';

export function neutronApiExtension(source: () => NeutronSource): ApiExtension {
  return {
    health: () => {
      const s = source();
      return {
        neutron: {
          brokerConnected: s.listener.connected,
          lastFullResync: s.reconciler.stats.lastFullResync,
          lastError: s.reconciler.stats.lastError,
        },
      };
    },
    reads: { '/neutron': () => source().status() },
    readOnly: 'read-only: in Neutron mode, Neutron is the source of truth',
  };
}
