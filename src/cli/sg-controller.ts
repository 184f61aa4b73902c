#!/usr/bin/env node
// `sg-controller`: the reference control plane (admin API, publisher, sync RPC).
// Configuration by environment: SG_AMQP_URL, SG_HTTP_LISTEN (default 127.0.0.1:9696), SG_DATA_DIR
// (default ./sg-controller-data), SG_LOG_LEVEL.
import pino from 'pino';
import { Controller } from '../controller/controller.js';

async function main(): Promise<void> {
  const log = pino({ level: process.env.SG_LOG_LEVEL ?? 'info', base: { role: 'controller' } });
  const ctl = await Controller.start({
    amqpUrl: process.env.SG_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672',
    dataDir: process.env.SG_DATA_DIR ?? 'sg-controller-data',
    httpListen: process.env.SG_HTTP_LISTEN ?? '127.0.0.1:9696',
    logger: log,
  });
  log.info({ http: ctl.httpAddress }, 'controller ready');
  const stop = () => void ctl.stop().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
