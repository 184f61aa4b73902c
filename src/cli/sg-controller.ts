#!/usr/bin/env node
// `sg-controller`: the control plane (publisher, sync RPC), fed by its own admin API (the reference
// mode) or by an OpenStack Neutron (SG_SOURCE=neutron: Neutron's API and broker, docs/neutron.md).
// Configuration by environment: SG_AMQP_URL, SG_HTTP_LISTEN (default 127.0.0.1:9696), SG_DATA_DIR
// (default ./sg-controller-data), SG_LOG_LEVEL, SG_SOURCE (api | neutron) and, in Neutron mode, the
// SG_NEUTRON_* and OS_* variables of src/neutron/config.ts.
import pino from 'pino';
import { Controller } from '../controller/controller.js';
import { ConfigError, neutronSourceOptions } from '../neutron/config.js';
import { startNeutronMode } from '../neutron/mode.js';

async function main(): Promise<void> {
  const log = pino({ level: process.env.SG_LOG_LEVEL ?? 'info', base: { role: 'controller' } });
  const common = {
    amqpUrl: process.env.SG_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672',
    dataDir: process.env.SG_DATA_DIR ?? 'sg-controller-data',
    httpListen: process.env.SG_HTTP_LISTEN ?? '127.0.0.1:9696',
    logger: log,
  };
  const source = process.env.SG_SOURCE ?? 'api';
  let stop: () => Promise<void>;
  if (source === 'neutron') {
    const mode = await startNeutronMode({ ...common, source: neutronSourceOptions(process.env) });
    const a = mode.http?.address();
    log.info({ http: a && typeof a === 'object' ? `http://${a.address}:${a.port}` : undefined, source }, 'controller ready');
    stop = () => mode.stop();
  } else if (source === 'api') {
    const ctl = await Controller.start(common);
    log.info({ http: ctl.httpAddress, source }, 'controller ready');
    stop = () => ctl.stop();
  } else {
    throw new ConfigError('SG_SOURCE must be api or neutron');
  }
  const onSignal = () => void stop().then(() => process.exit(0));
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

main().catch((e: unknown) => {
  console.error(e instanceof ConfigError ? `sg-controller: ${e.message}` : e);
  process.exit(1);
});
