// sg-controller in Neutron mode: the controller (store, outbox relay, publisher, sync RPC) fed by the
// Neutron source instead of the admin API, with a read-only HTTP API.
import type { Server } from 'node:http';
import type { Logger } from 'pino';
import { Controller, splitListen } from '../controller/controller.js';
import { NeutronSource, type NeutronSourceOptions } from './source.js';
import { neutronModeServer } from './http.js';

export interface NeutronModeOptions {
  /** sg-agent's broker (may be Neutron's, in a vhost of its own, or another one). */
  amqpUrl: string;
  dataDir: string;
  httpListen?: string;
  source: NeutronSourceOptions;
  logger?: Logger;
}

export interface NeutronMode {
  controller: Controller;
  source: NeutronSource;
  http?: Server;
  stop(): Promise<void>;
}

export async function startNeutronMode(opts: NeutronModeOptions): Promise<NeutronMode> {
  let source!: NeutronSource;
  const controller = await Controller.start({
    amqpUrl: opts.amqpUrl,
    dataDir: opts.dataDir,
    logger: opts.logger,
    // Neutron is read (into an empty store: completely) before agents are answered.
    prepare: async (ctl) => {
      source = new NeutronSource(ctl.store, () => ctl.relay.kick(), { ...opts.source, logger: opts.logger });
      await source.start();
    },
  });
  let http: Server | undefined;
  if (opts.httpListen) {
    const [host, port] = splitListen(opts.httpListen);
    http = neutronModeServer(controller, source);
    await new Promise<void>((resolve) => http!.listen(port, host, resolve));
  }
  return {
    controller,
    source,
    ...(http ? { http } : {}),
    stop: async () => {
      await source.stop();
      await new Promise<void>((resolve) => (http ? http.close(() => resolve()) : resolve()));
      await controller.stop();
    },
  };
}
