// sg-controller in Neutron mode: the controller (store, outbox relay, publisher, sync RPC) fed by the
// Neutron source instead of the admin API, with a read-only HTTP API.
import type { Server } from 'node:http';
import type { Logger } from 'pino';
import { Controller, type ControllerOptions } from '../controller/controller.js';
import type { AdminApiOptions } from '../controller/http.js';
import type { BrokerTls } from '../protocol/connection.js';
import type { MessageSigner } from '../protocol/signing.js';
import { NeutronSource, type NeutronSourceOptions } from './source.js';
import { neutronApiExtension } from './http.js';

export interface NeutronModeOptions {
  /** sg-agent's broker (may be Neutron's, in a vhost of its own, or another one). */
  amqpUrl: string;
  amqpTls?: BrokerTls;
  dataDir: string;
  /** Set: the store is this etcd cluster's (controllers on several machines), as in the reference mode. */
  etcd?: ControllerOptions['etcd'];
  /** Signs what agents receive, as in the reference mode. */
  signer: MessageSigner;
  /** The HTTP API (read-only here), with the admin API's checks. */
  api?: AdminApiOptions;
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
    ...(opts.amqpTls ? { amqpTls: opts.amqpTls } : {}),
    dataDir: opts.dataDir,
    ...(opts.etcd ? { etcd: opts.etcd } : {}),
    signer: opts.signer,
    ...(opts.api ? { api: { ...opts.api, extension: neutronApiExtension(() => source) } } : {}),
    ...(opts.logger ? { logger: opts.logger } : {}),
    // Neutron is read (into an empty store: completely) before agents are answered.
    prepare: async (ctl) => {
      source = new NeutronSource(ctl.store, () => ctl.relay.kick(), { ...opts.source, logger: opts.logger });
      await source.start();
    },
  });
  const http: Server | undefined = controller.http;
  return {
    controller,
    source,
    ...(http ? { http } : {}),
    stop: async () => {
      await source.stop();
      await controller.stop();
    },
  };
}
